//! The `neuronpath` command line: thin commands over the library.
pub mod ablate;
pub mod atlas;
pub mod bench;
pub mod common;
pub mod discover;
pub mod eval;
pub mod explain;
pub mod inspect;
pub mod merge;
pub mod plans;
pub mod predict;
pub mod prune;
pub mod report;
pub mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "neuronpath",
    version,
    about = "Influential neuron paths of Vision Transformers (ICLR 2025 method)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the configuration detected from a checkpoint.
    Inspect(inspect::Args),
    /// Top-5 classes of images.
    Predict(predict::Args),
    /// Find influential neuron paths (the paper's method and baselines) for images.
    Discover(discover::Args),
    /// One image's path, printed, and a picture (SVG + PNG) of its path and patch heat maps.
    Explain(explain::Args),
    /// Manipulation: remove / enhance / scale each method's path neurons (SPEC section 9).
    Ablate(ablate::Args),
    /// Class atlas: how often each neuron is on the path per class, class similarity.
    Atlas(atlas::Args),
    /// Class-wise pruning guided by top-K paths (SPEC section 9).
    Prune(prune::Args),
    /// A self-contained HTML report with the experiments' figures.
    Report(report::Args),
    /// Speed and memory of the engine on a ViT-B-sized random model (with PyTorch beside it).
    Bench(bench::Args),
    /// Join the result files of shards.
    Merge(merge::Args),
    /// Train a ViT on Fashion-MNIST (how the embedded model was made).
    Train(train::Args),
    /// Accuracy of a model on the Fashion-MNIST test split.
    Eval(eval::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Discover(a) => discover::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Ablate(a) => ablate::run(a),
        Command::Atlas(a) => atlas::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Report(a) => report::run(a),
        Command::Bench(a) => bench::run_cmd(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
    }
}
