//! Options shared by the commands that load a model.
use anyhow::Context;
use candle_core::{DType, Device};
use crate::model::{load_model, Gelu, LoadOptions};
use std::path::PathBuf;

/// Element type of the computation.
#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum Precision {
    F32,
    F64,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum GeluArg {
    Erf,
    Tanh,
}

/// How to load a checkpoint.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Checkpoint: Google ViT .npz, Hugging Face folder, timm .safetensors or PyTorch .pth.
    #[arg(long)]
    pub model: PathBuf,
    /// Element type (f64 is what the golden tests use).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
    /// Run at this image size (the position-embedding grid is resized when it differs).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Attention heads, for layouts that do not record them (timm, MAE); default hidden/64.
    #[arg(long)]
    pub heads: Option<usize>,
    /// GELU flavour (default: what the checkpoint's layout implies, erf for all but HF tanh configs).
    #[arg(long, value_enum)]
    pub gelu: Option<GeluArg>,
    /// LayerNorm epsilon (default: from the checkpoint's config, else 1e-6).
    #[arg(long)]
    pub ln_eps: Option<f64>,
    /// Run on the first CUDA GPU (needs a build with `--features cuda`).
    #[arg(long)]
    pub cuda: bool,
}

impl ModelArgs {
    pub fn options(&self, double_fc_norm: bool) -> anyhow::Result<LoadOptions> {
        let device = if self.cuda {
            Device::new_cuda(0).context("no CUDA device (build with --features cuda)")?
        } else {
            Device::Cpu
        };
        Ok(LoadOptions {
            dtype: self.dtype.dtype(),
            device,
            image_size: self.image_size,
            heads: self.heads,
            gelu: self.gelu.map(|g| match g {
                GeluArg::Erf => Gelu::Erf,
                GeluArg::Tanh => Gelu::Tanh,
            }),
            ln_eps: self.ln_eps,
            double_fc_norm,
        })
    }

    pub fn load(&self, double_fc_norm: bool) -> anyhow::Result<crate::model::load::Loaded> {
        Ok(load_model(&self.model, &self.options(double_fc_norm)?)?)
    }
}
