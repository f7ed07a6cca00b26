//! `neuronpath explain`: one image's path and its picture.
use super::ModelArgs;
use crate::attribution::SearchEngine;
use crate::experiments::detail::DEFAULT_MAP_STEPS;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image file, class folder or .npy array (N,3,H,W) [default: the embedded samples, with the
    /// embedded model].
    pub image: Option<PathBuf>,
    /// Which input of IMAGE (or of the embedded samples) to explain, 0-based [range: 0 to the
    /// number of inputs - 1].
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Class whose probability F is explained [values: a class index or a class name of the
    /// model] [default: the image's label when known, else the model's prediction].
    #[arg(long)]
    pub class: Option<String>,
    /// Labels of .npy rows and loose image files, in order: a JSON array of class indices or
    /// class names, e.g. [3, "Coat"] [default: none].
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Riemann steps m of the path search and JAS [range: 1 to 1024].
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Riemann steps of the patch heat maps (integrated gradients: more steps, smaller
    /// completeness delta; the same default as the report's) [range: 1 to 1024].
    #[arg(long, default_value_t = DEFAULT_MAP_STEPS)]
    pub map_steps: usize,
    /// Output prefix: writes PREFIX.svg, PREFIX.png, PREFIX.npy (maps, shape (L+1, G, G), the
    /// path's last) and PREFIX.json [default: neuronpath-out/explain-INDEX].
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Replace existing files at PREFIX.* that are not an earlier `explain` output.
    #[arg(long)]
    pub force: bool,
    /// Peak memory of one clamped pass, in MiB [range: at least 1] [default: 2048 on the CPU,
    /// half the free GPU memory with --cuda].
    #[arg(long)]
    pub memory_limit_mb: Option<usize>,
    /// Search engine: prefix (keeps each row's path prefix and a tangent: ~1.7x less work on
    /// ViT-B/16) or reference (one full forward + backward per layer step); same paths
    /// [values: prefix, reference].
    #[arg(long, default_value = "prefix")]
    pub engine: SearchEngine,
}
