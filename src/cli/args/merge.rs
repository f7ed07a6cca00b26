//! `neuronpath merge`: shard outputs joined.
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MergeArgs {
    /// Shard outputs (JSON Lines of `discover`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Merged results file (never one of the inputs; replaced atomically).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Replace an existing file at --out that is not a neuronpath results file.
    #[arg(long)]
    pub force: bool,
}
