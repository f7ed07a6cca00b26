//! The run's configuration (from the results header) and the per-method summary table.
use crate::experiments::render::figures;
use crate::experiments::render::html::{esc, table};
use crate::experiments::render::report::{ci_str, Report, Section, Shared};
use crate::experiments::stats::{spread, summarize};
use crate::format::{num, pct, pp};
use serde_json::json;

pub(super) fn section(r: &Report, _: &Shared) -> Option<Section> {
    Some(Section {
        id: "summary",
        title: "Run and summary".into(),
        nav: Some("Summary"),
        body: summary(r),
    })
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
        "<h3>Summary</h3><p>{} images ({} failed), {} classes with images, clean top-1 accuracy {}.</p>",
        run.images.len(),
        run.errors.len(),
        run.classes_present().len(),
        pct(run.clean_accuracy())
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
                        .map_or("—".into(), |d| pp(d.acc_deviation)),
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
        heads.extend(["acc. change removed", "acc. change enhanced"]);
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
