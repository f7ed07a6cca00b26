//! `neuronpath bench`: speed and memory of the engine.

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model dimensions (random weights).
    #[arg(long, value_enum, default_value = "b16")]
    pub size: Size,
    /// Images of the clean-forward row [range: at least 1].
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Riemann steps m (rows of one attribution pass) [range: 1 to 1024].
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Minimum seconds per timed row (0: each row once) [range: 0 or more].
    #[arg(long, default_value_t = 3.0)]
    pub min_secs: f64,
    /// Skip the (long) full path-search row (and the precision rows).
    #[arg(long)]
    pub no_search: bool,
    /// Skip the precision rows: how often each precision mode's paths equal f32's (f64 on the
    /// CPU; tf32 and bf16 with --cuda), on the embedded model and a random ViT.
    #[arg(long)]
    pub no_precision: bool,
    /// Images searched together in the path-search row (each layer step is one pass of
    /// images x m rows: what `discover --batch` does; a GPU needs this to fill up) [range: at
    /// least 1] [default: 1 on the CPU; with --cuda as many as fill one pass under
    /// --memory-limit-mb, as `discover --batch` does].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub search_images: Option<u64>,
    /// Python interpreter with torch for the comparison column [values: a command or path]
    /// [default: $NEURONPATH_PYTHON, else python3].
    #[arg(long)]
    pub python: Option<String>,
    /// Machine-readable output: the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// Peak memory of one clamped pass, in MiB (as `discover --memory-limit-mb`) [range: at
    /// least 1] [default: 2048 on the CPU, half the free GPU memory with --cuda].
    #[arg(long)]
    pub memory_limit_mb: Option<usize>,
    /// Run on the first CUDA GPU (needs a build with `--features cuda`); PyTorch then runs on
    /// its GPU too.
    #[arg(long)]
    pub cuda: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Size {
    /// ViT-B/16 at 224 (12 layers, 768 hidden, 3072 MLP, 12 heads): the paper's model.
    B16,
    /// ViT-B/32 at 224.
    B32,
    /// A small model for a quick look.
    Small,
}
