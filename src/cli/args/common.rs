//! Options shared by several commands: how to load a model, which images to read.
use crate::io::preprocess::Normalization;
pub use crate::io::results::Precision;
pub use crate::io::shard::Shard;
use std::path::PathBuf;

/// The images a command reads.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// Images: files, ImageNet-style class folders, or .npy arrays (N,3,H,W) of preprocessed
    /// inputs [default: the embedded Fashion-MNIST samples].
    pub inputs: Vec<PathBuf>,
    /// Labels of .npy rows and loose image files, in order: a JSON array of class indices or
    /// class names (the model's, else the class folders'), e.g. [3, "Coat"] [default: none;
    /// class folders label their images].
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

/// Where `discover` writes and the other commands read results unless told otherwise.
pub const DEFAULT_RESULTS: &str = "neuronpath-out/discover.jsonl";

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum GeluArg {
    /// The exact GELU, x Phi(x)
    Erf,
    /// The tanh approximation
    Tanh,
    /// CLIP's x sigmoid(1.702 x)
    Quick,
}

/// How to load a checkpoint.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Checkpoint: Google ViT .npz, Hugging Face folder, timm .safetensors or PyTorch .pth
    /// [default: the embedded Fashion-MNIST ViT].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Input normalisation [values: imagenet, half (mean = std = 0.5), clip] [default: what
    /// the checkpoint records, else imagenet].
    #[arg(long)]
    pub normalize: Option<Normalization>,
    /// Element type and precision mode (alias --precision): f32; f64 (what the golden tests
    /// use); tf32 (f32 with the GPU's TF32 matrix products) and bf16 (bfloat16 weights and
    /// activations), opt-in modes for speed, with --cuda only (no CPU bf16: candle has no bf16
    /// matrix product on the CPU, and without AVX512-BF16, as on a 2-core AVX2 machine, it would
    /// not pay). `bench` prints how often their paths agree with f32's.
    #[arg(long, visible_alias = "precision", value_enum, default_value = "f32")]
    pub dtype: Precision,
    /// Run at this image size in pixels (the position-embedding grid is resized when it
    /// differs) [range: a multiple of the patch size, at most 256 patches a side] [default: the
    /// checkpoint's].
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Attention heads, for layouts that do not record them (timm, MAE) [range: at least 1,
    /// dividing the hidden size] [default: what the checkpoint records, else hidden / 64].
    #[arg(long)]
    pub heads: Option<usize>,
    /// GELU flavour [default: what the checkpoint's layout implies: erf for all but Hugging Face
    /// tanh configs].
    #[arg(long, value_enum)]
    pub gelu: Option<GeluArg>,
    /// LayerNorm epsilon [range: a positive finite number] [default: the checkpoint's config,
    /// else 1e-6].
    #[arg(long)]
    pub ln_eps: Option<f64>,
    /// Run on the first CUDA GPU (needs a build with `--features cuda`).
    #[arg(long)]
    pub cuda: bool,
}
