//! The class atlas: class similarity, per-layer distributions, each class's paths.
use crate::experiments::atlas::{self, Atlas};
use crate::experiments::format::num;
use crate::experiments::render::figures;
use crate::experiments::render::html::{esc, figure, table};
use crate::experiments::render::report::{Report, Section, Shared};

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
