//! The experiment sections of the report: JAS, manipulation, class atlas, pruning.
use super::Report;
use crate::experiments::atlas::{self, Atlas};
use crate::experiments::figures;
use crate::experiments::html::{esc, figure, table};
use crate::experiments::pruning::Pruning;
use crate::experiments::stats;
use crate::experiments::svg::num;
use crate::io::results::{ImageRecord, Method, Results};

pub(super) fn jas_section(run: &Results) -> String {
    let mut out = figure(&figures::jas(run), "Boxes: quartiles; whiskers: 1.5 IQR; diamond: mean. Higher JAS = the path's neurons jointly explain more of F.");
    let mut heads = vec!["class".to_string(), "images".into()];
    heads.extend(run.methods.iter().map(|m| format!("mean JAS {m}")));
    let rows: Vec<Vec<String>> = run
        .classes_present()
        .into_iter()
        .map(|c| {
            let imgs: Vec<&ImageRecord> = run.images.iter().filter(|r| r.class() == c).collect();
            let mut row = vec![esc(&run.class_names[c]), imgs.len().to_string()];
            for m in &run.methods {
                let v: Vec<f64> = imgs
                    .iter()
                    .filter_map(|r| r.result.methods.get(m).map(|x| x.jas.reference))
                    .collect();
                row.push(num(stats::mean(&v)));
            }
            row
        })
        .collect();
    out += "<h3>Per class</h3>";
    out += &table(&heads.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
    out
}

pub(super) fn manipulation_section(r: &Report) -> String {
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
            out += "<h3>Per class</h3>";
            let mut heads = vec!["class".to_string(), "images".into()];
            for me in &m.methods {
                for &f in &m.settings.factors {
                    heads.push(format!(
                        "{me} {}: ratio / acc. dev.",
                        figures::factor_label(f)
                    ));
                }
            }
            let mut classes: Vec<usize> = m.per_class.iter().filter_map(|d| d.class).collect();
            classes.sort_unstable();
            classes.dedup();
            let rows: Vec<Vec<String>> = classes
                .iter()
                .map(|&c| {
                    let ds: Vec<_> = m.per_class.iter().filter(|d| d.class == Some(c)).collect();
                    let mut row = vec![
                        esc(&run.class_names[c]),
                        ds.first().map_or(0, |d| d.ratio.n).to_string(),
                    ];
                    for me in &m.methods {
                        for &f in &m.settings.factors {
                            row.push(ds.iter().find(|d| d.method == *me && d.factor == f).map_or(
                                "—".into(),
                                |d| {
                                    format!(
                                        "{} / {:+.0}pp",
                                        num(d.ratio.mean),
                                        100.0 * d.acc_deviation
                                    )
                                },
                            ));
                        }
                    }
                    row
                })
                .collect();
            out += &table(&heads.iter().map(String::as_str).collect::<Vec<_>>(), &rows);
        }
        None => {
            out += &figure(&figures::deviation(&figures::record_deviations(run)), "From the probabilities discover recorded (paths removed = ×0, enhanced = ×2). Dashed line: no change.");
            out += "<p class=\"note\">Accuracy deviation, other factors and per-class tables need the model: run <code>neuronpath ablate</code> or give the report the model.</p>";
        }
    }
    out
}

pub(super) fn atlas_section(r: &Report, a: &Atlas) -> String {
    let run = r.run;
    let mut out = format!(
        "<p>F[c, l, n] counts the images of class c whose <code>{}</code> path uses neuron n at layer l; classes are compared by the cosine similarity of their flattened F.</p>",
        esc(a.method.name())
    );
    out += &figure(
        &figures::similarity(a, r.max_classes),
        "Cosine similarity of the classes' neuron-usage counts. Hover a cell for its value.",
    );
    let name = |c: usize| esc(&run.class_names[c]);
    let rows: Vec<Vec<String>> = a
        .classes
        .iter()
        .map(|e| {
            let nb = |n: Option<atlas::Neighbour>| {
                n.map_or("—".into(), |n| {
                    format!("{} ({})", name(n.class), num(n.similarity))
                })
            };
            let modal: Vec<String> = e
                .modal_path
                .iter()
                .map(|(n, c)| format!("{n}<small>×{c}</small>"))
                .collect();
            vec![
                esc(&e.name),
                e.images.to_string(),
                nb(e.most_similar),
                nb(e.least_similar),
                modal.join(" → "),
            ]
        })
        .collect();
    out += &table(
        &[
            "class",
            "images",
            "most similar",
            "least similar",
            "most frequent neuron per layer (×count)",
        ],
        &rows,
    );
    out += &figure(&figures::layer_distributions(a, r.max_classes), "Distribution of the path's neuron index per layer and class (kernel density; bar: quartiles; dot: median).");
    out += "<h3>Paths per class</h3><div class=\"grid\">";
    for e in a.classes.iter().take(r.max_classes) {
        out += &figures::class_paths(a, e, run);
    }
    out += "</div>";
    if a.classes.len() > r.max_classes {
        out += &format!(
            "<p class=\"note\">{} more classes are in the tables only.</p>",
            a.classes.len() - r.max_classes
        );
    }
    out
}

fn join<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    v.iter().map(f).collect::<Vec<_>>().join(", ")
}

pub(super) fn pruning_section(p: Option<&Pruning>) -> String {
    let Some(p) = p else {
        return "<p class=\"note\">Not run. <code>neuronpath prune</code> (best on a discover run with <code>--top-k K</code>) evaluates it; pass its <code>prune.json</code> to the report.</p>".into();
    };
    let g = &p.settings.grid;
    let mut out = format!(
        "<p>Per class, the kept set is, per (layer, rank), the most frequent of the top-{} path neurons over the class's path-building images; on its held-out images a seeded fraction p of the other CLS neurons of the first d layers is zeroed. Grid: K ∈ {{{}}}, p ∈ {{{}}}, d ∈ {{{}}}; {} classes.</p>",
        g.ks.iter().max().unwrap_or(&1),
        join(&g.ks, |k| k.to_string()),
        join(&g.ps, |x| format!("{:.0}%", 100.0 * x)),
        join(&g.ds, |d| d.to_string()),
        p.classes.len()
    );
    let (ratio, acc) = figures::pruning(p);
    out += &figure(&ratio, "Mean per-image F(pruned)/F(unpruned). Dashed: the same pruning around a random kept set of equal size.");
    out += &figure(
        &acc,
        "Top-1 accuracy of the pruned model on the held-out images; black dashed: unpruned.",
    );
    let rows: Vec<Vec<String>> = p
        .overall
        .iter()
        .map(|q| {
            vec![
                q.k.to_string(),
                format!("{:.0}%", 100.0 * q.p),
                q.d.to_string(),
                q.images.to_string(),
                format!("{:.1}", q.zeroed),
                num(q.prob_unpruned),
                num(q.prob_pruned),
                super::ci_str(&q.ratio),
                format!(
                    "{:.1}% → {:.1}%",
                    100.0 * q.acc_unpruned,
                    100.0 * q.acc_pruned
                ),
                q.control.map_or("—".into(), |c| {
                    format!("{} / {:.1}%", num(c.0), 100.0 * c.1)
                }),
            ]
        })
        .collect();
    out += &table(
        &[
            "K",
            "p",
            "d",
            "images",
            "neurons zeroed",
            "F unpruned",
            "F pruned",
            "F ratio",
            "top-1 acc.",
            "random kept set: F / acc.",
        ],
        &rows,
    );
    out
}
