//! What `neuronpath ablate` shows and writes of a [`Manipulation`]: the five output files, the
//! per-method table, and its agreement with what `discover` recorded.
use crate::experiments::error::Result;
use crate::experiments::manipulation::{images_csv, summary_csv, Manipulation};
use crate::experiments::render::figures;
use crate::experiments::render::svg::standalone;
use crate::format::{num, pct, with_ci};
use crate::io::results::Results;
use crate::output::mark_json;

/// The file that marks an ablate output folder as ours.
pub const MARKER: &str = "manipulation.json";
/// The other files an ablate output folder holds.
pub const OTHERS: [&str; 4] = [
    "manipulation_images.csv",
    "manipulation_summary.csv",
    "deviation.svg",
    "accuracy.svg",
];

/// The five output files by name: [`MARKER`] (the whole result as JSON), the per-image and
/// summary CSV tables, and the deviation and accuracy figures.
pub fn files(man: &Manipulation, class_names: &[String]) -> Result<Vec<(&'static str, String)>> {
    let rows: Vec<_> = man
        .overall
        .iter()
        .map(|d| (d.method, d.factor, d.ratio))
        .collect();
    let [images, summary, deviation, accuracy] = OTHERS;
    Ok(vec![
        (
            MARKER,
            mark_json("manipulation", &serde_json::to_value(man)?),
        ),
        (images, images_csv(man, class_names)),
        (summary, summary_csv(man, class_names)),
        (deviation, standalone(&figures::deviation(&rows))),
        (accuracy, standalone(&figures::accuracy(man))),
    ])
}

/// Per method and factor: F's ratio with its 95% interval, and top-1 accuracy before and after.
pub fn table(man: &Manipulation) -> String {
    let mut out = format!(
        "{:<12} {:>8} {:>28} {:>24}\n",
        "method", "factor", "F edit / F clean [95% CI]", "top-1 acc clean -> edit"
    );
    for d in &man.overall {
        out += &format!(
            "{:<12} {:>8} {:>28} {:>24}\n",
            d.method,
            num(d.factor),
            with_ci(d.ratio.mean, d.ratio.ci_low, d.ratio.ci_high),
            format!("{} -> {}", pct(d.acc_clean), pct(d.acc_edit))
        );
    }
    out
}

/// The largest |difference| between the probabilities at factors 0 and 2 and the removed and
/// enhanced probabilities `discover` recorded for the same neurons; `None` when the neurons
/// differ (a top-K run edited without `all_k`). A check: both come from the same forward pass.
pub fn record_agreement(run: &Results, man: &Manipulation, all_k: bool) -> Option<f64> {
    if run.top_k > 1 && !all_k {
        return None;
    }
    let mut worst: f64 = 0.0;
    for (o, r) in man.images.iter().zip(&run.images) {
        for (method, outs) in &o.methods {
            let Some(rec) = r.result.methods.get(method) else {
                continue;
            };
            for e in outs {
                let want = if e.factor == 0.0 {
                    rec.prob_removed
                } else if e.factor == 2.0 {
                    rec.prob_enhanced
                } else {
                    continue;
                };
                worst = worst.max((e.prob - want).abs());
            }
        }
    }
    Some(worst)
}
