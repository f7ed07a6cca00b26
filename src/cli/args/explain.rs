//! `neuronpath explain`: one image's path and its picture.
use super::ModelArgs;
use crate::attribution::SearchEngine;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image file, class folder or .npy array (N,3,H,W) [default: the embedded samples, with the
    /// embedded model].
    pub image: Option<PathBuf>,
    /// Which input of IMAGE (or of the embedded samples) to explain, 0-based.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Class whose probability F is explained: an index or a class name [default: the image's
    /// label when known, else the model's prediction].
    #[arg(long)]
    pub class: Option<String>,
    /// Labels of .npy rows and loose image files, in order: a JSON array of class indices or
    /// class names, e.g. [3, "Coat"] [default: none].
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Riemann steps m of the path search and JAS.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Riemann steps of the patch heat maps (integrated gradients; more steps, smaller delta).
    #[arg(long, default_value_t = 64)]
    pub map_steps: usize,
    /// Output prefix: writes PREFIX.svg, PREFIX.png, PREFIX.npy (maps, shape (L+1, G, G), the
    /// path's last) and PREFIX.json [default: neuronpath-out/explain-INDEX].
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Replace existing files at PREFIX.* that are not an earlier `explain` output.
    #[arg(long)]
    pub force: bool,
    /// Peak memory of one clamped pass, in MiB [default: 2048 on the CPU, half the free GPU
    /// memory with --cuda].
    #[arg(long)]
    pub memory_limit_mb: Option<usize>,
    /// Search engine: prefix (keeps each row's path prefix and a tangent: ~1.7x less work on
    /// ViT-B/16) or reference (one full forward + backward per layer step); same paths.
    #[arg(long, default_value = "prefix")]
    pub engine: SearchEngine,
}
