//! Class-wise pruning: F ratio and accuracy over the (K, p, d) grid against a random control.
use crate::experiments::pruning::Pruning;
use crate::experiments::render::figures;
use crate::experiments::render::html::{figure, table};
use crate::experiments::render::report::{Report, Section, Shared};
use crate::format::{num, pct};

pub(super) fn section(r: &Report, _: &Shared) -> Option<Section> {
    Some(Section {
        id: "pruning",
        title: "Class-wise pruning".into(),
        nav: Some("Pruning"),
        body: body(r.pruning),
    })
}

fn join<T>(v: &[T], f: impl Fn(&T) -> String) -> String {
    v.iter().map(f).collect::<Vec<_>>().join(", ")
}

fn body(p: Option<&Pruning>) -> String {
    let Some(p) = p else {
        return "<p class=\"note\">Not run. <code>neuronpath prune</code> (best on a discover run with <code>--top-k K</code>) evaluates it; pass its <code>prune.json</code> to the report.</p>".into();
    };
    let g = &p.settings.grid;
    let mut out = format!(
        "<p>Per class, the kept set is, per (layer, rank), the most frequent of the top-{} path neurons over the class's path-building images; on its held-out images a seeded fraction p of the other CLS neurons of the first d layers is zeroed. Grid: K ∈ {{{}}}, p ∈ {{{}}}, d ∈ {{{}}}; {} classes.</p>",
        g.ks.iter().max().unwrap_or(&1),
        join(&g.ks, |k| k.to_string()),
        join(&g.ps, |x| pct(*x)),
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
                pct(q.p),
                q.d.to_string(),
                q.images.to_string(),
                num(q.zeroed),
                num(q.prob_unpruned),
                num(q.prob_pruned),
                crate::experiments::render::report::ci_str(&q.ratio),
                format!("{} → {}", pct(q.acc_unpruned), pct(q.acc_pruned)),
                q.control
                    .map_or("—".into(), |c| format!("{} / {}", num(c.0), pct(c.1))),
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
