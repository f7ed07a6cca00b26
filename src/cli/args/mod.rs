//! The first stage of the command line: every command's clap arguments as typed, nothing
//! checked or resolved (that is [`super::plans`]). One file per command; the options several
//! commands share are in `common`.
mod ablate;
mod atlas;
mod bench;
mod common;
mod discover;
mod eval;
mod explain;
mod inspect;
mod merge;
mod predict;
mod prune;
mod report;
mod train;

pub use ablate::AblateArgs;
pub use atlas::AtlasArgs;
pub use bench::{BenchArgs, Size};
pub use common::{GeluArg, InputArgs, ModelArgs, Precision, Shard, DEFAULT_RESULTS};
pub use discover::{DiscoverArgs, ObjectiveArg};
pub use eval::EvalArgs;
pub use explain::ExplainArgs;
pub use inspect::InspectArgs;
pub use merge::MergeArgs;
pub use predict::PredictArgs;
pub use prune::PruneArgs;
pub use report::ReportArgs;
pub use train::TrainArgs;

use clap::{Parser, Subcommand};

/// The whole command line.
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

/// One subcommand and its arguments.
#[derive(Subcommand)]
pub enum Command {
    /// Print the configuration detected from a checkpoint.
    Inspect(InspectArgs),
    /// Top-5 classes of images.
    Predict(PredictArgs),
    /// Find influential neuron paths (the paper's method and baselines) for images.
    Discover(DiscoverArgs),
    /// One image's path, printed, and a picture (SVG + PNG) of its path and patch heat maps.
    Explain(ExplainArgs),
    /// Manipulation: remove / enhance / scale each method's path neurons (the paper's manipulation experiment).
    Ablate(AblateArgs),
    /// Class atlas: how often each neuron is on the path per class, class similarity.
    Atlas(AtlasArgs),
    /// Class-wise pruning guided by top-K paths (the paper's pruning experiment).
    Prune(PruneArgs),
    /// A self-contained HTML report with the experiments' figures.
    Report(ReportArgs),
    /// Speed and memory of the engine on a ViT-B-sized random model (with PyTorch beside it).
    Bench(BenchArgs),
    /// Join the result files of shards.
    Merge(MergeArgs),
    /// Train a ViT on Fashion-MNIST (how the embedded model was made).
    Train(TrainArgs),
    /// Accuracy of a model on the Fashion-MNIST test split.
    Eval(EvalArgs),
}
