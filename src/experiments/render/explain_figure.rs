//! The picture of one explained image: the input, its path diagram (layers as columns, one node
//! per path neuron, area = its share of the JAS, colour = sign) and the patch heat maps of every
//! path neuron and of the path as a whole over the image, with diverging colour bars. Drawn as
//! SVG; [`png`] rasterises it for slides.
use super::diverging::{diverging, node};
use super::svg::{Anchor, Svg};
use super::thumbs::png_data_uri;
use crate::attribution::explain::Explanation;
use crate::attribution::spatial::PatchMap;
use crate::experiments::error::{ExperimentError, Result};
use crate::experiments::format::num;
use image::{ExtendedColorType, RgbImage};

/// What the picture is titled with.
pub struct Labels<'a> {
    /// Where the image came from.
    pub source: &'a str,
    /// Class names by index.
    pub class_name: &'a dyn Fn(usize) -> String,
    /// "ground-truth label" or "predicted class" (what the target is).
    pub target_kind: &'a str,
}

/// The image in light grey (so the heat maps' colours read true over dark images too) as a PNG
/// `data:` URI.
pub fn grey_data_uri(img: &RgbImage) -> Result<String> {
    let mut grey = image::imageops::grayscale(img);
    for p in grey.pixels_mut() {
        p.0[0] = 110 + (f64::from(p.0[0]) * 145.0 / 255.0).round() as u8;
    }
    png_data_uri(
        grey.as_raw(),
        (grey.width(), grey.height()),
        ExtendedColorType::L8,
    )
}

/// The image in colour as a PNG `data:` URI.
pub fn rgb_data_uri(img: &RgbImage) -> Result<String> {
    png_data_uri(
        img.as_raw(),
        (img.width(), img.height()),
        ExtendedColorType::Rgb8,
    )
}

fn max_abs<'a>(maps: impl Iterator<Item = &'a PatchMap>) -> f64 {
    maps.flat_map(|m| m.patches.iter())
        .fold(0.0, |a: f64, v| a.max(v.abs()))
}

/// A heat map of `map` over the grey image at (x, y), `side` pixels square.
pub fn heat_map(
    svg: &mut Svg,
    (x, y): (f64, f64),
    side: f64,
    grey: &str,
    map: &PatchMap,
    grid: usize,
    max: f64,
) {
    svg.raw(&format!(
        r#"<image x="{x:.1}" y="{y:.1}" width="{side:.1}" height="{side:.1}" href="{grey}" preserveAspectRatio="none" style="image-rendering:pixelated"/>"#
    ));
    let cell = side / grid as f64;
    for (i, &v) in map.patches.iter().enumerate() {
        let (r, c) = (i / grid, i % grid);
        let (fill, alpha) = diverging(v, max);
        if alpha > 0.0 {
            let tip = format!("patch ({r}, {c}): {}", num(v));
            svg.rect(
                (x + c as f64 * cell, y + r as f64 * cell),
                (cell, cell),
                fill,
                &format!(r#"fill-opacity="{alpha:.3}""#),
                Some(&tip),
            );
        }
    }
    svg.rect(
        (x, y),
        (side, side),
        "none",
        r##"stroke="#888" stroke-width="0.5""##,
        None,
    );
}

/// A vertical colour bar for [-max, max] at (x, y), `h` tall, titled `title`.
pub fn colour_bar(svg: &mut Svg, (x, y): (f64, f64), h: f64, max: f64, title: &str) {
    let steps = 40;
    for s in 0..steps {
        let v = max * (1.0 - 2.0 * (s as f64 + 0.5) / steps as f64);
        let (fill, alpha) = diverging(v, max);
        svg.rect(
            (x, y + s as f64 * h / steps as f64),
            (12.0, h / steps as f64 + 0.3),
            fill,
            &format!(r#"fill-opacity="{alpha:.3}""#),
            None,
        );
    }
    svg.rect(
        (x, y),
        (12.0, h),
        "none",
        r##"stroke="#888" stroke-width="0.5""##,
        None,
    );
    for (v, ty) in [(max, y), (0.0, y + h / 2.0), (-max, y + h)] {
        svg.line((x + 12.0, ty), (x + 15.0, ty), "#444", 1.0, "");
        svg.text((x + 17.0, ty + 4.0), &num(v), Anchor::Start, 10.0, "");
    }
    svg.vtext((x - 4.0, y + h / 2.0), title, 10.0);
}

/// The path diagram in the box (x, y, w, h): one column per layer, the path neuron as a node
/// (area proportional to |contribution|, red positive, blue negative), consecutive nodes joined.
pub fn path_diagram(svg: &mut Svg, (x, y, w, h): (f64, f64, f64, f64), e: &Explanation) {
    let layers = e.path.len();
    let col = w / layers.max(1) as f64;
    let maxc = e.contributions.iter().fold(0.0, |a: f64, v| a.max(v.abs()));
    let rmax = (col * 0.42).min(h * 0.28).max(3.0);
    let cy = y + h * 0.5;
    let cx = |l: usize| x + col * (l as f64 + 0.5);
    for l in 1..layers {
        svg.line((cx(l - 1), cy), (cx(l), cy), "#999", 1.5, "");
    }
    for l in 0..layers {
        let c = e.contributions[l];
        let (r, fill) = node(c, maxc, (2.0, rmax));
        let tip = format!(
            "layer {l}, neuron {}: activation {}, JAS term {}",
            e.path[l],
            num(e.activations[l]),
            num(c)
        );
        svg.circle(
            (cx(l), cy),
            r,
            fill,
            r##"stroke="#333" stroke-width="0.5""##,
            Some(&tip),
        );
        svg.text(
            (cx(l), y + 12.0),
            &format!("L{l}"),
            Anchor::Middle,
            11.0,
            r#"font-weight="bold""#,
        );
        svg.text(
            (cx(l), y + h - 16.0),
            &format!("#{}", e.path[l]),
            Anchor::Middle,
            11.0,
            "",
        );
        svg.note((cx(l), y + h - 3.0), &num(c), Anchor::Middle, 9.0);
    }
}

/// The whole picture as an inline `<svg>` element (see [`super::svg::standalone`] for a file).
pub fn figure(e: &Explanation, img: &RgbImage, labels: &Labels) -> Result<String> {
    let grey = grey_data_uri(img)?;
    let colour = rgb_data_uri(img)?;
    let s = &e.spatial;
    let layers = e.path.len();
    let width = 900.0;
    let (pad, img_side) = (16.0, 170.0);
    let per_row = 7usize;
    let side = ((width - 2.0 * pad - 90.0) / per_row as f64 - 12.0).min(120.0);
    let maps = layers + 1;
    let rows = maps.div_ceil(per_row);
    let top = 58.0;
    let maps_top = top + img_side + 36.0;
    let height = maps_top + rows as f64 * (side + 52.0) + pad;
    let mut svg = Svg::new(width, height);
    svg.rect((0.0, 0.0), (width, height), "#fff", "", None);
    let name = labels.class_name;
    svg.text(
        (pad, 22.0),
        &format!(
            "{} — F = probability of {} ({}) = {}",
            labels.source,
            name(e.target),
            labels.target_kind,
            num(e.prob_target)
        ),
        Anchor::Start,
        14.0,
        r#"font-weight="bold""#,
    );
    svg.text(
        (pad, 42.0),
        &format!(
            "prediction {} ({}); JAS {} (additive {}, completeness delta {}); maps: {} integration steps",
            name(e.prediction),
            num(e.prob_prediction),
            num(e.jas.reference),
            num(e.jas.additive),
            num(e.jas.delta),
            s.steps
        ),
        Anchor::Start,
        11.0,
        r##"fill="#444""##,
    );
    svg.raw(&format!(
        r#"<image x="{pad}" y="{top}" width="{img_side}" height="{img_side}" href="{colour}" preserveAspectRatio="none" style="image-rendering:pixelated"/>"#
    ));
    let dx = pad + img_side + 30.0;
    svg.text(
        (dx, top + 4.0),
        "Path: one neuron per layer (area = |JAS term|, red +, blue −)",
        Anchor::Start,
        11.0,
        r##"fill="#444""##,
    );
    path_diagram(
        &mut svg,
        (dx, top + 14.0, width - dx - pad, img_side - 14.0),
        e,
    );
    svg.text(
        (pad, maps_top - 12.0),
        "Where each path neuron looks: integrated gradients of its activation per patch (shared scale); last: F through the path alone",
        Anchor::Start,
        11.0,
        r##"fill="#444""##,
    );
    let nmax = max_abs(s.neurons.iter());
    let pmax = max_abs(std::iter::once(&s.path));
    for (i, m) in s.neurons.iter().chain(std::iter::once(&s.path)).enumerate() {
        let (r, c) = (i / per_row, i % per_row);
        let x = pad + c as f64 * (side + 12.0);
        let y = maps_top + r as f64 * (side + 52.0);
        let is_path = m.layer.is_none();
        heat_map(
            &mut svg,
            (x, y),
            side,
            &grey,
            m,
            s.grid,
            if is_path { pmax } else { nmax },
        );
        let title = match (m.layer, m.unit) {
            (Some(l), Some(u)) => format!("L{l} #{u}: a = {}", num(m.value)),
            _ => format!("path: F = {}", num(m.value)),
        };
        svg.text((x, y + side + 13.0), &title, Anchor::Start, 10.0, "");
        let grey = r##"fill="#666""##;
        let base = format!("baseline {}", num(m.baseline));
        svg.text((x, y + side + 26.0), &base, Anchor::Start, 9.0, grey);
        let delta = format!("delta {}", num(m.delta));
        svg.text((x, y + side + 38.0), &delta, Anchor::Start, 9.0, grey);
    }
    let (bx, bh) = (width - pad - 52.0, side * 0.42);
    colour_bar(&mut svg, (bx, maps_top), bh, nmax, "neurons");
    colour_bar(&mut svg, (bx, maps_top + side - bh), bh, pmax, "path (F)");
    Ok(svg.finish(&format!("{}: path and patch heat maps", labels.source)))
}

/// Rasterises a standalone SVG document at `scale` (system fonts for the text; without any
/// font installed the text is left out of the PNG, the SVG keeps it).
pub fn png(svg_doc: &str, scale: f32) -> Result<Vec<u8>> {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg_doc, &opt)
        .map_err(|e| ExperimentError::Render(format!("cannot parse the figure's SVG: {e}")))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or_else(|| ExperimentError::Render("figure too large".into()))?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| ExperimentError::Render("figure too large".into()))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| ExperimentError::Render(format!("cannot encode the PNG: {e}")))
}
