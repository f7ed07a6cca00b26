//! `neuronpath ablate`: scale each method's path neurons.
use super::{ModelArgs, DEFAULT_RESULTS};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct AblateArgs {
    /// Results of `neuronpath discover`.
    #[arg(long, default_value = DEFAULT_RESULTS)]
    pub results: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output folder: manipulation.json, CSV tables, SVG figures.
    #[arg(long, short, default_value = "neuronpath-out/ablate")]
    pub out: PathBuf,
    /// Factors applied to every path neuron (0 removes, 2 enhances), comma-separated [range:
    /// finite numbers].
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    pub factors: Vec<f64>,
    /// Scale all K neurons per layer of a top-K run (default: the top-1 path).
    #[arg(long)]
    pub all_k: bool,
    /// Seed of the random control when the run has no random paths [range: 0 to 2^64 - 1]
    /// [default: the run's seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bootstrap resamples of the confidence intervals [range: at least 100].
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Images per forward pass [range: at least 1].
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Replace existing files at the outputs that are not earlier neuronpath outputs (never an
    /// input).
    #[arg(long)]
    pub force: bool,
}
