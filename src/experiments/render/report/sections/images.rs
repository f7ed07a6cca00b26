//! The per-image sections of the report: thumbnail, facts, path diagram, numbers per method.
use crate::experiments::format::num;
use crate::experiments::render::figures;
use crate::experiments::render::html::{esc, table, table_aligned};
use crate::experiments::render::report::{Report, Section, Shared};
use crate::io::results::{ImageRecord, Method};
use std::collections::BTreeMap;

pub(super) fn section(r: &Report, _: &Shared) -> Option<Section> {
    Some(Section {
        id: "images",
        title: "Images".into(),
        nav: Some("Images"),
        body: body(r),
    })
}

fn body(r: &Report) -> String {
    let run = r.run;
    let shown: Vec<&ImageRecord> = run.images.iter().take(r.max_images).collect();
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|x| {
            let res = &x.result;
            let jas = res
                .methods
                .get(&Method::Path)
                .map_or("—".into(), |p| num(p.jas.reference));
            vec![
                format!("<a href=\"#img-{0}\">{0}</a>", x.index),
                esc(&run.class_names[x.class()]),
                esc(&run.class_names[res.prediction]),
                num(res.prob_target),
                jas,
                esc(&x.source),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "image",
            "class",
            "prediction",
            "F clean",
            "JAS path",
            "source",
        ],
        &rows,
    );
    if run.images.len() > shown.len() {
        out += &format!(
            "<p class=\"note\">{} more images are in the results file only.</p>",
            run.images.len() - shown.len()
        );
    }
    let manip: BTreeMap<u64, &crate::experiments::manipulation::ImageOutcome> = r
        .manipulation
        .map(|m| m.images.iter().map(|o| (o.index, o)).collect())
        .unwrap_or_default();
    for x in shown {
        out += &image_section(r, x, manip.get(&x.index).copied());
    }
    out
}

fn image_section(
    r: &Report,
    x: &ImageRecord,
    m: Option<&crate::experiments::manipulation::ImageOutcome>,
) -> String {
    let (run, res) = (r.run, &x.result);
    let name = |c: usize| esc(&run.class_names[c]);
    let thumb = r.thumbnails.get(&x.index).map_or(String::new(), |u| {
        format!("<img src=\"{u}\" alt=\"image {}\">", x.index)
    });
    let facts = format!(
        "<div><b>{}</b><br>ground truth: {}<br>prediction: {} (p = {})<br>F = p({}) = {}</div>",
        esc(&x.source),
        name(x.class()),
        name(res.prediction),
        num(res.prob_prediction),
        name(res.target),
        num(res.prob_target)
    );
    let mut rows = Vec::new();
    for me in &run.methods {
        let Some(p) = res.methods.get(me) else {
            continue;
        };
        let mut row = vec![
            esc(me.name()),
            p.path
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" → "),
            num(p.jas.reference),
            num(p.jas.additive),
            num(p.prob_removed),
            num(p.prob_enhanced),
        ];
        if let Some(o) = m.and_then(|o| o.methods.get(me)) {
            row.push(
                o.iter()
                    .map(|e| format!("×{}: {} ({})", num(e.factor), num(e.prob), name(e.top1)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
            );
        }
        rows.push(row);
    }
    let mut heads = vec![
        "method",
        "neuron per layer",
        "JAS ref.",
        "JAS add.",
        "F removed",
        "F enhanced",
    ];
    if m.is_some() {
        heads.push("F after edit (top-1)");
    }
    let mut out = format!(
        "<div id=\"img-{}\"><h3>Image {} — {}</h3><div class=\"img\">{thumb}{facts}{}</div>{}",
        x.index,
        x.index,
        name(x.class()),
        figures::image_paths(run, x),
        table_aligned(&heads, "llrrrrl", &rows)
    );
    if let Some(mg) = res
        .methods
        .get(&Method::Path)
        .and_then(|p| p.margins.as_ref())
    {
        let v: Vec<String> = mg.iter().map(|v| num(*v)).collect();
        out += &format!(
            "<p class=\"note\">Search margins (best minus runner-up score) per layer: {}</p>",
            v.join(", ")
        );
    }
    out + "</div>"
}
