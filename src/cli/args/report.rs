//! `neuronpath report`: the HTML report over a results file.
use super::{ModelArgs, DEFAULT_RESULTS};
use crate::experiments::detail::DEFAULT_MAP_STEPS;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Results of `neuronpath discover`.
    #[arg(long, default_value = DEFAULT_RESULTS)]
    pub results: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The report (.html; a .json with the claims is written beside it).
    #[arg(long, short, default_value = "neuronpath-out/report.html")]
    pub out: PathBuf,
    /// Use this `ablate` output (manipulation.json) instead of computing the manipulation
    /// [default: computed with the model].
    #[arg(long)]
    pub ablate: Option<PathBuf>,
    /// Use this `prune` output (prune.json) instead of computing the pruning [default: computed
    /// with the model].
    #[arg(long)]
    pub prune: Option<PathBuf>,
    /// Do not load the model: report only what the records hold.
    #[arg(long)]
    pub no_model: bool,
    /// Do not compute the pruning grid.
    #[arg(long)]
    pub no_prune: bool,
    /// Groups of classes that look alike [values: class indices, comma-separated within a
    /// group, groups separated by ';', e.g. "0,2,4,6;5,7,9"] [default: known groups for
    /// Fashion-MNIST names, else the model's confusions].
    #[arg(long)]
    pub look_alike: Option<String>,
    /// At most this many images shown in detail (picture, path diagram, heat maps): a sample
    /// covering every class; every image stays in the table [range: 0 or more] [default: 100].
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Riemann steps of the patch heat maps (integrated gradients: more steps, smaller
    /// completeness delta, longer report) [range: 1 to 1024].
    #[arg(long, default_value_t = DEFAULT_MAP_STEPS)]
    pub map_steps: usize,
    /// Replace existing files at the outputs that are not earlier neuronpath outputs (never an
    /// input).
    #[arg(long)]
    pub force: bool,
}
