//! `neuronpath prune`: class-wise pruning guided by top-K paths.
use super::{ModelArgs, DEFAULT_RESULTS};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Results of `neuronpath discover` (run it with `--top-k K` for K > 1).
    #[arg(long, default_value = DEFAULT_RESULTS)]
    pub results: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output folder: prune.json, prune.csv, SVG figures.
    #[arg(long, short, default_value = "neuronpath-out/prune")]
    pub out: PathBuf,
    /// Neurons per (layer, rank) kept: K values, comma-separated (clamped to the run's top-K)
    /// [range: at least 1] [default: the authors' 1,5,10,20,50].
    #[arg(long = "k", value_delimiter = ',')]
    pub ks: Option<Vec<usize>>,
    /// Fractions of the other CLS neurons zeroed, comma-separated [range: 0 to 1] [default: the
    /// authors' 0.1,0.3,0.5,1].
    #[arg(long = "p", value_delimiter = ',')]
    pub ps: Option<Vec<f64>>,
    /// Numbers of leading layers pruned, comma-separated (clamped to the model's layers)
    /// [range: at least 1] [default: the authors' 3,6,9,12].
    #[arg(long = "d", value_delimiter = ',')]
    pub ds: Option<Vec<usize>>,
    /// Fraction of each class's images held out for evaluation (the rest build the kept set)
    /// [range: strictly between 0 and 1].
    #[arg(long, default_value_t = 0.5)]
    pub holdout: f64,
    /// Evaluate on these images instead (class folders, files or .npy); all run images build
    /// [default: the held-out share of the run's images].
    #[arg(long, num_args = 1..)]
    pub eval: Vec<PathBuf>,
    /// Labels of --eval .npy rows and loose files: a JSON array of class indices or class
    /// names [default: none; class folders label their images].
    #[arg(long)]
    pub eval_labels: Option<PathBuf>,
    /// Seed of the masks [range: 0 to 2^64 - 1].
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the control (pruning around a random kept set of the same size).
    #[arg(long)]
    pub no_control: bool,
    /// Bootstrap resamples of the confidence intervals [range: at least 100].
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Images per forward pass [range: at least 1].
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Also write the model pruned for one class as a timm .safetensors checkpoint [default:
    /// not written].
    #[arg(long)]
    pub save_model: Option<PathBuf>,
    /// Class of the saved model [range: a class index of the model] [default: the first
    /// evaluated class].
    #[arg(long)]
    pub save_class: Option<usize>,
    /// K of the saved model [range: 1 to the run's top-K] [default: the largest of the grid].
    #[arg(long)]
    pub save_k: Option<usize>,
    /// p of the saved model [range: 0 to 1] [default: the largest of the grid].
    #[arg(long)]
    pub save_p: Option<f64>,
    /// d of the saved model [range: 1 to the model's layers] [default: the largest of the
    /// grid].
    #[arg(long)]
    pub save_d: Option<usize>,
    /// Replace existing files at the outputs that are not earlier neuronpath outputs (never an
    /// input).
    #[arg(long)]
    pub force: bool,
}
