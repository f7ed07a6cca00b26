//! The report of a small embedded run, opened in headless Chromium at 800 px: no console
//! errors, no horizontal scroll, every figure and picture present, headings not hidden under
//! the sticky navigation, and the class filter and column sort working. Skips (with the
//! reason printed) when no Chromium is installed; `.ci/run` installs the Debian package.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn run_bin(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_neuronpath"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Injected first into <head>: records errors and console errors from the start, then, once
/// the page has loaded, measures it and writes the findings as JSON into `#np-test`.
const HOOK: &str = r##"<script>
window.__np = {errors: []};
window.addEventListener('error', function(e){ window.__np.errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || 'resource')); }, true);
(function(){ var ce = console.error; console.error = function(){ window.__np.errors.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); }; })();
window.addEventListener('load', function(){
  var r = {errors: window.__np.errors};
  var d = document.documentElement;
  r.scrollWidth = d.scrollWidth; r.innerWidth = window.innerWidth;
  r.wide = [];
  document.querySelectorAll('body *').forEach(function(e){
    var b = e.getBoundingClientRect();
    if (b.right > window.innerWidth + 1 && !e.closest('.tw') && getComputedStyle(e).display !== 'none') { r.wide.push(e.tagName + (e.id ? '#' + e.id : '') + ' ' + Math.round(b.right)); }
  });
  r.wide = r.wide.slice(0, 10);
  r.svgs = Array.prototype.map.call(document.querySelectorAll('svg[aria-label]'), function(s){ var b = s.getBoundingClientRect(); return [s.getAttribute('aria-label'), Math.round(b.width), Math.round(b.height)]; });
  r.brokenImages = Array.prototype.filter.call(document.images, function(i){ return !(i.complete && i.naturalWidth > 0); }).length;
  r.images = document.images.length;
  var nav = document.querySelector('nav');
  r.navHeight = nav.getBoundingClientRect().height;
  r.navSticky = getComputedStyle(nav).position;
  r.scrollMargins = Array.prototype.map.call(document.querySelectorAll('section, [id^="img-"]'), function(s){ return parseFloat(getComputedStyle(s).scrollMarginTop) || 0; });
  r.navLinksResolve = Array.prototype.every.call(nav.querySelectorAll('a'), function(a){ return !!document.getElementById(a.getAttribute('href').slice(1)); });
  r.topLinks = document.querySelectorAll('a[href="#top"]').length;
  var sel = document.getElementById('f-class');
  if (sel && sel.options.length > 1) {
    var v = sel.options[1].value; sel.value = v; sel.dispatchEvent(new Event('change'));
    var rows = document.querySelectorAll('tr[data-class]');
    r.filter = {value: v, rows: rows.length,
      visibleMatch: Array.prototype.filter.call(rows, function(t){ return t.style.display !== 'none' && t.getAttribute('data-class') === v; }).length,
      visibleOther: Array.prototype.filter.call(rows, function(t){ return t.style.display !== 'none' && t.getAttribute('data-class') !== v; }).length,
      expected: Array.prototype.filter.call(rows, function(t){ return t.getAttribute('data-class') === v; }).length};
    sel.value = ''; sel.dispatchEvent(new Event('change'));
    var th = document.querySelectorAll('th.sort')[3];
    th.click(); th.click();
    var tb = th.closest('table').tBodies[0];
    var col = Array.prototype.map.call(tb.rows, function(t){ return parseFloat(t.cells[3].textContent); });
    r.sortedDescending = col.every(function(x, i){ return i === 0 || col[i - 1] >= x; });
  }
  var pre = document.createElement('pre'); pre.id = 'np-test'; pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>"##;

fn open_in_chromium(browser: &Path, html: &Path, dir: &Path) -> (String, String) {
    let page = std::fs::read_to_string(html).unwrap();
    let hooked = dir.join("hooked.html");
    std::fs::write(
        &hooked,
        page.replacen("<head>", &format!("<head>{HOOK}"), 1),
    )
    .unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=800,1000",
            "--virtual-time-budget=10000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", hooked.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Readers on threads so a full pipe never blocks the browser.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(180) {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (t_out.join().unwrap(), t_err.join().unwrap())
}

#[test]
fn report_opens_clean_in_headless_chromium_at_800_px() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: no chromium on PATH (apt-get install chromium; .ci/run does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let results = d.join("run.jsonl");
    let html = d.join("report.html");
    // Two images per class of the embedded samples: the claims are tested, every figure drawn.
    run_bin(&[
        "discover",
        "--per-class",
        "2",
        "--no-report",
        "-o",
        results.to_str().unwrap(),
    ]);
    run_bin(&[
        "report",
        "--results",
        results.to_str().unwrap(),
        "--out",
        html.to_str().unwrap(),
    ]);
    let (dom, log) = open_in_chromium(&browser, &html, d);
    let start = dom
        .find("<pre id=\"np-test\">")
        .unwrap_or_else(|| panic!("the test hook did not run; chromium said:\n{log}"));
    let text = &dom[start + "<pre id=\"np-test\">".len()..];
    let text = &text[..text.find("</pre>").unwrap()];
    let text = text
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let r: Value = serde_json::from_str(&text).unwrap();
    eprintln!(
        "chromium: page {} px wide at {} px, {} figures, {} images, nav {} px, filter {}",
        r["scrollWidth"],
        r["innerWidth"],
        r["svgs"].as_array().map_or(0, Vec::len),
        r["images"],
        r["navHeight"],
        r["filter"]
    );
    assert_eq!(r["errors"], serde_json::json!([]), "errors on the page");
    // Chromium's own log of page console messages (besides the hook).
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("rror")))
        .collect();
    assert!(console.is_empty(), "console errors: {console:?}");
    assert_eq!(r["innerWidth"], 800, "{r}");
    assert!(
        r["scrollWidth"].as_f64().unwrap() <= 800.0,
        "horizontal scroll at 800 px: page {} wide; elements beyond: {}",
        r["scrollWidth"],
        r["wide"]
    );
    assert_eq!(r["wide"], serde_json::json!([]));
    // Every figure is there and drawn with a size.
    let svgs = r["svgs"].as_array().unwrap();
    let labels: Vec<&str> = svgs.iter().map(|s| s[0].as_str().unwrap()).collect();
    for want in [
        "Joint Attribution Score of each method's path",
        "Probability deviation: F(edited) / F(clean)",
        "Path concentration",
        "Pruning: F(pruned) / F(unpruned) on held-out images",
    ] {
        assert!(
            labels.iter().any(|l| l.starts_with(want)),
            "figure `{want}` missing: {labels:?}"
        );
    }
    for s in svgs {
        assert!(
            s[1].as_f64().unwrap() > 50.0 && s[2].as_f64().unwrap() > 30.0,
            "figure drawn too small: {s}"
        );
    }
    // 20 images, all in detail: picture, path diagram and heat maps each.
    let (_, records) = neuronpath::io::results::read_results(&results).unwrap();
    assert_eq!(records.len(), 20);
    for rec in &records {
        let i = rec.index;
        for want in [
            format!("image {i}: path diagram"),
            format!("image {i}: patch heat maps"),
        ] {
            assert!(labels.contains(&want.as_str()), "`{want}` missing");
        }
    }
    assert!(r["images"].as_u64().unwrap() >= 20, "{r}");
    assert_eq!(r["brokenImages"], 0, "images that did not decode");
    // Sticky navigation that does not hide the headings it jumps to.
    assert_eq!(r["navSticky"], "sticky");
    let nav = r["navHeight"].as_f64().unwrap();
    for m in r["scrollMargins"].as_array().unwrap() {
        assert!(
            m.as_f64().unwrap() >= nav,
            "scroll margin {m} < nav height {nav}"
        );
    }
    assert_eq!(r["navLinksResolve"], true);
    assert!(r["topLinks"].as_u64().unwrap() >= 20);
    // Filtering by class shows exactly that class's rows; sorting orders a numeric column.
    let f = &r["filter"];
    assert!(f["expected"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["visibleMatch"], f["expected"], "{f}");
    assert_eq!(f["visibleOther"], 0, "{f}");
    assert_eq!(r["sortedDescending"], true);
}
