//! The report's per-image figures (every method's path as a diagram, the path's patch heat
//! maps) and its atlas charts over neuron rank. Neuron indices have no order, so no chart here
//! puts them on an axis: layers are columns, ranks are columns, indices are labels.
use super::diverging::node;
use super::explain_figure::colour_bar;
use super::svg::{esc, viridis, Anchor, Svg};
use super::thumbs;
use crate::experiments::atlas::{Atlas, ClassEntry};
use crate::experiments::detail::ImageDetail;
use crate::format::num;
use crate::io::results::{ImageRecord, Method, Results};
use std::collections::BTreeMap;

/// Width of the report's figures (they also shrink to the page).
pub const WIDTH: f64 = 720.0;

/// One image's paths: a row per method, a column per layer, the chosen neuron as a node whose
/// area is its term of the JAS (red positive, blue negative; hollow when the terms are not
/// known, i.e. without the model), consecutive nodes joined.
pub fn path_diagram(
    run: &Results,
    r: &ImageRecord,
    terms: Option<&BTreeMap<Method, Vec<f64>>>,
) -> String {
    let methods: Vec<Method> = run
        .methods
        .iter()
        .copied()
        .filter(|m| r.result.methods.contains_key(m))
        .collect();
    let layers = run.config.layers.max(1);
    let (left, top, row_h) = (96.0, 40.0, 46.0);
    let col = (WIDTH - left - 12.0) / layers as f64;
    let height = top + row_h * methods.len() as f64 + 30.0;
    let mut s = Svg::new(WIDTH, height);
    let title = format!("image {}: path diagram", r.index);
    s.heading((8.0, 16.0), &title, 13.0);
    let every = (24.0 / col).ceil().max(1.0) as usize;
    let cx = |l: usize| left + col * (l as f64 + 0.5);
    for l in (0..layers).step_by(every) {
        s.note((cx(l), top - 8.0), &format!("L{l}"), Anchor::Middle, 10.0);
    }
    let maxt = terms
        .map(|t| t.values().flatten().fold(0.0, |a: f64, v| a.max(v.abs())))
        .unwrap_or(0.0);
    let rmax = (col * 0.42).min(row_h * 0.32).max(3.0);
    for (i, m) in methods.iter().enumerate() {
        let path = &r.result.methods[m].path;
        let cy = top + row_h * (i as f64 + 0.4);
        let bold = if *m == Method::Path {
            r#"font-weight="bold""#
        } else {
            ""
        };
        s.text((8.0, cy + 4.0), m.name(), Anchor::Start, 11.0, bold);
        for l in 1..path.len() {
            s.line(
                (cx(l - 1), cy),
                (cx(l), cy),
                m.colour(),
                1.5,
                r#"stroke-opacity="0.6""#,
            );
        }
        let t = terms.and_then(|t| t.get(m));
        for (l, &n) in path.iter().enumerate() {
            let (tip, r_, fill, stroke) = match t.and_then(|t| t.get(l)) {
                Some(&v) => {
                    let (r_, fill) = node(v, maxt, (1.5, rmax));
                    (
                        format!("{m}, layer {l}: neuron {n}, JAS term {}", num(v)),
                        r_,
                        fill,
                        "#333",
                    )
                }
                None => (
                    format!("{m}, layer {l}: neuron {n}"),
                    rmax * 0.5,
                    "#fff",
                    m.colour(),
                ),
            };
            s.circle(
                (cx(l), cy),
                r_,
                fill,
                &format!(r#"stroke="{stroke}" stroke-width="1""#),
                Some(&tip),
            );
            if l % every == 0 {
                s.text(
                    (cx(l), cy + row_h * 0.5),
                    &n.to_string(),
                    Anchor::Middle,
                    9.0,
                    r##"fill="#444""##,
                );
            }
        }
    }
    let key = if terms.is_some() {
        "Node area: the neuron's term of the additive JAS (red +, blue −); label: neuron index."
    } else {
        "Label: neuron index (node sizes need the model: run the report with it)."
    };
    s.note((8.0, height - 8.0), key, Anchor::Start, 10.0);
    s.finish(&title)
}

/// The path's patch heat maps over the grey image: one per layer's neuron on a shared
/// diverging scale, then F through the path alone on its own scale, each with a colour bar.
pub fn heat_maps(index: u64, d: &ImageDetail, grey: Option<&str>) -> String {
    let sp = &d.spatial;
    let maps: Vec<_> = sp.neurons.iter().chain(std::iter::once(&sp.path)).collect();
    let (side, gap, label_h, bar_w) = (72.0, 10.0, 30.0, 80.0);
    let per_row = (((WIDTH - bar_w - 8.0) / (side + gap)).floor() as usize).max(1);
    let rows = maps.len().div_ceil(per_row);
    let top = 24.0;
    let height = top + rows as f64 * (side + label_h) + 6.0;
    let mut s = Svg::new(WIDTH, height);
    let title = format!("image {index}: patch heat maps");
    s.heading((8.0, 16.0), &title, 13.0);
    let sym = format!("g{index}");
    if let Some(g) = grey {
        s.raw(&format!(
            r#"<defs><symbol id="{sym}" viewBox="0 0 1 1" preserveAspectRatio="none"><image width="1" height="1" href="{g}" preserveAspectRatio="none" style="image-rendering:pixelated"/></symbol></defs>"#
        ));
    }
    let amax = |it: &mut dyn Iterator<Item = f64>| it.fold(0.0, |a: f64, v| a.max(v.abs()));
    let nmax = amax(&mut sp.neurons.iter().flat_map(|m| m.patches.iter().copied()));
    let pmax = amax(&mut sp.path.patches.iter().copied());
    for (i, m) in maps.iter().enumerate() {
        let (x, y) = (
            8.0 + (i % per_row) as f64 * (side + gap),
            top + (i / per_row) as f64 * (side + label_h),
        );
        if grey.is_some() {
            s.raw(&format!(
                r##"<use href="#{sym}" x="{x:.1}" y="{y:.1}" width="{side}" height="{side}"/>"##
            ));
        } else {
            s.rect((x, y), (side, side), "#ddd", "", None);
        }
        let max = if m.layer.is_some() { nmax } else { pmax };
        if let Ok(uri) = thumbs::heat_data_uri(&m.patches, sp.grid, max) {
            s.raw(&format!(
                r#"<image x="{x:.1}" y="{y:.1}" width="{side}" height="{side}" href="{uri}" preserveAspectRatio="none" style="image-rendering:pixelated"/>"#
            ));
        }
        let (label, tip) = match (m.layer, m.unit) {
            (Some(l), Some(u)) => (
                format!("L{l} #{u}"),
                format!(
                    "layer {l}, neuron {u}: activation {} (baseline {}), completeness delta {}",
                    num(m.value),
                    num(m.baseline),
                    num(m.delta)
                ),
            ),
            _ => (
                "path (F)".to_string(),
                format!(
                    "F through the path: {} (baseline {}), completeness delta {}",
                    num(m.value),
                    num(m.baseline),
                    num(m.delta)
                ),
            ),
        };
        s.rect(
            (x, y),
            (side, side),
            "none",
            r##"stroke="#888" stroke-width="0.5""##,
            Some(&tip),
        );
        s.text((x, y + side + 12.0), &label, Anchor::Start, 10.0, "");
        s.text(
            (x, y + side + 24.0),
            &format!("a = {}", num(m.value)),
            Anchor::Start,
            9.0,
            r##"fill="#666""##,
        );
    }
    let bx = WIDTH - bar_w + 14.0;
    let bh = (side * 0.5).max(30.0);
    colour_bar(&mut s, (bx, top + 4.0), bh, nmax, "neurons");
    colour_bar(&mut s, (bx, top + bh + 26.0), bh, pmax, "path");
    s.finish(&title)
}

/// Columns of the rank charts: the class's most frequent neurons per layer.
pub const RANKS: usize = 8;

/// A class's path neurons by rank: a row per layer, a column per rank (1 = the neuron most of
/// the class's paths use at that layer), colour = share of the class's images, label = index.
pub fn class_ranks(a: &Atlas, e: &ClassEntry) -> String {
    let (left, top, cw, rh) = (34.0, 34.0, 36.0, 16.0);
    let width = left + cw * RANKS as f64 + 10.0;
    let height = top + rh * a.layers as f64 + 22.0;
    let mut s = Svg::new(width, height);
    let title = format!("{}: path neurons by rank", e.name);
    s.heading(
        (4.0, 14.0),
        &format!("{} ({} images)", e.name, e.images),
        12.0,
    );
    for k in 0..RANKS {
        s.note(
            (left + cw * (k as f64 + 0.5), top - 5.0),
            &format!("{}", k + 1),
            Anchor::Middle,
            9.0,
        );
    }
    for l in 0..a.layers {
        let y = top + rh * l as f64;
        s.note(
            (left - 4.0, y + rh * 0.7),
            &format!("L{l}"),
            Anchor::End,
            9.0,
        );
        for (k, &(n, c)) in e.ranked(l).iter().take(RANKS).enumerate() {
            let share = f64::from(c) / e.images.max(1) as f64;
            let x = left + cw * k as f64;
            let tip = format!(
                "layer {l}, rank {}: neuron {n} on {c} of {} paths",
                k + 1,
                e.images
            );
            share_cell(&mut s, (x, y), (cw, rh), share, &tip, Some((-0.5, n)));
        }
    }
    s.note(
        (4.0, height - 6.0),
        "rank → (colour: share of the class's paths)",
        Anchor::Start,
        9.0,
    );
    s.finish(&title)
}

/// Per class and layer, the share of the class's paths through its rank-1 neuron (labelled
/// with that neuron): how concentrated each class's paths are, layer by layer.
pub fn concentration(a: &Atlas, max_classes: usize) -> String {
    let shown: Vec<&ClassEntry> = a.classes.iter().take(max_classes).collect();
    let left = 130.0;
    let cw = ((WIDTH - left - 70.0) / a.layers.max(1) as f64).min(48.0);
    let (top, rh) = (40.0, 18.0);
    let height = top + rh * shown.len() as f64 + 26.0;
    let mut s = Svg::new(WIDTH, height);
    let title =
        "Path concentration: share of each class's paths through its rank-1 neuron, per layer";
    s.heading((8.0, 16.0), title, 13.0);
    for l in 0..a.layers {
        s.note(
            (left + cw * (l as f64 + 0.5), top - 6.0),
            &format!("L{l}"),
            Anchor::Middle,
            9.0,
        );
    }
    for (i, e) in shown.iter().enumerate() {
        let y = top + rh * i as f64;
        let name: String = e.name.chars().take(20).collect();
        s.text((left - 6.0, y + rh * 0.7), &name, Anchor::End, 10.0, "");
        for (l, &(n, c)) in e.modal_path.iter().enumerate() {
            let share = f64::from(c) / e.images.max(1) as f64;
            let x = left + cw * l as f64;
            let tip = format!(
                "{}, layer {l}: neuron {n} on {c} of {} paths",
                e.name, e.images
            );
            let label = (cw >= 26.0).then_some((0.0, n));
            share_cell(&mut s, (x, y), (cw, rh), share, &tip, label);
        }
    }
    // Colour key: share 0 .. 1.
    let kx = left + cw * a.layers as f64 + 14.0;
    for k in 0..20 {
        let t = 1.0 - k as f64 / 19.0;
        s.rect(
            (kx, top + k as f64 * 4.0),
            (10.0, 4.2),
            &viridis(t),
            "",
            None,
        );
    }
    s.text((kx + 14.0, top + 6.0), "1", Anchor::Start, 9.0, "");
    s.text((kx + 14.0, top + 80.0), "0", Anchor::Start, 9.0, "");
    s.note((8.0, height - 8.0), "Colour: share of the class's images whose path uses the neuron; label: the neuron's index.", Anchor::Start, 10.0);
    s.finish(title)
}

/// A `(w, h)` cell at `(x, y)` coloured by `share` (viridis, one pixel of gap), with `label`'s
/// neuron index written in it (shifted by its `dx`) in an ink that reads on that colour.
fn share_cell(
    s: &mut Svg,
    (x, y): (f64, f64),
    (w, h): (f64, f64),
    share: f64,
    tip: &str,
    label: Option<(f64, usize)>,
) {
    s.rect((x, y), (w - 1.0, h - 1.0), &viridis(share), "", Some(tip));
    if let Some((dx, n)) = label {
        let ink = if share > 0.6 { "#222" } else { "#fff" };
        s.text(
            (x + w / 2.0 + dx, y + h * 0.72),
            &n.to_string(),
            Anchor::Middle,
            9.0,
            &format!(r#"fill="{ink}""#),
        );
    }
}

/// A thumbnail with a caption, as the dataset view lays them out.
pub fn thumb(uri: Option<&String>, alt: &str, caption: &str) -> String {
    let img = uri.map_or("<div class=\"noimg\"></div>".into(), |u| {
        format!("<img src=\"{u}\" alt=\"{}\">", esc(alt))
    });
    format!("<figure class=\"th\">{img}<figcaption>{caption}</figcaption></figure>")
}
