//! `neuronpath predict`: top-5 classes or embeddings of images.
use super::{InputArgs, ModelArgs};

#[derive(clap::Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Machine-readable output: every class's probability per input (the embedding for a
    /// backbone without classifier).
    #[arg(long)]
    pub json: bool,
    /// Images per forward pass [range: at least 1].
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
}
