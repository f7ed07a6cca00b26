//! The report: ONE self-contained HTML file (inline SVG figures, inline PNG thumbnails, no
//! external requests) with the run's configuration, a summary, the paper's claims checked on
//! this data, every experiment's figures and tables, and a section per image.
use super::atlas;
use super::claims::{self, Claim, Verdict};
use super::figures;
use super::html::{esc, page, section, table};
use super::manipulation::Manipulation;
use super::pruning::Pruning;
use super::stats::{spread, summarize};
use super::svg::num;
use crate::io::results::{Method, Results};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

mod images;
mod sections;
use images::images_section;
use sections::{atlas_section, jas_section, manipulation_section, pruning_section};

/// What the report shows. Only `run` is required: without a manipulation the probability
/// deviations come from the records' own removed/enhanced probabilities (no accuracy deviation);
/// without pruning that section says how to add it.
pub struct Report<'a> {
    pub run: &'a Results,
    /// How the results file is named in the page.
    pub results_name: String,
    pub manipulation: Option<&'a Manipulation>,
    pub pruning: Option<&'a Pruning>,
    /// Groups of look-alike classes; empty: built-in groups for known class names (Fashion-MNIST),
    /// else the model's confusions from the manipulation.
    pub look_alike: Vec<Vec<usize>>,
    /// `data:` URIs of input thumbnails by image index.
    pub thumbnails: BTreeMap<u64, String>,
    /// At most this many per-image sections (the first by index).
    pub max_images: usize,
    /// At most this many classes in per-class figures.
    pub max_classes: usize,
    /// Lines shown under the summary (what was skipped and why).
    pub notes: Vec<String>,
}

impl<'a> Report<'a> {
    pub fn new(run: &'a Results, results_name: &str) -> Self {
        Report {
            run,
            results_name: results_name.to_string(),
            manipulation: None,
            pruning: None,
            look_alike: Vec::new(),
            thumbnails: BTreeMap::new(),
            max_images: 500,
            max_classes: 30,
            notes: Vec::new(),
        }
    }
}

/// Writes the report to `out` (an .html file) and its claims and summary to `out` with a .json
/// extension; returns the claims.
pub fn write_report(r: &Report, out: &Path) -> Result<Vec<Claim>> {
    let (html, claims) = render(r)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    std::fs::write(out, html).with_context(|| format!("{}: cannot write", out.display()))?;
    let summary = json!({"results": r.results_name, "images": r.run.images.len(), "errors": r.run.errors.len(), "claims": claims});
    let json_path = out.with_extension("json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("{}: cannot write", json_path.display()))?;
    Ok(claims)
}

/// The page and the claims.
pub fn render(r: &Report) -> Result<(String, Vec<Claim>)> {
    let run = r.run;
    // The paper's paths when the run has them, else the first method's.
    let method = if run.has_method(Method::Path) {
        Method::Path
    } else {
        run.methods.first().copied().unwrap_or(Method::Path)
    };
    let atlas = atlas::from_run(run, method).ok();
    let groups = if r.look_alike.is_empty() {
        claims::known_groups(&run.class_names)
    } else {
        r.look_alike.clone()
    };
    let mut cl = vec![
        claims::jas_order(run),
        claims::manipulation(run, r.manipulation, 0.0),
        claims::manipulation(run, r.manipulation, 2.0),
    ];
    if let Some(a) = &atlas {
        cl.push(claims::look_alike(run, a, &groups, r.manipulation));
    }
    if let Some(p) = r.pruning {
        cl.push(claims::pruning(run, p));
    }
    let mut body = String::new();
    body += &section("summary", "Run and summary", &summary(r));
    body += &section(
        "claims",
        "The paper's claims on this data",
        &claims_html(&cl),
    );
    body += &section(
        "jas",
        "Joint Attribution Score per method",
        &jas_section(run),
    );
    body += &section(
        "manipulation",
        "Manipulation: removing and enhancing path neurons",
        &manipulation_section(r),
    );
    body += &section(
        "atlas",
        "Class atlas",
        &atlas
            .as_ref()
            .map_or("<p>No paths to build an atlas from.</p>".into(), |a| {
                atlas_section(r, a)
            }),
    );
    body += &section("pruning", "Class-wise pruning", &pruning_section(r.pruning));
    body += &section("images", "Images", &images_section(r));
    if !run.errors.is_empty() {
        let rows: Vec<Vec<String>> = run
            .errors
            .iter()
            .map(|(i, s, e)| vec![i.to_string(), esc(s), esc(e)])
            .collect();
        body += &section(
            "errors",
            "Images that failed",
            &table(&["index", "source", "error"], &rows),
        );
    }
    let nav = [
        ("summary", "Summary"),
        ("claims", "Claims"),
        ("jas", "JAS"),
        ("manipulation", "Manipulation"),
        ("atlas", "Class atlas"),
        ("pruning", "Pruning"),
        ("images", "Images"),
    ];
    let subtitle = format!(
        "{} — {} images, model {}",
        r.results_name,
        run.images.len(),
        run.header.model.path
    );
    Ok((
        page("Influential neuron paths: report", &subtitle, &nav, &body),
        cl,
    ))
}

fn claims_html(cl: &[Claim]) -> String {
    let items: String = cl
        .iter()
        .map(|c| {
            let (class, word) = match c.verdict {
                Verdict::Holds => ("holds", "holds"),
                Verdict::DoesNotHold => ("does_not_hold", "does not hold"),
                Verdict::NotEnoughData => ("not_enough_data", "not enough data"),
            };
            let target = if c.target == "none" {
                String::new()
            } else {
                format!(" <span class=\"ev\">F = probability of the {}</span>", esc(&c.target))
            };
            format!("<li><span class=\"badge {class}\">{word}</span>{}{target}<span class=\"ev\">{}</span></li>", esc(&c.claim), esc(&c.evidence))
        })
        .collect();
    format!("<ul class=\"claims\">{items}</ul><p class=\"note\">Each claim is tested on this run's per-image values (Wilcoxon signed-rank test on paired differences, exact for up to {} differences without ties; class pairs: a two-sample permutation test). It holds when p &lt; {} and the effect points the claimed way; with fewer than {} images, or one class for a class-level claim, the verdict is \"not enough data\". Effects are mean differences with a 95% bootstrap interval ({} resamples, seed {}), the same interval wherever the number appears.</p>", super::significance::WILCOXON_EXACT_MAX, claims::ALPHA, claims::MIN_IMAGES, super::stats::BOOTSTRAP_RESAMPLES, super::stats::BOOTSTRAP_SEED)
}

/// Unix seconds as an ISO date and time (UTC).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60
    )
}

fn summary(r: &Report) -> String {
    let (run, h, c) = (r.run, &r.run.header, &r.run.config);
    // A header value as the page shows it: strings bare, absent as a dash, the rest as JSON.
    let s = |v: serde_json::Value| match v {
        serde_json::Value::String(x) => x,
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    };
    let mut rows = vec![
        ("results", r.results_name.clone()),
        ("model", format!("{} ({} layout)", h.model.path, s(json!(h.model.layout)))),
        ("model sha256", s(json!(h.model.sha256))),
        ("architecture", format!("{} layers × {} MLP neurons, hidden {}, {} heads, image {} / patch {}, {} classes, {:?} pooling", c.layers, c.mlp_dim, c.hidden, c.heads, c.image_size, c.patch_size, c.num_classes, c.pool)),
        ("neurons", format!("{} rows of the MLP hidden units", s(json!(h.neurons)))),
        ("attribution", format!("m = {} steps ({} Riemann), top-K = {}, target = {}, JAS form shown = {}", h.steps, h.riemann, run.top_k, s(json!(h.target)), h.jas_default)),
        ("methods", run.methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")),
        ("inputs", format!("{} (count {}, per class {})", s(json!(h.inputs.paths)), h.inputs.count, s(json!(h.inputs.per_class)))),
        ("preprocessing", format!("{} px, {} resize, {} normalisation", h.preprocessing.size, h.preprocessing.resize, h.preprocessing.normalization)),
        ("dtype, seed, compat", format!("{}, {}, {}", h.dtype, h.seed, h.compat)),
    ];
    if h.created > 0 {
        rows.push(("created", utc(h.created)));
    }
    let cfg_rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, v)| vec![esc(k), esc(&v)])
        .collect();
    let mut out = table(&["setting", "value"], &cfg_rows);
    out += &format!(
        "<details><summary>Full header</summary><pre>{}</pre></details>",
        esc(&serde_json::to_string_pretty(h).unwrap_or_default())
    );
    out += &format!(
        "<h3>Summary</h3><p>{} images ({} failed), {} classes with images, clean top-1 accuracy {:.1}%.</p>",
        run.images.len(),
        run.errors.len(),
        run.classes_present().len(),
        100.0 * run.clean_accuracy()
    );
    let dev = figures::record_deviations(run);
    let mut srows = Vec::new();
    for m in &run.methods {
        let jas: Vec<f64> = run
            .images
            .iter()
            .filter_map(|x| x.result.methods.get(m).map(|y| y.jas.reference))
            .collect();
        let add: Vec<f64> = run
            .images
            .iter()
            .filter_map(|x| x.result.methods.get(m).map(|y| y.jas.additive))
            .collect();
        let js = summarize(&jas);
        let f = |fac: f64| {
            dev.iter()
                .find(|d| d.0 == *m && d.1 == fac)
                .map_or("—".into(), |d| ci_str(&d.2))
        };
        let mut row = vec![
            esc(m.name()),
            ci_str(&js),
            num(spread(&add, 0, 0).mean),
            f(0.0),
            f(2.0),
        ];
        if let Some(mm) = r.manipulation {
            for fac in [0.0, 2.0] {
                row.push(
                    mm.overall_for(*m, fac)
                        .map_or("—".into(), |d| format!("{:+.1}", 100.0 * d.acc_deviation)),
                );
            }
        }
        srows.push(row);
    }
    let mut heads = vec![
        "method",
        "mean JAS (reference)",
        "mean JAS (additive)",
        "F removed / F clean",
        "F enhanced / F clean",
    ];
    if r.manipulation.is_some() {
        heads.extend(["acc. dev. removed (pp)", "acc. dev. enhanced (pp)"]);
    }
    out += &table(&heads, &srows);
    out += "<p class=\"note\">Means with 95% bootstrap confidence intervals. Ratios are per image, then averaged; the removed/enhanced probabilities are those discover recorded.</p>";
    if run.top_k > 1 {
        let k = run.top_k;
        let edited = match r.manipulation {
            Some(m) if m.settings.all_k => "all of them too",
            Some(_) => "the top-1 path (ablate --all-k edits all K)",
            None => "the same sets",
        };
        out += &format!(
            "<p class=\"note\">This run kept K = {k} neurons per layer: the recorded ratios above edit all {k} per layer; the manipulation section edits {edited}.</p>"
        );
    }
    for n in &r.notes {
        out += &format!("<p class=\"note\">{}</p>", esc(n));
    }
    out
}

pub(crate) fn ci_str(s: &super::stats::Spread) -> String {
    format!(
        "{} <small>[{}, {}]</small>",
        num(s.mean),
        num(s.ci_low),
        num(s.ci_high)
    )
}
