//! `neuronpath discover`: neuron paths for every input image, written as JSON Lines (resumable,
//! shardable), optionally also in the authors' layout, then the report.
use super::plans::DiscoverPlan;
use crate::attribution::run::discover_all;
use crate::experiments::full_report::{build_report, ReportOptions};
use anyhow::Result;

pub fn run(plan: &DiscoverPlan) -> Result<()> {
    let summary = discover_all(&plan.job)?;
    if summary.stopped {
        return Ok(());
    }
    summary.print(&plan.job.out);
    let Some(path) = &plan.report else {
        return Ok(());
    };
    if plan.job.shard.is_some() {
        eprintln!("(no report for a shard: merge the shards, then run `neuronpath report`)");
        return Ok(());
    }
    let claims = build_report(
        &plan.job.out,
        &plan.job.model,
        &ReportOptions::default(),
        path,
    )?;
    eprintln!(
        "report: {} ({} claims checked)",
        path.display(),
        claims.len()
    );
    Ok(())
}
