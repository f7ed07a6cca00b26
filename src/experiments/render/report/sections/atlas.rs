//! The class atlas: class similarity, per-layer distributions, each class's paths.
use crate::experiments::atlas::{self, Atlas};
use crate::experiments::render::html::{esc, figure, table};
use crate::experiments::render::report::{Report, Section, Shared};
use crate::experiments::render::{detail, figures};
use crate::format::num;

pub(super) fn section(r: &Report, shared: &Shared) -> Option<Section> {
    Some(Section {
        id: "atlas",
        title: "Class atlas".into(),
        nav: Some("Class atlas"),
        body: shared
            .atlas
            .as_ref()
            .map_or("<p>No paths to build an atlas from.</p>".into(), |a| {
                body(r, a)
            }),
    })
}

fn body(r: &Report, a: &Atlas) -> String {
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
    out += &figure(&detail::concentration(a, r.max_classes), "Near 1: almost every image of the class routes through the same neuron at that layer; near 0: the class's paths spread over many neurons there.");
    out += &format!("<h3>Path neurons per class, by rank</h3><p class=\"note\">Per class, a row per layer and a column per rank: rank 1 is the neuron most of the class's paths use at that layer, labelled with its index; colour is the share of the class's images. Ranks beyond {} are in <code>neuronpath atlas</code>'s output.</p><div class=\"grid\">", detail::RANKS);
    for e in a.classes.iter().take(r.max_classes) {
        out += &detail::class_ranks(a, e);
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
