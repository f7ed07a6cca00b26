//! The `neuronpath` command line: thin commands over the library.
pub mod common;
pub mod discover;
pub mod eval;
pub mod inspect;
pub mod predict;
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
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
    }
}
