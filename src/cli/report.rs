//! `neuronpath report`: one self-contained HTML file with every experiment over a results file.
//! With the run's model available (the default when the header names a model that is here) the
//! manipulation and pruning are computed; otherwise the report uses what the records hold.
use super::common::ModelArgs;
use super::plans::ReportPlan;
use crate::experiments::full_report::build_report;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Results of `neuronpath discover`.
    #[arg(long, default_value = super::common::DEFAULT_RESULTS)]
    pub results: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The report (.html; a .json with the claims is written beside it).
    #[arg(long, short, default_value = "neuronpath-out/report.html")]
    pub out: PathBuf,
    /// Use this `ablate` output (manipulation.json) instead of computing the manipulation.
    #[arg(long)]
    pub ablate: Option<PathBuf>,
    /// Use this `prune` output (prune.json) instead of computing the pruning.
    #[arg(long)]
    pub prune: Option<PathBuf>,
    /// Do not load the model: report only what the records hold.
    #[arg(long)]
    pub no_model: bool,
    /// Do not compute the pruning grid.
    #[arg(long)]
    pub no_prune: bool,
    /// Groups of classes that look alike, e.g. "0,2,4,6;5,7,9" [default: known groups for
    /// Fashion-MNIST names, else the model's confusions].
    #[arg(long)]
    pub look_alike: Option<String>,
    /// At most this many per-image sections [default: 500].
    #[arg(long)]
    pub max_images: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    execute(&super::plans::report(args)?)
}

fn execute(plan: &ReportPlan) -> Result<()> {
    let claims = build_report(&plan.results, &plan.model, &plan.options, &plan.out)?;
    for c in &claims {
        println!("{:<14} {}", c.verdict.words(), c.claim);
    }
    println!("report: {}", plan.out.display());
    Ok(())
}
