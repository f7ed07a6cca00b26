//! `neuronpath ablate`: remove / enhance / scale each method's path neurons (SPEC section 9).
use super::plans::AblatePlan;
use crate::experiments::full_report::progress;
use crate::experiments::manipulation::{self, run_manipulation, ManipulationSettings};
use crate::experiments::render::figures;
use crate::experiments::render::svg::standalone;
use crate::io::results::Results;
use crate::output::{mark_json, write_atomic};
use crate::setup::reopen;
use anyhow::Result;

pub fn run(plan: &AblatePlan) -> Result<()> {
    let run = Results::open(&plan.results)?;
    super::outputs::over_run(plan.force, &plan.results, &plan.model, &run).check_set(
        &plan.out,
        "manipulation.json",
        &[
            "manipulation_images.csv",
            "manipulation_summary.csv",
            "deviation.svg",
            "accuracy.svg",
        ],
    )?;
    let m = reopen(&run, &plan.model)?;
    super::outputs::show(&run.warnings, &m.notes);
    let settings = ManipulationSettings {
        seed: plan.seed.unwrap_or(run.header.seed),
        ..plan.settings.clone()
    };
    eprintln!(
        "neuronpath ablate: {} images, methods {}, factors {:?}",
        run.images.len(),
        run.methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(","),
        settings.factors
    );
    let bar = progress(run.images.len(), "images");
    let man = run_manipulation(
        &m.loaded.model,
        &run,
        &m.items,
        &m.pre,
        &settings,
        &mut |n| bar.set_position(n as u64),
    )?;
    bar.finish_and_clear();
    check_against_records(&run, &man, settings.all_k);
    let write = |name: &str, text: String| -> Result<()> {
        Ok(write_atomic(&plan.out.join(name), text.as_bytes())?)
    };
    write(
        "manipulation.json",
        mark_json("manipulation", &serde_json::to_value(&man)?),
    )?;
    write(
        "manipulation_images.csv",
        manipulation::images_csv(&man, &run.class_names),
    )?;
    write("manipulation_summary.csv", manipulation::summary_csv(&man))?;
    let rows: Vec<_> = man
        .overall
        .iter()
        .map(|d| (d.method, d.factor, d.ratio))
        .collect();
    write("deviation.svg", standalone(&figures::deviation(&rows)))?;
    write("accuracy.svg", standalone(&figures::accuracy(&man)))?;
    println!(
        "{:<12} {:>8} {:>28} {:>22}",
        "method", "factor", "F edit / F clean [95% CI]", "top-1 acc clean -> edit"
    );
    for d in &man.overall {
        println!(
            "{:<12} {:>8} {:>10.4} [{:.4}, {:.4}] {:>11.1}% -> {:.1}%",
            d.method,
            d.factor,
            d.ratio.mean,
            d.ratio.ci_low,
            d.ratio.ci_high,
            100.0 * d.acc_clean,
            100.0 * d.acc_edit
        );
    }
    println!("outputs: {}", plan.out.display());
    Ok(())
}

/// Factor 0 and 2 of the same neurons must reproduce what discover recorded.
fn check_against_records(run: &Results, man: &manipulation::Manipulation, all_k: bool) {
    if run.top_k > 1 && !all_k {
        return;
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
    eprintln!("agreement with discover's recorded removed/enhanced probabilities: max |difference| {worst:.2e}");
}
