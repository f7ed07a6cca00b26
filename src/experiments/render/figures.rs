//! The experiments' figures: JAS per method, manipulation deviations, class similarity and
//! pruning curves (path diagrams and rank charts: [`super::detail`]).
use super::plots::{self, BarSeries, BoxGroup, Line};
use super::svg::palette;
use crate::experiments::atlas::Atlas;
use crate::experiments::manipulation::Manipulation;
use crate::experiments::pruning::{self, Pruning};
use crate::experiments::stats::{summarize, Spread};
use crate::format::num;
use crate::io::results::{Method, Results};

/// "removed (x0)", "enhanced (x2)", or "x0.5".
pub fn factor_label(f: f64) -> String {
    if f == 0.0 {
        "removed (×0)".into()
    } else if f == 2.0 {
        "enhanced (×2)".into()
    } else {
        format!("×{}", num(f))
    }
}

fn factor_color(i: usize, f: f64) -> String {
    if f == 0.0 {
        "#4e79a7".into()
    } else if f == 2.0 {
        "#f28e2b".into()
    } else {
        palette(i + 3).into()
    }
}

/// The methods' names, as axis labels.
fn names(methods: &[Method]) -> Vec<String> {
    methods.iter().map(|m| m.name().to_string()).collect()
}

/// Box plot of the JAS (reference form) of each method's paths.
pub fn jas(run: &Results) -> String {
    let groups: Vec<BoxGroup> = run
        .methods
        .iter()
        .map(|m| BoxGroup {
            label: m.name().into(),
            color: m.colour().into(),
            values: run
                .images
                .iter()
                .filter_map(|r| r.result.methods.get(m).map(|x| x.jas.reference))
                .collect(),
        })
        .collect();
    plots::box_plot(
        "Joint Attribution Score of each method's path",
        "JAS (reference form)",
        &groups,
    )
}

/// Probability deviation per method from the records' own removed/enhanced probabilities, with
/// the shared bootstrap.
pub fn record_deviations(run: &Results) -> Vec<(Method, f64, Spread)> {
    let mut out = Vec::new();
    for m in &run.methods {
        for (f, pick) in [(0.0, true), (2.0, false)] {
            let ratios: Vec<f64> = run
                .images
                .iter()
                .filter_map(|r| {
                    let x = r.result.methods.get(m)?;
                    Some(
                        if pick {
                            x.prob_removed
                        } else {
                            x.prob_enhanced
                        } / r.result.prob_target,
                    )
                })
                .collect();
            out.push((*m, f, summarize(&ratios)));
        }
    }
    out
}

/// Mean F_edit / F_clean per method (groups) and factor (bars), with bootstrap intervals.
pub fn deviation(rows: &[(Method, f64, Spread)]) -> String {
    let mut methods: Vec<Method> = Vec::new();
    let mut factors: Vec<f64> = Vec::new();
    for (m, f, _) in rows {
        if !methods.contains(m) {
            methods.push(*m);
        }
        if !factors.contains(f) {
            factors.push(*f);
        }
    }
    let series: Vec<BarSeries> = factors
        .iter()
        .enumerate()
        .map(|(i, &f)| BarSeries {
            label: factor_label(f),
            color: factor_color(i, f),
            values: methods
                .iter()
                .map(|m| rows.iter().find(|r| &r.0 == m && r.1 == f).map(|r| r.2))
                .collect(),
        })
        .collect();
    plots::grouped_bars(
        "Probability deviation: F(edited) / F(clean)",
        "mean ratio (95% CI)",
        &names(&methods),
        &series,
        Some(1.0),
    )
}

/// Top-1 accuracy deviation (percentage points) per method and factor.
pub fn accuracy(m: &Manipulation) -> String {
    let series: Vec<BarSeries> = m
        .settings
        .factors
        .iter()
        .enumerate()
        .map(|(i, &f)| BarSeries {
            label: factor_label(f),
            color: factor_color(i, f),
            values: m
                .methods
                .iter()
                .map(|&me| {
                    m.overall_for(me, f).map(|d| {
                        let v = 100.0 * d.acc_deviation;
                        Spread {
                            n: d.ratio.n,
                            mean: v,
                            ci_low: v,
                            ci_high: v,
                            ..Default::default()
                        }
                    })
                })
                .collect(),
        })
        .collect();
    plots::grouped_bars(
        "Accuracy deviation: top-1 after edit − clean",
        "percentage points",
        &names(&m.methods),
        &series,
        None,
    )
}

/// Class-to-class cosine similarity of the atlas.
pub fn similarity(a: &Atlas, max_classes: usize) -> String {
    // Thousands of classes would make a million-cell SVG: show the first ones, the CSV has all.
    let n = a.classes.len().min(max_classes.max(1));
    let labels: Vec<String> = a.classes[..n].iter().map(|e| e.name.clone()).collect();
    let m: Vec<Vec<f64>> = a.similarity[..n].iter().map(|r| r[..n].to_vec()).collect();
    let lo = m.iter().flatten().copied().fold(1.0, f64::min).min(0.0);
    let shown = if n < a.classes.len() {
        format!(" (first {n} of {} classes)", a.classes.len())
    } else {
        String::new()
    };
    let title = format!(
        "Class similarity: cosine of F[c,l,n], {} method{shown}",
        a.method
    );
    plots::heatmap(&title, &labels, &m, (lo, 1.0))
}

/// Pruning: F ratio and top-1 accuracy against p, one panel per K, one line per d.
pub fn pruning(p: &Pruning) -> (String, String) {
    let g = &p.settings.grid;
    let mut ratio_panels = Vec::new();
    let mut acc_panels = Vec::new();
    for &k in &g.ks {
        let (mut rl, mut al) = (Vec::new(), Vec::new());
        for (di, &d) in g.ds.iter().enumerate() {
            let pts: Vec<_> = p.overall.iter().filter(|q| q.k == k && q.d == d).collect();
            let xy = |f: &dyn Fn(&pruning::Point) -> f64| {
                pts.iter().map(|q| (100.0 * q.p, f(q))).collect()
            };
            let color = palette(di).to_string();
            rl.push(Line {
                label: format!("first {d} layers"),
                color: color.clone(),
                dashed: false,
                points: xy(&|q| q.ratio.mean),
            });
            al.push(Line {
                label: format!("first {d} layers"),
                color: color.clone(),
                dashed: false,
                points: xy(&|q| 100.0 * q.acc_pruned),
            });
            if p.settings.control {
                let ctl = |f: &dyn Fn(&pruning::Point) -> f64| {
                    pts.iter().map(|q| (100.0 * q.p, f(q))).collect()
                };
                let label = format!("first {d}, random kept set");
                rl.push(Line {
                    label: label.clone(),
                    color: color.clone(),
                    dashed: true,
                    points: ctl(&|q| q.control.map_or(f64::NAN, |c| c.0) / q.prob_unpruned),
                });
                al.push(Line {
                    label,
                    color,
                    dashed: true,
                    points: ctl(&|q| q.control.map_or(f64::NAN, |c| 100.0 * c.1)),
                });
            }
        }
        if let Some(q) = p.overall.iter().find(|q| q.k == k) {
            let xs: Vec<f64> = g.ps.iter().map(|x| 100.0 * x).collect();
            let flat = |v: f64| xs.iter().map(|&x| (x, v)).collect();
            al.push(Line {
                label: "unpruned".into(),
                color: "#222".into(),
                dashed: true,
                points: flat(100.0 * q.acc_unpruned),
            });
        }
        ratio_panels.push((format!("K = {k}"), rl));
        acc_panels.push((format!("K = {k}"), al));
    }
    let hi = p
        .overall
        .iter()
        .map(|q| q.ratio.mean)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    (
        plots::line_panels(
            "Pruning: F(pruned) / F(unpruned) on held-out images",
            "pruned fraction p (%)",
            "mean ratio",
            &ratio_panels,
            (0.0, hi),
        ),
        plots::line_panels(
            "Pruning: top-1 accuracy on held-out images",
            "pruned fraction p (%)",
            "top-1 accuracy (%)",
            &acc_panels,
            (0.0, 100.0),
        ),
    )
}
