//! `neuronpath report`: one self-contained HTML file with every experiment over a results file.
//! With the run's model available (the default when the header names a model that is here) the
//! manipulation and pruning are computed; otherwise the report uses what the records hold.
use super::plans::ReportPlan;
use crate::experiments::full_report::build_report;
use anyhow::Result;

pub fn run(plan: &ReportPlan) -> Result<()> {
    let claims = build_report(&plan.results, &plan.model, &plan.options, &plan.out)?;
    for c in &claims {
        println!("{:<14} {}", c.verdict.words(), c.claim);
    }
    println!("report: {}", plan.out.display());
    Ok(())
}
