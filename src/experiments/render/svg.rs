//! A minimal SVG writer (text as `<text>` elements, no fonts or external resources): shapes,
//! linear scales with round ticks, axes, colours.
use crate::format::num;
use std::fmt::Write;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal text anchoring.
#[derive(Clone, Copy)]
pub enum Anchor {
    /// The text starts at the position.
    Start,
    /// The text is centred on the position.
    Middle,
    /// The text ends at the position.
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// An SVG document being drawn.
pub struct Svg {
    /// Width in SVG user units (pixels).
    pub width: f64,
    /// Height in SVG user units (pixels).
    pub height: f64,
    body: String,
}

impl Svg {
    /// An empty drawing of `width` x `height` pixels.
    pub fn new(width: f64, height: f64) -> Svg {
        Svg {
            width,
            height,
            body: String::new(),
        }
    }

    /// Appends raw markup (already escaped).
    pub fn raw(&mut self, s: &str) {
        self.body.push_str(s);
    }

    /// A rectangle; `tip` becomes a hover tooltip.
    pub fn rect(
        &mut self,
        (x, y): (f64, f64),
        (w, h): (f64, f64),
        fill: &str,
        extra: &str,
        tip: Option<&str>,
    ) {
        let _ = write!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" {extra}"#,
            w.max(0.0),
            h.max(0.0)
        );
        self.close("rect", tip);
    }

    /// A straight line segment.
    pub fn line(
        &mut self,
        (x1, y1): (f64, f64),
        (x2, y2): (f64, f64),
        stroke: &str,
        width: f64,
        extra: &str,
    ) {
        let _ = write!(
            self.body,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}" {extra}/>"#
        );
    }

    /// An open line through `pts`.
    pub fn polyline(
        &mut self,
        pts: &[(f64, f64)],
        stroke: &str,
        width: f64,
        extra: &str,
        tip: Option<&str>,
    ) {
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-linejoin="round" {extra}"#,
            p.join(" ")
        );
        self.close("polyline", tip);
    }

    /// A closed polygon.
    pub fn polygon(&mut self, pts: &[(f64, f64)], fill: &str, extra: &str, tip: Option<&str>) {
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            self.body,
            r#"<polygon points="{}" fill="{fill}" {extra}"#,
            p.join(" ")
        );
        self.close("polygon", tip);
    }

    /// A circle of radius `r` around the centre; `tip` becomes a hover tooltip.
    pub fn circle(
        &mut self,
        (cx, cy): (f64, f64),
        r: f64,
        fill: &str,
        extra: &str,
        tip: Option<&str>,
    ) {
        let _ = write!(
            self.body,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{r}" fill="{fill}" {extra}"#
        );
        self.close("circle", tip);
    }

    /// Text at a position (its baseline), `size` in pixels; `extra` holds further attributes.
    pub fn text(&mut self, (x, y): (f64, f64), s: &str, anchor: Anchor, size: f64, extra: &str) {
        let _ = write!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{}" font-size="{size}" {extra}>{}</text>"#,
            anchor.name(),
            esc(s)
        );
    }

    /// A chart's title: bold, centred at the top.
    pub fn title(&mut self, title: &str) {
        let at = (self.width / 2.0, 20.0);
        self.text(at, title, Anchor::Middle, 14.0, r#"font-weight="bold""#);
    }

    /// Bold text starting at its position (a figure's heading).
    pub fn heading(&mut self, at: (f64, f64), s: &str, size: f64) {
        self.text(at, s, Anchor::Start, size, r#"font-weight="bold""#);
    }

    /// Grey secondary text: axis ticks, keys and notes.
    pub fn note(&mut self, at: (f64, f64), s: &str, anchor: Anchor, size: f64) {
        self.text(at, s, anchor, size, r##"fill="#555""##);
    }

    /// Text rotated 90 degrees counter-clockwise about its position (vertical axis titles).
    pub fn vtext(&mut self, (x, y): (f64, f64), s: &str, size: f64) {
        let extra = format!(r#"transform="rotate(-90 {x:.1} {y:.1})""#);
        self.text((x, y), s, Anchor::Middle, size, &extra);
    }

    fn close(&mut self, tag: &str, tip: Option<&str>) {
        match tip {
            Some(t) => {
                let _ = write!(self.body, "><title>{}</title></{tag}>", esc(t));
            }
            None => self.body.push_str("/>"),
        }
    }

    /// The finished element for inline use in HTML (no namespace needed there); `label` is its
    /// accessible name. [`standalone`] makes it a file.
    pub fn finish(self, label: &str) -> String {
        format!(
            r##"<svg viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="{}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12" fill="#222">{}</svg>"##,
            esc(label),
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

/// An inline `<svg>` element as a standalone `.svg` file.
pub fn standalone(svg: &str) -> String {
    let body = svg.strip_prefix("<svg").unwrap_or(svg);
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"{body}\n")
}

/// A linear map from data to pixels.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Start of the data domain.
    pub d0: f64,
    /// End of the data domain.
    pub d1: f64,
    /// Pixel position of `d0`.
    pub r0: f64,
    /// Pixel position of `d1`.
    pub r1: f64,
}

impl Scale {
    /// The linear map from the domain (d0, d1) to the pixel range (r0, r1).
    pub fn new((d0, d1): (f64, f64), (r0, r1): (f64, f64)) -> Scale {
        let d1 = if d1 > d0 { d1 } else { d0 + 1.0 };
        Scale { d0, d1, r0, r1 }
    }
    /// Pixel position of the data value `v` (linear, not clamped).
    pub fn map(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
    /// Round tick values covering the domain, about `n` of them.
    pub fn ticks(&self, n: usize) -> Vec<f64> {
        let span = self.d1 - self.d0;
        let raw = span / n.max(1) as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let first = (self.d0 / step).ceil() as i64;
        let last = (self.d1 / step + 1e-9).floor() as i64;
        (first..=last).map(|i| i as f64 * step).collect()
    }
    /// The domain widened to round tick values.
    pub fn nice(self, n: usize) -> Scale {
        let t = Scale::new((self.d0, self.d1), (0.0, 1.0)).ticks(n);
        let step = if t.len() > 1 {
            t[1] - t[0]
        } else {
            (self.d1 - self.d0).abs().max(1e-12)
        };
        let d0 = (self.d0 / step).floor() * step;
        let d1 = (self.d1 / step).ceil() * step;
        Scale::new((d0, d1), (self.r0, self.r1))
    }
}

/// Tick labels with the fewest decimals that tell the ticks apart exactly (0.25, 0.5, 0.75).
pub fn tick_labels(ticks: &[f64]) -> Vec<String> {
    let big = ticks.iter().fold(0f64, |m, t| m.max(t.abs()));
    if big >= 1e5 || (big > 0.0 && big < 1e-3) {
        return ticks.iter().map(|&t| num(t)).collect();
    }
    let exact = |d: usize| {
        let k = 10f64.powi(d as i32);
        ticks
            .iter()
            .all(|t| ((t * k).round() / k - t).abs() <= 1e-9 * big.max(1e-12))
    };
    let d = (0..6).find(|&d| exact(d)).unwrap_or(6);
    ticks.iter().map(|t| format!("{t:.d$}")).collect()
}

/// A plot area with its two scales.
pub struct Frame {
    /// Horizontal scale; its range is the plot area's left and right edges.
    pub x: Scale,
    /// Vertical scale; its range is the plot area's bottom and top edges.
    pub y: Scale,
}

impl Frame {
    /// Left edge of the plot area, in pixels.
    pub fn left(&self) -> f64 {
        self.x.r0.min(self.x.r1)
    }
    /// Right edge of the plot area, in pixels.
    pub fn right(&self) -> f64 {
        self.x.r0.max(self.x.r1)
    }
    /// Top edge of the plot area, in pixels.
    pub fn top(&self) -> f64 {
        self.y.r0.min(self.y.r1)
    }
    /// Bottom edge of the plot area, in pixels.
    pub fn bottom(&self) -> f64 {
        self.y.r0.max(self.y.r1)
    }

    /// Light horizontal grid lines with y tick labels, a frame, and the y axis title.
    pub fn y_axis(&self, svg: &mut Svg, title: &str) {
        let ticks = self.y.ticks(5);
        for (t, label) in ticks.iter().zip(tick_labels(&ticks)) {
            let y = self.y.map(*t);
            svg.line((self.left(), y), (self.right(), y), "#e3e3e3", 1.0, "");
            svg.text((self.left() - 5.0, y + 4.0), &label, Anchor::End, 11.0, "");
        }
        svg.rect(
            (self.left(), self.top()),
            (self.right() - self.left(), self.bottom() - self.top()),
            "none",
            r##"stroke="#999""##,
            None,
        );
        svg.vtext(
            (self.left() - 44.0, (self.top() + self.bottom()) / 2.0),
            title,
            12.0,
        );
    }

    /// Numeric x ticks and the x axis title.
    pub fn x_axis(&self, svg: &mut Svg, title: &str) {
        let ticks = self.x.ticks(6);
        for (&t, label) in ticks.iter().zip(tick_labels(&ticks)) {
            let x = self.x.map(t);
            svg.line(
                (x, self.bottom()),
                (x, self.bottom() + 4.0),
                "#999",
                1.0,
                "",
            );
            svg.text((x, self.bottom() + 16.0), &label, Anchor::Middle, 11.0, "");
        }
        svg.text(
            ((self.left() + self.right()) / 2.0, self.bottom() + 32.0),
            title,
            Anchor::Middle,
            12.0,
            "",
        );
    }
}

/// Categorical colours (Tableau 10).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// The `i`-th categorical colour, cycling through [`PALETTE`].
pub fn palette(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Viridis colour at t in [0, 1] (interpolated between nine anchors).
pub fn viridis(t: f64) -> String {
    const A: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * (A.len() - 1) as f64;
    let i = (t.floor() as usize).min(A.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (A[i], A[i + 1]);
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// One legend entry: a swatch, or a line sample when `dashed`.
pub struct Key {
    /// Text beside the swatch.
    pub label: String,
    /// Swatch or line colour (any SVG colour).
    pub color: String,
    /// Draw a dashed line sample instead of a swatch.
    pub dashed: bool,
}

impl Key {
    /// An entry showing `label` in `color`.
    pub fn new(label: &str, color: &str, dashed: bool) -> Key {
        Key {
            label: label.to_string(),
            color: color.to_string(),
            dashed,
        }
    }
    fn width(&self) -> f64 {
        // About 7 px per character at 12 px: no font metrics in SVG, so estimate.
        34.0 + 7.0 * self.label.chars().count() as f64
    }
}

const LEGEND_ROW: f64 = 18.0;

/// Height of a legend wrapped at `width` pixels.
pub fn legend_height(keys: &[Key], width: f64) -> f64 {
    let (mut rows, mut cx) = (1, 0.0);
    for k in keys {
        if cx > 0.0 && cx + k.width() > width {
            rows += 1;
            cx = 0.0;
        }
        cx += k.width();
    }
    rows as f64 * LEGEND_ROW
}

/// Draws the legend with its first row's baseline at (x, y), wrapping at `width` pixels.
pub fn legend(svg: &mut Svg, (x, y): (f64, f64), keys: &[Key], width: f64) {
    let (mut cx, mut cy) = (x, y);
    for k in keys {
        if cx > x && cx - x + k.width() > width {
            cx = x;
            cy += LEGEND_ROW;
        }
        if k.dashed {
            let dash = r#"stroke-dasharray="5,3""#;
            svg.line((cx, cy - 3.0), (cx + 18.0, cy - 3.0), &k.color, 2.0, dash);
        } else {
            svg.rect((cx + 3.0, cy - 9.0), (12.0, 12.0), &k.color, "", None);
        }
        svg.text((cx + 22.0, cy + 1.0), &k.label, Anchor::Start, 12.0, "");
        cx += k.width();
    }
}
