//! Options shared by the commands that load a model.
use crate::embedded;
use crate::io::inputs::{gather, Inputs, Preprocess};
use crate::io::preprocess::Normalization;
use crate::io::results::ModelInfo;
pub use crate::io::results::Precision;
pub use crate::io::shard::Shard;
use crate::model::load::Loaded;
use crate::model::{load_model, Gelu, LoadOptions};
use anyhow::Context;
use candle_core::Device;
use sha2::Digest;
use std::path::Path;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, clap::ValueEnum, PartialEq, Eq)]
pub enum GeluArg {
    Erf,
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
    /// Input normalisation [default: what the checkpoint records, else ImageNet mean/std].
    #[arg(long)]
    pub normalize: Option<Normalization>,
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
                GeluArg::Quick => Gelu::Quick,
            }),
            ln_eps: self.ln_eps,
            double_fc_norm,
            limits: crate::limits::Limits::from_env().map_err(anyhow::Error::msg)?,
        })
    }

    pub fn load(&self, double_fc_norm: bool) -> anyhow::Result<Loaded> {
        let opts = self.options(double_fc_norm)?;
        Ok(match &self.model {
            Some(p) => load_model(p, &opts)?,
            None => embedded::model(&opts)?,
        })
    }

    /// The model's name in outputs.
    pub fn name(&self) -> String {
        match &self.model {
            Some(p) => p.display().to_string(),
            None => embedded::MODEL_NAME.to_string(),
        }
    }

    /// The preprocessing the model expects: its recorded normalisation unless overridden.
    pub fn preprocess(&self, loaded: &Loaded) -> anyhow::Result<Preprocess> {
        let norm = match (self.normalize, loaded.normalization) {
            (Some(n), _) => n,
            (None, Some(ms)) => Normalization::from_mean_std(ms).with_context(|| {
                format!(
                    "{}: unsupported normalisation {ms:?}; pass --normalize",
                    self.name()
                )
            })?,
            (None, None) => Normalization::ImageNet,
        };
        Ok(Preprocess {
            size: loaded.model.cfg.image_size,
            norm,
        })
    }

    /// The inputs named on the command line, or the embedded samples for the embedded model.
    pub fn inputs(&self, paths: &[PathBuf], labels: Option<&Path>) -> anyhow::Result<Inputs> {
        if !paths.is_empty() {
            return gather(paths, labels);
        }
        if self.model.is_some() {
            anyhow::bail!("no input images (the embedded samples only go with the embedded model)");
        }
        Ok(embedded::samples())
    }

    /// Path, content hash, layout and detected configuration, for result headers.
    pub fn describe(&self, loaded: &Loaded) -> anyhow::Result<ModelInfo> {
        Ok(ModelInfo {
            path: self.name(),
            sha256: Some(self.hash()?),
            layout: serde_json::to_value(loaded.layout)?
                .as_str()
                .map(String::from),
            config: loaded.model.cfg.clone(),
        })
    }

    /// SHA-256 of the checkpoint's bytes (every file of a folder, in name order).
    fn hash(&self) -> anyhow::Result<String> {
        let mut h = sha2::Sha256::new();
        match &self.model {
            None => h.update(embedded::model_bytes().unwrap_or_default()),
            Some(p) if p.is_dir() => {
                let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    h.update(std::fs::read(&f)?);
                }
            }
            Some(p) => {
                h.update(std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?)
            }
        }
        Ok(format!("{:x}", h.finalize()))
    }
}
