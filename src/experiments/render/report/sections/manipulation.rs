//! Manipulation: the probability and accuracy deviation of removing / enhancing path neurons.
use crate::experiments::manipulation::Deviation;
use crate::experiments::render::figures;
use crate::experiments::render::html::{esc, figure, table};
use crate::experiments::render::report::{Report, Section, Shared};
use crate::experiments::stats;
use crate::format::{num, pp};
use crate::io::results::Method;

pub(super) fn section(r: &Report, _: &Shared) -> Option<Section> {
    Some(Section {
        id: "manipulation",
        title: "Manipulation: removing and enhancing path neurons".into(),
        nav: Some("Manipulation"),
        body: body(r),
    })
}

fn body(r: &Report) -> String {
    let run = r.run;
    let mut out = String::new();
    match r.manipulation {
        Some(m) => {
            let rows: Vec<(Method, f64, stats::Spread)> = m
                .overall
                .iter()
                .map(|d| (d.method, d.factor, d.ratio))
                .collect();
            out += &figure(&figures::deviation(&rows), "Every path neuron is scaled in one forward pass (current value = after upstream edits). Dashed line: no change.");
            out += &figure(
                &figures::accuracy(m),
                "Top-1 accuracy after the edit minus clean top-1 accuracy, over all images.",
            );
            if m.random_generated {
                out += "<p class=\"note\">The run had no random paths; the random control was generated with discover's generator.</p>";
            }
            let mut heads = vec!["class".to_string(), "images".into()];
            for me in &m.methods {
                for &f in &m.settings.factors {
                    heads.push(format!("{me} ×{}", num(f)));
                }
            }
            let heads: Vec<&str> = heads.iter().map(String::as_str).collect();
            let mut classes: Vec<usize> = m.per_class.iter().filter_map(|d| d.class).collect();
            classes.sort_unstable();
            classes.dedup();
            // One table per measure: a cell holds one number, so the table fits 800 px.
            let per_class = |cell: &dyn Fn(&Deviation) -> String| -> Vec<Vec<String>> {
                classes
                    .iter()
                    .map(|&c| {
                        let ds: Vec<_> =
                            m.per_class.iter().filter(|d| d.class == Some(c)).collect();
                        let mut row = vec![
                            esc(&run.class_names[c]),
                            ds.first().map_or(0, |d| d.ratio.n).to_string(),
                        ];
                        for me in &m.methods {
                            for &f in &m.settings.factors {
                                row.push(
                                    ds.iter()
                                        .find(|d| d.method == *me && d.factor == f)
                                        .map_or("—".into(), |d| cell(d)),
                                );
                            }
                        }
                        row
                    })
                    .collect()
            };
            out += "<h3>Per class: F(edited) / F(clean), mean over the class's images</h3><p class=\"note\">Columns: method and factor (×0 removes the path's neurons, ×2 enhances them).</p>";
            out += &table(&heads, &per_class(&|d| num(d.ratio.mean)));
            out += "<h3>Per class: top-1 accuracy change</h3>";
            out += &table(&heads, &per_class(&|d| pp(d.acc_deviation)));
        }
        None => {
            out += &figure(&figures::deviation(&figures::record_deviations(run)), "From the probabilities discover recorded (paths removed = ×0, enhanced = ×2). Dashed line: no change.");
            out += "<p class=\"note\">Accuracy deviation, other factors and per-class tables need the model: run <code>neuronpath ablate</code> or give the report the model.</p>";
        }
    }
    out
}
