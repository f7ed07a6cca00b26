//! `neuronpath report`: one self-contained HTML file with every experiment over a results file.
//! With the run's model available (the default when the header names a model that is here) the
//! manipulation and pruning are computed; otherwise the report uses what the records hold.
use super::plans::ReportPlan;
use crate::experiments::full_report::build_report;
use crate::experiments::render::report::{json_path, maps_path};
use crate::output::{Kind, Outputs};
use anyhow::Result;

pub fn run(plan: &ReportPlan) -> Result<()> {
    let mut guard = Outputs::new(plan.force);
    guard
        .input(&plan.results)
        .inputs(&plan.model.path)
        .inputs(&plan.options.ablate)
        .inputs(&plan.options.prune);
    guard.check(&plan.out, Kind::Report)?;
    let json = json_path(&plan.out);
    guard.check(&json, Kind::Json)?;
    guard.check(&maps_path(&plan.out), Kind::Beside(json))?;
    let claims = build_report(
        &plan.results,
        &plan.model,
        &plan.options,
        &plan.out,
        &mut |n| eprintln!("note: {n}"),
    )?;
    for c in &claims {
        println!("{:<14} {}", c.verdict.words(), c.claim);
    }
    println!("report: {}", plan.out.display());
    Ok(())
}
