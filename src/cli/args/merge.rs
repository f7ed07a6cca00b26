//! `neuronpath merge`: shard outputs joined.
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MergeArgs {
    /// Shard outputs (JSON Lines of `discover`).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Merged results file.
    #[arg(long, short)]
    pub out: PathBuf,
}
