//! `neuronpath discover`: neuron paths for every input image.
use super::{InputArgs, ModelArgs, Shard, DEFAULT_RESULTS};
use crate::attribution::discover::{Method, TargetKind};
pub use crate::attribution::run::NeuronToken;
use crate::attribution::SearchEngine;
use crate::experiments::detail::DEFAULT_MAP_STEPS;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct DiscoverArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Results file (JSON Lines). Re-running the same command resumes it.
    #[arg(long, short, default_value = DEFAULT_RESULTS)]
    pub out: PathBuf,
    /// Riemann steps m of the path search and JAS [range: 1 to 1024].
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Riemann steps of the report's patch heat maps (integrated gradients: more steps, smaller
    /// completeness delta, longer report) [range: 1 to 1024].
    #[arg(long, default_value_t = DEFAULT_MAP_STEPS)]
    pub map_steps: usize,
    /// Neurons per layer (K > 1: the top-K variant used for pruning) [range: 1 to the MLP
    /// width].
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// Methods to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "path,activation,influence,random"
    )]
    pub methods: Vec<Method>,
    /// Class F scores [values: label, predicted, class:N] [default: label; predicted with
    /// --direction].
    #[arg(long)]
    pub target: Option<TargetKind>,
    /// What F is: prob (softmax probability of the target, the paper), logit, or logit-diff:A
    /// (the target's logit minus class A's) [values: prob, logit, logit-diff:A].
    #[arg(long, default_value = "prob")]
    pub objective: ObjectiveArg,
    /// For a backbone without classifier (DINOv2, CLIP towers): F is the final embedding's dot
    /// product with this vector (.npy, one row of the embedding's width) [default: none].
    #[arg(long)]
    pub direction: Option<PathBuf>,
    /// Whose MLP neurons: the CLS token's, or the distillation token's (DeiT distilled)
    /// [default: cls; all patch tokens for mean-pooled MAE models].
    #[arg(long, value_enum)]
    pub neuron_token: Option<NeuronToken>,
    /// The authors' quirks: top-K sums over the K-th neuron only, MAE JAS / 196, MAE fc_norm twice.
    #[arg(long)]
    pub compat: bool,
    /// Seed of the random baseline [range: 0 to 2^64 - 1].
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per batch (each becomes `steps` rows of a clamped pass) [range: at least 1]
    /// [default: 4 on the CPU; with --cuda as many as fill one clamped pass under
    /// --memory-limit-mb, at least 4: a GPU needs many rows per pass to fill up].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak memory of one clamped pass, in MiB [range: at least 1] [default: 2048 on the CPU,
    /// half the free GPU memory with --cuda].
    #[arg(long)]
    pub memory_limit_mb: Option<usize>,
    /// Search engine: prefix (keeps each row's path prefix and a tangent: ~1.7x less work on
    /// ViT-B/16) or reference (one full forward + backward per layer step); same paths
    /// [values: prefix, reference].
    #[arg(long, default_value = "prefix")]
    pub engine: SearchEngine,
    /// Process the slice i/n of the inputs, chosen by a hash of each image's path [values: i/n
    /// with 0 <= i < n] [default: from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT when set,
    /// else all inputs].
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Only the first N images of each class (class folders) or of the inputs [range: at least
    /// 1] [default: all].
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Also write the authors' layout: PREFIX.plan.json and PREFIX-{label}.rlt.jsonl [default:
    /// not written].
    #[arg(long)]
    pub reference_layout: Option<PathBuf>,
    /// Write the HTML report of all experiments here when done [default: report.html beside
    /// the results for the embedded samples, else no report].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Do not write the report.
    #[arg(long)]
    pub no_report: bool,
    /// Keep the error records of a resumed run (by default their images are run again).
    #[arg(long)]
    pub no_retry: bool,
    /// Replace existing files at the outputs that are not earlier neuronpath outputs (never an
    /// input).
    #[arg(long)]
    pub force: bool,
    /// Test hook: stop (as if killed) after this many images.
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

/// `--objective` values (a direction comes from `--direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectiveArg {
    Prob,
    Logit,
    LogitDiff(usize),
}

impl std::str::FromStr for ObjectiveArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "prob" => Ok(ObjectiveArg::Prob),
            "logit" => Ok(ObjectiveArg::Logit),
            _ => s
                .strip_prefix("logit-diff:")
                .and_then(|a| a.parse().ok())
                .map(ObjectiveArg::LogitDiff)
                .ok_or_else(|| format!("`{s}`: expected prob, logit or logit-diff:A")),
        }
    }
}
