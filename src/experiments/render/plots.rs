//! Generic charts: box plots, grouped bars with intervals, heatmaps and line panels.
//! Each returns an inline `<svg>` element (see [`svg::standalone`] for files).
use super::svg::{self, viridis, Anchor, Frame, Scale, Svg};
use crate::experiments::stats::{spread, Spread};
use crate::format::num;

/// Values of one box.
pub struct BoxGroup {
    /// Name under the box.
    pub label: String,
    /// Fill colour (any SVG colour).
    pub color: String,
    /// The sample; non-finite values are dropped.
    pub values: Vec<f64>,
}

/// Box plot (quartiles, whiskers to 1.5 IQR, outliers as dots, mean as a diamond).
pub fn box_plot(title: &str, y_title: &str, groups: &[BoxGroup]) -> String {
    let (w, h) = ((160.0 + 110.0 * groups.len() as f64).max(420.0), 340.0);
    let mut s = Svg::new(w, h);
    let all: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.values.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).min(0.0);
    let hi = all
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(lo + 1e-12);
    let f = Frame {
        x: Scale::new((0.0, groups.len() as f64), (70.0, w - 20.0)),
        y: Scale::new((lo, hi), (h - 50.0, 34.0)).nice(5),
    };
    s.title(title);
    f.y_axis(&mut s, y_title);
    if lo < 0.0 {
        s.line(
            (f.left(), f.y.map(0.0)),
            (f.right(), f.y.map(0.0)),
            "#666",
            1.0,
            "",
        );
    }
    for (i, g) in groups.iter().enumerate() {
        let st = spread(&g.values, 0, 0);
        let cx = f.x.map(i as f64 + 0.5);
        s.text((cx, f.bottom() + 18.0), &g.label, Anchor::Middle, 12.0, "");
        s.text(
            (cx, f.bottom() + 33.0),
            &format!("n={}", st.n),
            Anchor::Middle,
            10.0,
            r##"fill="#777""##,
        );
        if st.n == 0 {
            continue;
        }
        let iqr = st.q3 - st.q1;
        let inside: Vec<f64> = g
            .values
            .iter()
            .copied()
            .filter(|v| *v >= st.q1 - 1.5 * iqr && *v <= st.q3 + 1.5 * iqr)
            .collect();
        let wlo = inside.iter().copied().fold(st.q1, f64::min);
        let whi = inside.iter().copied().fold(st.q3, f64::max);
        let bw = 36.0;
        s.line((cx, f.y.map(wlo)), (cx, f.y.map(whi)), &g.color, 1.5, "");
        for v in [wlo, whi] {
            s.line(
                (cx - 10.0, f.y.map(v)),
                (cx + 10.0, f.y.map(v)),
                &g.color,
                1.5,
                "",
            );
        }
        let tip = format!(
            "{}: n={} mean={} median={} IQR [{}, {}]",
            g.label,
            st.n,
            num(st.mean),
            num(st.median),
            num(st.q1),
            num(st.q3)
        );
        let (y3, y1) = (f.y.map(st.q3), f.y.map(st.q1));
        s.rect(
            (cx - bw / 2.0, y3),
            (bw, y1 - y3),
            &g.color,
            r#"fill-opacity="0.35" stroke-width="1.5""#,
            Some(&tip),
        );
        s.rect(
            (cx - bw / 2.0, y3),
            (bw, y1 - y3),
            "none",
            &format!(r#"stroke="{}" stroke-width="1.5""#, g.color),
            None,
        );
        s.line(
            (cx - bw / 2.0, f.y.map(st.median)),
            (cx + bw / 2.0, f.y.map(st.median)),
            &g.color,
            2.5,
            "",
        );
        for v in g.values.iter().filter(|v| **v < wlo || **v > whi) {
            s.circle(
                (cx, f.y.map(*v)),
                2.5,
                "none",
                &format!(r#"stroke="{}""#, g.color),
                Some(&num(*v)),
            );
        }
        let (my, d) = (f.y.map(st.mean), 5.0);
        s.polygon(
            &[(cx, my - d), (cx + d, my), (cx, my + d), (cx - d, my)],
            "#fff",
            r##"stroke="#222""##,
            Some(&format!("mean {}", num(st.mean))),
        );
    }
    s.finish(title)
}

/// One series of a grouped bar chart: a value with its interval per group.
pub struct BarSeries {
    /// Name in the legend.
    pub label: String,
    /// Bar colour (any SVG colour).
    pub color: String,
    /// One mean with its interval per group; `None` leaves the slot empty.
    pub values: Vec<Option<Spread>>,
}

/// Grouped bars of means with their bootstrap intervals; `reference` draws a dashed line.
pub fn grouped_bars(
    title: &str,
    y_title: &str,
    groups: &[String],
    series: &[BarSeries],
    reference: Option<f64>,
) -> String {
    let per = series.len().max(1) as f64;
    let (w, h) = (
        (150.0 + groups.len() as f64 * (30.0 + 30.0 * per)).max(460.0),
        340.0,
    );
    let mut s = Svg::new(w, h);
    let vals: Vec<f64> = series
        .iter()
        .flat_map(|se| {
            se.values
                .iter()
                .flatten()
                .flat_map(|v| [v.mean, v.ci_low, v.ci_high])
        })
        .filter(|v| v.is_finite())
        .chain(reference)
        .collect();
    let lo = vals.iter().copied().fold(0.0, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max).max(lo + 1e-9);
    let f = Frame {
        x: Scale::new((0.0, groups.len() as f64), (70.0, w - 20.0)),
        y: Scale::new((lo, hi * 1.05), (h - 62.0, 34.0)).nice(5),
    };
    s.title(title);
    f.y_axis(&mut s, y_title);
    let zero = f.y.map(0.0);
    let slot = (f.x.map(1.0) - f.x.map(0.0)) * 0.8 / per;
    for (gi, g) in groups.iter().enumerate() {
        let x0 = f.x.map(gi as f64 + 0.1);
        s.text(
            (f.x.map(gi as f64 + 0.5), f.bottom() + 18.0),
            g,
            Anchor::Middle,
            12.0,
            "",
        );
        for (si, se) in series.iter().enumerate() {
            let Some(v) = se
                .values
                .get(gi)
                .copied()
                .flatten()
                .filter(|v| v.mean.is_finite())
            else {
                continue;
            };
            let x = x0 + si as f64 * slot;
            let y = f.y.map(v.mean);
            let tip = format!(
                "{} / {}: mean {} (95% CI {} to {}), n={}",
                g,
                se.label,
                num(v.mean),
                num(v.ci_low),
                num(v.ci_high),
                v.n
            );
            s.rect(
                (x + 2.0, y.min(zero)),
                (slot - 4.0, (zero - y).abs()),
                &se.color,
                "",
                Some(&tip),
            );
            let cx = x + slot / 2.0;
            if v.ci_high > v.ci_low {
                s.line(
                    (cx, f.y.map(v.ci_low)),
                    (cx, f.y.map(v.ci_high)),
                    "#222",
                    1.2,
                    "",
                );
                for c in [v.ci_low, v.ci_high] {
                    s.line(
                        (cx - 4.0, f.y.map(c)),
                        (cx + 4.0, f.y.map(c)),
                        "#222",
                        1.2,
                        "",
                    );
                }
            }
        }
    }
    s.line((f.left(), zero), (f.right(), zero), "#666", 1.0, "");
    if let Some(r) = reference {
        s.line(
            (f.left(), f.y.map(r)),
            (f.right(), f.y.map(r)),
            "#222",
            1.0,
            r#"stroke-dasharray="5,4""#,
        );
    }
    let keys: Vec<svg::Key> = series
        .iter()
        .map(|se| svg::Key::new(&se.label, &se.color, false))
        .collect();
    svg::legend(&mut s, (f.left(), h - 14.0), &keys, w - f.left());
    s.finish(title)
}

/// A square heatmap of `matrix` (values in [lo, hi]) with row/column labels and a colour bar.
pub fn heatmap(
    title: &str,
    labels: &[String],
    matrix: &[Vec<f64>],
    (lo, hi): (f64, f64),
) -> String {
    let n = labels.len().max(1);
    let cell = (520.0 / n as f64).clamp(4.0, 44.0);
    let label_w = if n <= 60 {
        8.0 + 6.5 * labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f64
    } else {
        10.0
    };
    let (x0, y0) = (label_w + 10.0, 40.0 + if n <= 60 { label_w } else { 10.0 });
    let (w, h) = (x0 + cell * n as f64 + 90.0, y0 + cell * n as f64 + 20.0);
    let mut s = Svg::new(w, h);
    s.title(title);
    let t = |v: f64| (v - lo) / (hi - lo).max(1e-12);
    for (i, row) in matrix.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (x, y) = (x0 + j as f64 * cell, y0 + i as f64 * cell);
            let tip = format!("{} vs {}: {}", labels[i], labels[j], num(v));
            s.rect(
                (x, y),
                (cell, cell),
                &viridis(t(v)),
                r##"stroke="#fff" stroke-width="0.5""##,
                Some(&tip),
            );
            if cell >= 30.0 {
                let ink = if t(v) > 0.6 { "#222" } else { "#fff" };
                s.text(
                    (x + cell / 2.0, y + cell / 2.0 + 4.0),
                    &num(v),
                    Anchor::Middle,
                    10.0,
                    &format!(r#"fill="{ink}""#),
                );
            }
        }
    }
    if n <= 60 {
        let fs = (cell * 0.7).min(12.0);
        for (i, l) in labels.iter().enumerate() {
            let c = i as f64 * cell + cell / 2.0;
            s.text((x0 - 6.0, y0 + c + fs / 3.0), l, Anchor::End, fs, "");
            let (x, y) = (x0 + c + fs / 3.0, y0 - 6.0);
            s.text(
                (x, y),
                l,
                Anchor::Start,
                fs,
                &format!(r#"transform="rotate(-90 {x:.1} {y:.1})""#),
            );
        }
    }
    let (bx, bh) = (x0 + cell * n as f64 + 20.0, cell * n as f64);
    for k in 0..50 {
        let v = 1.0 - k as f64 / 50.0;
        s.rect(
            (bx, y0 + k as f64 * bh / 50.0),
            (16.0, bh / 50.0 + 0.5),
            &viridis(v),
            "",
            None,
        );
    }
    s.text((bx + 20.0, y0 + 10.0), &num(hi), Anchor::Start, 11.0, "");
    s.text((bx + 20.0, y0 + bh), &num(lo), Anchor::Start, 11.0, "");
    s.finish(title)
}

/// One line of a line panel.
pub struct Line {
    /// Name in the legend.
    pub label: String,
    /// Stroke colour (any SVG colour).
    pub color: String,
    /// Whether the line is dashed.
    pub dashed: bool,
    /// (x, y) points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// Side-by-side panels of lines sharing the y range, with a legend under them.
pub fn line_panels(
    title: &str,
    x_title: &str,
    y_title: &str,
    panels: &[(String, Vec<Line>)],
    y_range: (f64, f64),
) -> String {
    let (pw, ph) = (300.0, 270.0);
    let width =
        (panels.len().max(1) as f64 * pw + 20.0).max(60.0 + 8.0 * title.chars().count() as f64);
    let mut keys: Vec<svg::Key> = Vec::new();
    for l in panels.iter().flat_map(|p| &p.1) {
        if !keys.iter().any(|k| k.label == l.label) {
            keys.push(svg::Key::new(&l.label, &l.color, l.dashed));
        }
    }
    let mut s = Svg::new(width, ph + 64.0 + svg::legend_height(&keys, width - 80.0));
    s.title(title);
    let xs: Vec<f64> = panels
        .iter()
        .flat_map(|p| p.1.iter().flat_map(|l| l.points.iter().map(|q| q.0)))
        .collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (x0, x1) = if x0.is_finite() { (x0, x1) } else { (0.0, 1.0) };
    for (pi, (ptitle, lines)) in panels.iter().enumerate() {
        let ox = pi as f64 * pw;
        let f = Frame {
            x: Scale::new((x0, x1), (ox + 70.0, ox + pw - 12.0)),
            y: Scale::new(y_range, (ph, 56.0)).nice(5),
        };
        s.text(
            ((f.left() + f.right()) / 2.0, 48.0),
            ptitle,
            Anchor::Middle,
            12.0,
            r#"font-weight="bold""#,
        );
        f.y_axis(&mut s, y_title);
        f.x_axis(&mut s, x_title);
        for l in lines {
            let pts: Vec<(f64, f64)> = l
                .points
                .iter()
                .filter(|p| p.1.is_finite())
                .map(|&(x, y)| (f.x.map(x), f.y.map(y)))
                .collect();
            let dash = if l.dashed {
                r#"stroke-dasharray="5,4""#
            } else {
                ""
            };
            s.polyline(&pts, &l.color, 2.0, dash, Some(&l.label));
            for (&(x, y), &(dx, dy)) in l.points.iter().filter(|p| p.1.is_finite()).zip(&pts) {
                s.circle(
                    (dx, dy),
                    3.0,
                    &l.color,
                    "",
                    Some(&format!("{}: x={} y={}", l.label, num(x), num(y))),
                );
            }
        }
    }
    svg::legend(&mut s, (70.0, ph + 62.0), &keys, width - 80.0);
    s.finish(title)
}
