//! `neuronpath prune`: class-wise pruning guided by top-K paths (SPEC section 9), and pruned
//! checkpoints that `predict` loads.
use super::plans::{PrunePlan, SavePlan};
use crate::experiments::full_report::progress;
use crate::experiments::pruning::{
    self, eval_plans, holdout_plans, run_pruning, ClassPlan, Pruning, PruningSettings,
};
use crate::experiments::render::figures;
use crate::experiments::render::svg::standalone;
use crate::io::inputs::gather_named;
use crate::io::results::Results;
use crate::output::{mark_json, write_atomic, Kind};
use crate::setup::{reopen, Reopened};
use anyhow::{bail, Context, Result};

pub fn run(plan: &PrunePlan) -> Result<()> {
    let run = Results::open(&plan.results)?;
    let mut guard = super::outputs::over_run(plan.force, &plan.results, &plan.model, &run);
    guard.inputs(&plan.eval).inputs(&plan.eval_labels);
    guard.check_set(
        &plan.out,
        "prune.json",
        &["prune.csv", "prune_ratio.svg", "prune_accuracy.svg"],
    )?;
    if let Some(s) = &plan.save {
        guard.check(&s.path, Kind::Model)?;
    }
    let m = reopen(&run, &plan.model)?;
    super::outputs::show(&run.warnings, &m.notes);
    let cfg = &m.loaded.model.cfg;
    let settings = PruningSettings {
        grid: plan.settings.grid.clamped(run.top_k, cfg.layers),
        ..plan.settings.clone()
    };
    if let Some(sp) = &plan.save {
        sp.check(&run)?;
    }
    let plans = class_plans(plan, &run, &m)?;
    if plans.is_empty() {
        bail!("no class has both path-building and held-out images (need at least 2 images per class)");
    }
    if run.rows == crate::model::Rows::Patches {
        eprintln!(
            "note: pruning zeroes CLS neurons; this run's neurons are patch rows (MAE variant)"
        );
    }
    if run.top_k == 1 {
        eprintln!("note: the run kept one neuron per layer (K = 1); run discover with --top-k K for larger kept sets");
    }
    let g = &settings.grid;
    eprintln!(
        "neuronpath prune: {} classes, K {:?}, p {:?}, d {:?}",
        plans.len(),
        g.ks,
        g.ps,
        g.ds
    );
    let bar = progress(plans.len(), "classes");
    let result = run_pruning(&m.loaded.model, &run, &plans, &m.pre, &settings, &mut |n| {
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    write_outputs(&plan.out, &result)?;
    print_table(&result);
    if let Some(save_plan) = &plan.save {
        save(save_plan, &run, &m, &plans, &settings)?;
    }
    println!("outputs: {}", plan.out.display());
    Ok(())
}

/// Per class, the images that build the kept set and those it is evaluated on.
fn class_plans(plan: &PrunePlan, run: &Results, m: &Reopened) -> Result<Vec<ClassPlan>> {
    if plan.eval.is_empty() {
        return Ok(holdout_plans(run, &m.items, plan.holdout)?);
    }
    let names = Some(run.class_names.as_slice());
    let eval = gather_named(&plan.eval, plan.eval_labels.as_deref(), names)?;
    Ok(eval_plans(run, &eval.items)?)
}

fn write_outputs(out: &std::path::Path, p: &Pruning) -> Result<()> {
    let write = |name: &str, text: String| -> Result<()> {
        Ok(write_atomic(&out.join(name), text.as_bytes())?)
    };
    write("prune.json", mark_json("prune", &serde_json::to_value(p)?))?;
    write("prune.csv", pruning::csv(p))?;
    let (ratio, acc) = figures::pruning(p);
    write("prune_ratio.svg", standalone(&ratio))?;
    write("prune_accuracy.svg", standalone(&acc))
}

fn print_table(p: &Pruning) {
    println!(
        "{:>4} {:>6} {:>4} {:>7} {:>10} {:>10} {:>18} {:>16}",
        "K", "p", "d", "images", "F unpruned", "F pruned", "top-1 acc", "control F / acc"
    );
    for q in &p.overall {
        let ctl = q
            .control
            .map_or("-".into(), |c| format!("{:.4} / {:.1}%", c.0, 100.0 * c.1));
        println!(
            "{:>4} {:>5.0}% {:>4} {:>7} {:>10.4} {:>10.4} {:>7.1}% -> {:>5.1}% {:>16}",
            q.k,
            100.0 * q.p,
            q.d,
            q.images,
            q.prob_unpruned,
            q.prob_pruned,
            100.0 * q.acc_unpruned,
            100.0 * q.acc_pruned,
            ctl
        );
    }
}

fn save(
    sp: &SavePlan,
    run: &Results,
    m: &Reopened,
    plans: &[ClassPlan],
    s: &PruningSettings,
) -> Result<()> {
    let (g, path) = (&s.grid, sp.path.as_path());
    let class = sp.class.unwrap_or(plans[0].class);
    let plan = plans
        .iter()
        .find(|p| p.class == class)
        .with_context(|| {
            let have: Vec<String> = plans.iter().map(|p| p.class.to_string()).collect();
            format!(
                "--save-class {class}: no pruning plan for it (classes with build and held-out images: {})",
                have.join(", ")
            )
        })?;
    let max = |v: &[usize]| v.iter().copied().max().unwrap_or(1);
    let k = sp.k.unwrap_or(max(&g.ks)).min(run.top_k.max(1));
    let p = sp.p.unwrap_or(g.ps.iter().copied().fold(0.0, f64::max));
    let d = sp.d.unwrap_or(max(&g.ds));
    let mut flags = pruning::save_pruned(
        &m.loaded.model,
        run,
        &plan.build,
        class,
        (k, p, d),
        s.seed,
        path,
    )?;
    if m.pre.norm != crate::io::preprocess::Normalization::ImageNet {
        flags.push(format!("--normalize {}", m.pre.norm));
    }
    println!(
        "pruned model for class {} ({}), K={k} p={:.0}% d={d}: {}\nload it with: neuronpath predict --model {} {}",
        class,
        run.class_names[class],
        100.0 * p,
        path.display(),
        path.display(),
        flags.join(" ")
    );
    Ok(())
}
