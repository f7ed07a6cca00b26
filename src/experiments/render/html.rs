//! HTML building blocks of the report: escaping, tables, the page shell with its inline style.
pub use super::svg::esc;

/// A table; cells are HTML (escape text with [`esc`]). Cells that read as numbers align right.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_aligned(headers, "", rows)
}

/// Whether a cell reads as a number: "12.3", "-4pp", "0.5 [0.1, 0.9]", "15.0% → 10.0%";
/// not "2026-11-25 UTC" or "28 px, bilinear".
fn numeric(cell: &str) -> bool {
    let mut text = String::new();
    let mut in_tag = false;
    for ch in cell.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let first = text.split_whitespace().next().unwrap_or("");
    first
        .trim_end_matches(['%', 'p', ','])
        .parse::<f64>()
        .is_ok()
        && !text
            .chars()
            .any(|c| c.is_alphabetic() && c != 'e' && c != 'p')
}

/// A table with explicit alignment per column (`l` or `r`; missing columns are detected),
/// scrolling sideways inside its own box when wider than the page.
pub fn table_aligned(headers: &[&str], align: &str, rows: &[Vec<String>]) -> String {
    let mut s = String::from("<div class=\"tw\"><table><thead><tr>");
    for h in headers {
        s += &format!("<th>{}</th>", esc(h));
    }
    s += "</tr></thead><tbody>";
    for r in rows {
        s += "<tr>";
        for (i, c) in r.iter().enumerate() {
            let right = match align.as_bytes().get(i) {
                Some(b'r') => true,
                Some(b'l') => false,
                _ => numeric(c),
            };
            s += &if right {
                format!("<td class=\"n\">{c}</td>")
            } else {
                format!("<td>{c}</td>")
            };
        }
        s += "</tr>";
    }
    s + "</tbody></table></div>"
}

/// A figure with a caption.
pub fn figure(svg: &str, caption: &str) -> String {
    format!(
        "<figure>{svg}<figcaption>{}</figcaption></figure>",
        esc(caption)
    )
}

/// A section with an anchor, a heading and a link back to the top of the page.
pub fn section(id: &str, title: &str, body: &str) -> String {
    format!(
        "<section id=\"{id}\"><h2>{}</h2>{body}{TOP}</section>\n",
        esc(title)
    )
}

/// The "back to top" link closing sections and per-image blocks.
pub const TOP: &str = "<p class=\"top\"><a href=\"#top\">↑ back to top</a></p>";

const STYLE: &str = r#"
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;color:#222;margin:0;background:#fafafa;line-height:1.45;overflow-wrap:break-word}
header{background:#243447;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px 0;font-size:24px} header p{margin:0;color:#cfd8e3;font-size:14px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 32px;z-index:2;font-size:14px;display:flex;flex-wrap:wrap;gap:2px 16px}
nav a{color:#1f5fa8;text-decoration:none}
section,[id^="img-"],h2,h3{scroll-margin-top:64px}
main{max-width:1240px;margin:0 auto;padding:8px 32px 60px}
svg{max-width:100%;height:auto} .tw{max-width:100%;overflow-x:auto}
.top{text-align:right;font-size:12px;margin:4px 0 0} .top a{color:#1f5fa8}
.filters{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;font-size:13px;margin:8px 0}
.miss{color:#c62828;font-weight:bold} th.sort{cursor:pointer} th.sort:after{content:" ↕";color:#999}
.detail{border-top:1px solid #e3e3e3;margin-top:14px}
.th{display:inline-block;margin:3px;vertical-align:top;width:80px;font-size:11px;line-height:1.25} .th img{width:72px;height:72px;image-rendering:pixelated;border:1px solid #ccc}
.th.same img{border:2px solid #2e7d32} .noimg{width:72px;height:72px;background:#eee}
dl.defs dt{font-weight:bold;margin-top:6px} dl.defs dd{margin:0 0 0 18px}
@media (max-width:860px){header,nav{padding-left:12px;padding-right:12px} main{padding:4px 8px 40px} section{padding:4px 10px 12px} .ev{margin-left:0}}
section{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:6px 22px 16px;margin:18px 0}
h2{font-size:20px;border-bottom:2px solid #243447;padding-bottom:4px} h3{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;margin:8px 0;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
th{background:#f0f3f6;text-align:left} td:first-child{white-space:nowrap} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap} td.n small{white-space:normal}
figure{margin:10px 0;overflow-x:auto} figcaption{font-size:13px;color:#555;max-width:900px}
.claims{list-style:none;padding:0} .claims td{white-space:normal} .claims td:last-child{white-space:nowrap} .claims li{margin:8px 0;padding:8px 12px;border-radius:4px;background:#f6f6f6}
.badge{display:inline-block;min-width:112px;text-align:center;font-weight:bold;font-size:12px;padding:2px 8px;border-radius:10px;margin-right:10px;color:#fff}
.holds{background:#2e7d32} .does_not_hold{background:#c62828} .not_enough_data{background:#757575}
.ev{display:block;font-size:13px;color:#444;margin:4px 0 0 124px}
.note{font-size:13px;color:#555} .grid{display:flex;flex-wrap:wrap;gap:8px}
.img{display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}
.img img{width:112px;height:112px;image-rendering:pixelated;border:1px solid #ccc}
pre{background:#f4f4f4;padding:8px;font-size:12px;overflow-x:auto} code{font-size:13px}
"#;

/// Filtering and sorting of the page's image rows and blocks (no network, no library): rows
/// and blocks carry `data-class` and `data-miss`; the controls sit in `.filters`; a click on
/// a `th.sort` sorts its table by that column (numbers as numbers).
const SCRIPT: &str = r#"
(function(){
  function apply(){
    var c=document.getElementById('f-class'), m=document.getElementById('f-miss'), q=document.getElementById('f-text');
    if(!c){return;}
    var cv=c.value, mv=m.checked, qv=q.value.toLowerCase(), shown=0;
    document.querySelectorAll('[data-class]').forEach(function(e){
      var ok=(cv===''||e.getAttribute('data-class')===cv)&&(!mv||e.getAttribute('data-miss')==='1')&&(qv===''||e.textContent.toLowerCase().indexOf(qv)>=0||e.tagName!=='TR');
      e.style.display=ok?'':'none'; if(ok&&e.tagName==='TR'){shown++;}
    });
    var n=document.getElementById('f-count'); if(n){n.textContent=shown+' shown';}
  }
  function key(td){var t=td.getAttribute('data-v')||td.textContent.trim(); var f=parseFloat(t); return isNaN(f)?t.toLowerCase():f;}
  document.addEventListener('DOMContentLoaded',function(){
    ['f-class','f-miss','f-text'].forEach(function(id){var e=document.getElementById(id); if(e){e.addEventListener('input',apply);e.addEventListener('change',apply);}});
    document.querySelectorAll('th.sort').forEach(function(th){
      th.addEventListener('click',function(){
        var tb=th.closest('table').tBodies[0], i=Array.prototype.indexOf.call(th.parentNode.children,th);
        var asc=th.getAttribute('data-asc')!=='1'; th.setAttribute('data-asc',asc?'1':'0');
        var rows=Array.prototype.slice.call(tb.rows);
        rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]); var r=(typeof x===typeof y)?(x<y?-1:x>y?1:0):(typeof x==='number'?-1:1); return asc?r:-r;});
        rows.forEach(function(r){tb.appendChild(r);});
      });
    });
    apply();
  });
})();
"#;

/// The whole page.
pub fn page(title: &str, subtitle: &str, nav: &[(&str, &str)], body: &str) -> String {
    let links: String = nav
        .iter()
        .map(|(id, t)| format!("<a href=\"#{id}\">{}</a>", esc(t)))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style>\
         <script>{SCRIPT}</script></head>\
         <body><header id=\"top\"><h1>{t}</h1><p>{}</p></header><nav>{links}</nav><main>{body}</main></body></html>\n",
        esc(subtitle),
        t = esc(title)
    )
}
