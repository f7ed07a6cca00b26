//! `bench`'s flags resolved: the model's dimensions from `--size`, the Python of the PyTorch
//! column, the memory limit in bytes.
use super::{memory_limit, positive, steps};
use crate::cli::args::{BenchArgs, Size};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// `neuronpath bench`, resolved.
#[derive(Clone, Debug)]
pub struct BenchPlan {
    pub size: Size,
    /// Image size, patch, hidden, MLP width, heads, layers (`bench::vit_config`'s order).
    pub dims: [usize; 6],
    /// Images of the clean-forward row.
    pub batch: usize,
    /// Riemann steps m (rows of one attribution pass).
    pub steps: usize,
    /// Minimum seconds per timed row.
    pub min_secs: f64,
    /// Images searched together in the path-search row; 0: no search row.
    pub search_images: usize,
    /// `--search-images` was not given: on a GPU the run replaces `search_images` (1 here) by
    /// as many images as fill one pass under the memory limit.
    pub search_images_auto: bool,
    /// Compare the precision modes' paths with f32's (after the speed rows).
    pub precision_rows: bool,
    /// Interpreter with torch for the comparison column.
    pub python: String,
    /// The PyTorch side of the benchmark.
    pub torch_script: PathBuf,
    pub json: bool,
    /// Peak memory of one clamped pass in bytes (`None`: the device's default).
    pub memory_limit: Option<usize>,
    pub cuda: bool,
}

/// scripts/bench_torch.py: $NEURONPATH_BENCH_TORCH, else this checkout's copy, else the one
/// under the current directory (a binary copied to another machine with the repository).
fn torch_script() -> PathBuf {
    if let Some(p) = std::env::var_os("NEURONPATH_BENCH_TORCH") {
        return PathBuf::from(p);
    }
    let built = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/bench_torch.py"
    ));
    if built.is_file() {
        built
    } else {
        PathBuf::from("scripts/bench_torch.py")
    }
}

impl BenchPlan {
    /// Checks `bench`'s flags.
    pub fn resolve(a: BenchArgs) -> Result<Self> {
        if !(a.min_secs.is_finite() && a.min_secs >= 0.0) {
            bail!(
                "--min-secs: {} is not a finite number of seconds",
                a.min_secs
            );
        }
        Ok(BenchPlan {
            size: a.size,
            dims: match a.size {
                Size::B16 => [224, 16, 768, 3072, 12, 12],
                Size::B32 => [224, 32, 768, 3072, 12, 12],
                Size::Small => [224, 16, 384, 1536, 6, 12],
            },
            batch: positive("--batch", a.batch)?,
            steps: steps("--steps", a.steps)?,
            min_secs: a.min_secs,
            search_images: match (a.no_search, a.search_images) {
                (true, _) => 0,
                (false, Some(k)) => usize::try_from(k)?,
                (false, None) => 1,
            },
            search_images_auto: !a.no_search && a.search_images.is_none(),
            precision_rows: !a.no_search && !a.no_precision,
            python: a
                .python
                .or_else(|| std::env::var("NEURONPATH_PYTHON").ok())
                .unwrap_or_else(|| "python3".into()),
            torch_script: torch_script(),
            json: a.json,
            memory_limit: memory_limit(a.memory_limit_mb)?,
            cuda: a.cuda,
        })
    }
}
