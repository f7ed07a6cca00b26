//! The `neuronpath` command line, in two stages: clap [`args`] resolved into validated
//! [`plans`], then one short command per plan. Imports point one way (args <- plans <-
//! commands) and no command calls another.
pub mod args;
pub mod plans;

pub mod ablate;
pub mod atlas;
pub mod bench;
pub mod discover;
pub mod eval;
pub mod explain;
#[cfg(test)]
mod help_texts;
pub mod inspect;
pub mod merge;
pub mod outputs;
pub mod predict;
pub mod prune;
pub mod report;
pub mod train;

pub use args::{Cli, Command};
use plans::*;

/// Resolves the command's arguments into its plan and runs it.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => inspect::run(&InspectPlan::resolve(a)?),
        Command::Predict(a) => predict::run(&PredictPlan::resolve(a)?),
        Command::Discover(a) => discover::run(&DiscoverPlan::resolve(a)?),
        Command::Merge(a) => merge::run(&MergePlan::resolve(a)?),
        Command::Explain(a) => explain::run(&ExplainPlan::resolve(a)?),
        Command::Ablate(a) => ablate::run(&AblatePlan::resolve(a)?),
        Command::Atlas(a) => atlas::run(&AtlasPlan::resolve(a)?),
        Command::Prune(a) => prune::run(&PrunePlan::resolve(a)?),
        Command::Report(a) => report::run(&ReportPlan::resolve(a)?),
        Command::Bench(a) => bench::run(&BenchPlan::resolve(a)?),
        Command::Train(a) => train::run(&TrainPlan::resolve(a)?),
        Command::Eval(a) => eval::run(&EvalPlan::resolve(a)?),
    }
}
