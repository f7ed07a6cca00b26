//! `neuronpath train`: a ViT trained on Fashion-MNIST, a linear probe on a frozen backbone, or
//! the sample images exported.
use super::common::Precision;
use crate::io::fashion_mnist;
use crate::io::preprocess::Normalization;
use crate::training::probe::ProbeInput;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Folder with the Fashion-MNIST IDX .gz files.
    #[arg(long, default_value = fashion_mnist::DEFAULT_DIR)]
    pub data: PathBuf,
    /// Output folder: `checkpoint/` (after every epoch) and `model/` (Hugging Face folder + card).
    #[arg(long, default_value = "out/fashion-mnist")]
    pub out: PathBuf,
    /// Epochs [range: at least 1] [default: 20].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size [range: at least 1] [default: 128].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Peak learning rate [range: a positive finite number] [default: 2e-3].
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW weight decay on weight matrices [range: 0 or more, finite] [default: 0.05].
    #[arg(long)]
    pub wd: Option<f64>,
    /// Linear warm-up length in epochs [range: 0 or more, finite] [default: 1].
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Seed of all randomness [range: 0 to 2^64 - 1] [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train on the first N training images only (tests, timing) [range: at least 1] [default:
    /// all 60000].
    #[arg(long)]
    pub limit: Option<usize>,
    /// Patch size in pixels [range: at least 1, dividing 28] [default: 7].
    #[arg(long)]
    pub patch_size: Option<usize>,
    /// Hidden size [range: at least 1, a multiple of --heads] [default: 64].
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Encoder blocks [range: at least 1] [default: 6].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads [range: at least 1] [default: 4].
    #[arg(long)]
    pub heads: Option<usize>,
    /// MLP hidden units [range: at least 1] [default: 256].
    #[arg(long)]
    pub mlp_dim: Option<usize>,
    /// Continue from the checkpoint in `<out>/checkpoint` (its recipe; options given must match).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs (checkpointed; the schedule still spans --epochs): split a
    /// long run, then `--resume` [range: at least 1] [default: train all --epochs].
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
    /// Do not train: write the first `--per-class` test images of each class as PNGs into
    /// `DIR/samples/<class>/` and the class names into DIR/classes.json [default: train].
    #[arg(long, value_name = "DIR")]
    pub export_samples: Option<PathBuf>,
    /// Sample images per class for --export-samples [range: at least 1].
    #[arg(long, default_value_t = 10)]
    pub per_class: usize,
    /// With --head-only: the frozen backbone (any checkpoint `--model` takes; DINOv2 and
    /// ViT/DeiT checkpoints can be written back with the new head) [default: none; required
    /// by --head-only].
    #[arg(long, value_name = "MODEL", requires = "head_only")]
    pub backbone: Option<PathBuf>,
    /// Train only a linear classifier on the backbone's frozen features (Fashion-MNIST upsampled
    /// to its input size, grey to RGB; features cached in `<out>/features/`); writes the
    /// backbone with that head to `<out>/model` and the numbers to `<out>/probe.json`
    /// [defaults: --epochs 100 --batch 256 --lr 1e-3 --wd 1e-4].
    #[arg(long, requires = "backbone", conflicts_with_all = [
        "resume", "stop_after", "export_samples", "patch_size", "hidden", "layers", "heads",
        "mlp_dim", "warmup_epochs"])]
    pub head_only: bool,
    /// With --head-only: what the head reads from the final tokens.
    #[arg(long, value_enum, default_value = "cls", requires = "head_only")]
    pub probe_input: ProbeInput,
    /// With --head-only: measure the probe on the first N test images [range: at least 1]
    /// [default: all 10000].
    #[arg(long, value_name = "N", requires = "head_only")]
    pub test_limit: Option<usize>,
    /// With --head-only: run the backbone at this image size in pixels (its position grid
    /// resized) [range: a multiple of the patch size] [default: the backbone's].
    #[arg(long, requires = "head_only")]
    pub image_size: Option<usize>,
    /// With --head-only: element type of the backbone's forward passes (f32 or f64; the GPU
    /// modes tf32 and bf16 are refused: train runs on the CPU).
    #[arg(long, value_enum, default_value = "f32", requires = "head_only")]
    pub dtype: Precision,
    /// With --head-only: input normalisation [values: imagenet, half, clip] [default: the
    /// backbone's, else imagenet].
    #[arg(long, requires = "head_only")]
    pub normalize: Option<Normalization>,
    /// Replace files under `--out` that neuronpath did not write (and, with --head-only, an
    /// existing `<out>/model`); never the inputs.
    #[arg(long)]
    pub force: bool,
}
