//! `neuronpath inspect`: the configuration detected from a checkpoint.
use super::ModelArgs;

#[derive(clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}
