//! `neuronpath ablate`: remove / enhance / scale each method's path neurons (SPEC section 9).
use super::plans::AblatePlan;
use crate::experiments::full_report::progress;
use crate::experiments::manipulation::{run_manipulation, ManipulationSettings};
use crate::experiments::manipulation_outputs::{files, record_agreement, table, MARKER, OTHERS};
use crate::format::num;
use crate::io::results::Results;
use crate::output::write_atomic;
use crate::setup::reopen;
use anyhow::Result;

pub fn run(plan: &AblatePlan) -> Result<()> {
    let mut run = Results::open(&plan.results)?;
    super::outputs::over_run(plan.force, &plan.results, &plan.model, &run)
        .check_set(&plan.out, MARKER, &OTHERS)?;
    let m = reopen(&mut run, &plan.model)?;
    super::outputs::show(&run.warnings, &m.notes);
    let settings = ManipulationSettings {
        seed: plan.seed.unwrap_or(run.header.seed),
        ..plan.settings.clone()
    };
    let methods: Vec<_> = run.methods.iter().map(|m| m.name()).collect();
    eprintln!(
        "neuronpath ablate: {} images, methods {}, factors {:?}",
        run.images.len(),
        methods.join(","),
        settings.factors
    );
    let bar = progress(run.images.len(), "images");
    let mut tick = |n: usize| bar.set_position(n as u64);
    let man = run_manipulation(
        &m.loaded.model,
        &run,
        &m.items,
        &m.pre,
        &settings,
        &mut tick,
    )?;
    bar.finish_and_clear();
    if let Some(worst) = record_agreement(&run, &man, settings.all_k) {
        eprintln!(
            "agreement with discover's recorded removed/enhanced probabilities: max |difference| {}",
            num(worst)
        );
    }
    for (name, text) in files(&man, &run.class_names)? {
        write_atomic(&plan.out.join(name), text.as_bytes())?;
    }
    print!("{}", table(&man));
    println!("outputs: {}", plan.out.display());
    Ok(())
}
