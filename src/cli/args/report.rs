//! `neuronpath report`: the HTML report over a results file.
use super::{ModelArgs, DEFAULT_RESULTS};
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
    /// Use this `ablate` output (manipulation.json) instead of computing the manipulation.
    #[arg(long)]
    pub ablate: Option<PathBuf>,
    /// Use this `prune` output (prune.json) instead of computing the pruning.
    #[arg(long)]
    pub prune: Option<PathBuf>,
    /// Do not load the model: report only what the records hold.
    #[arg(long)]
    pub no_model: bool,
    /// Do not compute the pruning grid.
    #[arg(long)]
    pub no_prune: bool,
    /// Groups of classes that look alike, e.g. "0,2,4,6;5,7,9" [default: known groups for
    /// Fashion-MNIST names, else the model's confusions].
    #[arg(long)]
    pub look_alike: Option<String>,
    /// At most this many images shown in detail (picture, path diagram, heat maps): a sample
    /// covering every class; every image stays in the table [default: 100].
    #[arg(long)]
    pub max_images: Option<usize>,
    /// Replace existing files at the outputs that are not earlier neuronpath outputs (never an
    /// input).
    #[arg(long)]
    pub force: bool,
}
