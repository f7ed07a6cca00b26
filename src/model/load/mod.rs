//! Checkpoint loading: detects the layout, maps it to one canonical set of tensors (timm names),
//! checks names, shapes and values, and builds a [`Vit`].
mod archive;
mod assemble;
mod clip;
mod dinov2;
mod dtype;
mod google_npz;
mod hf;
mod hf_config;
mod hf_source;
pub mod npy;
mod open_clip;
pub mod pickle;
mod posemb;
pub mod safetensors_header;
mod state_dict;
mod summary;
mod torch_pickle;

use crate::limits::Limits;
use crate::model::config::{Gelu, Pool};
use crate::model::vit::Vit;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use dtype::convert;
pub use posemb::{resize_grid, resize_grid_with, PosResize};
pub use state_dict::from_state_dict;

/// A checkpoint problem, always naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    // Fields are not named `source`: the message already includes the cause, and a `source`
    // would print it twice in an error chain.
    /// The file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The checkpoint file.
        path: PathBuf,
        /// Why it failed.
        cause: std::io::Error,
    },
    /// The file is not a checkpoint of a known layout, or is inconsistent.
    #[error("{path}: {msg}")]
    Format {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("{path}: missing tensor `{name}`")]
    Missing {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor has the wrong shape for the detected architecture.
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape in the file.
        got: Vec<usize>,
        /// The shape the architecture needs.
        expected: Vec<usize>,
    },
    /// A tensor holds NaN or infinite values.
    #[error("{path}: tensor `{name}` contains NaN or infinite values")]
    NonFinite {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A pickle names something outside the allow-list; nothing of it was run.
    #[error("{path}: refusing unsafe pickle: {msg}")]
    UnsafePickle {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Building a tensor from the file's data failed.
    #[error("{path}: {cause}")]
    Tensor {
        /// The checkpoint file.
        path: PathBuf,
        /// Why it failed.
        cause: candle_core::Error,
    },
}

impl ModelError {
    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }
    pub(crate) fn tensor(path: &Path) -> impl Fn(candle_core::Error) -> Self + '_ {
        move |cause| ModelError::Tensor {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// Choices the file cannot (or need not) decide.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Element type of the weights and every pass (F32; F64 for the golden tests).
    pub dtype: DType,
    /// Where the weights live and the passes run.
    pub device: Device,
    /// Run at this image size; the position-embedding grid is resized when it differs.
    pub image_size: Option<usize>,
    /// Attention heads, for layouts that do not record them (timm, MAE); default hidden / 64.
    pub heads: Option<usize>,
    /// GELU flavour, overriding what the checkpoint implies.
    pub gelu: Option<Gelu>,
    /// LayerNorm epsilon, overriding the checkpoint's (or its layout's default).
    pub ln_eps: Option<f64>,
    /// The authors' MAE quirk: `fc_norm` applied twice.
    pub double_fc_norm: bool,
    /// Caps on what reading the checkpoint may allocate.
    pub limits: Limits,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::F32,
            device: Device::Cpu,
            image_size: None,
            heads: None,
            gelu: None,
            ln_eps: None,
            double_fc_norm: false,
            limits: Limits::default(),
        }
    }
}

/// The checkpoint layouts neuronpath reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointLayout {
    /// Google's JAX ViT `.npz` (the paper's checkpoints).
    GoogleNpz,
    /// A timm state dict saved with `numpy.savez` (timm names in an `.npz`).
    TimmNpz,
    /// A Hugging Face folder (`config.json` + `model.safetensors` or `pytorch_model.bin`).
    HuggingFace,
    /// A timm state dict in `.safetensors`.
    Timm,
    /// A PyTorch zip pickle (`.pth`) holding a timm state dict, e.g. the MAE checkpoint.
    TorchPickle,
    /// open_clip's names: a hub folder (`open_clip_config.json`), a `.safetensors` file or a
    /// PyTorch zip holding a CLIP (`visual.*`) or its image tower alone.
    OpenClip,
}

/// The model family a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// The paper's ViT (Google, HF `ViTForImageClassification`, timm).
    Vit,
    /// DeiT with its distillation token but one CLS classifier (HF `DeiTForImageClassification`).
    Deit,
    /// DeiT distilled: CLS and distillation heads, logits their mean.
    DeitDistilled,
    /// MAE fine-tuned (mean of patch tokens).
    Mae,
    /// DINOv2 (LayerScale; headless or the [CLS, mean patches] classifier).
    Dinov2,
    /// DINOv2 with register tokens.
    Dinov2Registers,
    /// CLIP's vision tower (pre-LN, post-LN pooled CLS, optional projection).
    Clip,
}

impl CheckpointLayout {
    /// The checkpoint's own name of the module whose output holds layer `layer`'s MLP neurons
    /// (the hidden units after the activation), when the file's tensor names do not say it:
    /// timm `blocks.3.mlp.act`, Hugging Face `vit.encoder.layer.3.intermediate` (`deit.` for
    /// DeiT), Google ViT `Transformer/encoderblock_3/MlpBlock_3/Dense_0` (its output after GELU).
    pub fn neuron_module(self, family: Family, layer: usize) -> String {
        match (self, family) {
            (
                CheckpointLayout::Timm | CheckpointLayout::TimmNpz | CheckpointLayout::TorchPickle,
                _,
            ) => {
                format!("blocks.{layer}.mlp.act")
            }
            (CheckpointLayout::HuggingFace, Family::Deit | Family::DeitDistilled) => {
                format!("deit.encoder.layer.{layer}.intermediate")
            }
            (CheckpointLayout::HuggingFace, Family::Dinov2 | Family::Dinov2Registers) => {
                format!("dinov2.encoder.layer.{layer}.mlp.activation_fn")
            }
            (CheckpointLayout::HuggingFace, Family::Clip) => {
                format!("vision_model.encoder.layers.{layer}.mlp.activation_fn")
            }
            (CheckpointLayout::HuggingFace, _) => format!("vit.encoder.layer.{layer}.intermediate"),
            (CheckpointLayout::GoogleNpz, _) => {
                format!("Transformer/encoderblock_{layer}/MlpBlock_3/Dense_0")
            }
            (CheckpointLayout::OpenClip, _) => {
                format!("visual.transformer.resblocks.{layer}.mlp.gelu")
            }
        }
    }
}

/// Canonical tensors (timm names, f32 on the CPU) plus what the file says about the architecture.
///
/// Beyond plain timm: `cls_token` (1, P, D) holds every prefix token (CLS, then the
/// distillation token or the registers), `pos_embed` has a row for each (zero where the model
/// gives a token no position); `blocks.{i}.ls1.gamma` / `ls2.gamma` are LayerScale, `norm_pre` a
/// LayerNorm before the first block, `head_dist` DeiT's second head; no `head` means a headless
/// backbone (identity head), a `head` without bias a projection.
pub(crate) struct Raw {
    pub family: Family,
    /// How to resize the position grid for another image size.
    pub pos_resize: PosResize,
    /// Prefix tokens after CLS that are registers.
    pub registers: usize,
    /// The output is an embedding (headless or projected), not logits.
    pub embedding: bool,
    pub tensors: HashMap<String, Tensor>,
    pub heads: Option<usize>,
    pub ln_eps: f64,
    pub gelu: Gelu,
    pub pool: Option<Pool>,
    pub class_names: Option<Vec<String>>,
    /// [mean, std] per channel, when the checkpoint records its preprocessing.
    pub normalization: Option<[[f64; 3]; 2]>,
    /// The weights file and, per canonical tensor, the file's name for it (when they differ
    /// from the checkpoint path and the canonical name), for error messages.
    pub origin: Option<(PathBuf, HashMap<String, String>)>,
}

impl Raw {
    /// `tensors` of `family` with the plain ViT's settings (linear position resize, no registers,
    /// logits, LayerNorm eps 1e-6, erf GELU, heads and pooling left to the caller or the options);
    /// readers override what their file says otherwise.
    pub(crate) fn new(family: Family, tensors: HashMap<String, Tensor>) -> Raw {
        Raw {
            family,
            pos_resize: PosResize::Linear,
            registers: 0,
            embedding: false,
            tensors,
            heads: None,
            ln_eps: 1e-6,
            gelu: Gelu::Erf,
            pool: None,
            class_names: None,
            normalization: None,
            origin: None,
        }
    }
}

/// A loaded model and where it came from.
pub struct Loaded {
    /// The model, ready to run.
    pub model: Vit,
    /// The file layout it was read from.
    pub layout: CheckpointLayout,
    /// The model family it holds.
    pub family: Family,
    /// Class names in label order, when the checkpoint records them.
    pub class_names: Option<Vec<String>>,
    /// [mean, std] per RGB channel, when the checkpoint records its preprocessing.
    pub normalization: Option<[[f64; 3]; 2]>,
    /// Per layer, the checkpoint's name of the module whose output holds the MLP neurons
    /// ([`CheckpointLayout::neuron_module`], or the in-memory names of a state dict).
    pub neuron_modules: Vec<String>,
}

/// Which layout a path holds, from its contents (not its extension).
pub fn detect_layout(path: &Path) -> Result<CheckpointLayout, ModelError> {
    let io = |cause| ModelError::Io {
        path: path.to_path_buf(),
        cause,
    };
    if path.is_dir() {
        if path.join("config.json").is_file() && hf::weights_file(path).is_some() {
            return Ok(CheckpointLayout::HuggingFace);
        }
        if open_clip::folder_files(path).is_some() {
            return Ok(CheckpointLayout::OpenClip);
        }
        return Err(ModelError::format(
            path,
            "folder without config.json + model.safetensors or pytorch_model.bin (Hugging Face), or open_clip_config.json + open_clip_model.safetensors or open_clip_pytorch_model.bin (open_clip)",
        ));
    }
    archive::open_regular(path)?;
    let mut head = [0u8; 9];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(io)?;
    if n >= 4 && head[..4] == *b"PK\x03\x04" {
        let names = archive::Archive::open(path, &Limits::default())?.names();
        if names.iter().any(|n| n.ends_with("data.pkl")) {
            return Ok(CheckpointLayout::TorchPickle);
        }
        if names.iter().any(|n| n.ends_with(".npy")) {
            let timm = names.iter().any(|n| n == "cls_token.npy")
                && !names.iter().any(|n| n == "embedding/kernel.npy");
            if timm {
                return Ok(CheckpointLayout::TimmNpz);
            }
            return Ok(CheckpointLayout::GoogleNpz);
        }
        return Err(ModelError::format(
            path,
            "zip file that is neither an .npz nor a PyTorch checkpoint",
        ));
    }
    if n == 9 && head[8] == b'{' {
        let tensors = safetensors_header::read(path)?;
        if tensors.keys().any(|k| k.starts_with("blocks.")) {
            return Ok(CheckpointLayout::Timm);
        }
        if open_clip::has_tower(tensors.keys()) {
            return Ok(CheckpointLayout::OpenClip);
        }
        return Err(ModelError::format(
            path,
            "safetensors file without timm `blocks.*` or open_clip `visual.*` tensors (for Hugging Face, pass the folder)",
        ));
    }
    Err(ModelError::format(
        path,
        "unknown checkpoint layout (expected a Google ViT .npz, a Hugging Face folder, timm .safetensors or a PyTorch .pth)",
    ))
}

/// The files a checkpoint is read from, sorted: the file itself, or a Hugging Face folder's
/// config, preprocessor config and weights (what a content hash of the checkpoint covers).
pub fn checkpoint_files(path: &Path) -> Result<Vec<PathBuf>, ModelError> {
    match path.is_dir() {
        true => hf::files_read(path),
        false => Ok(vec![path.to_path_buf()]),
    }
}

/// Loads any supported checkpoint.
pub fn load_model(path: &Path, opts: &LoadOptions) -> Result<Loaded, ModelError> {
    if !path.exists() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    }
    let mut layout = detect_layout(path)?;
    let raw = match layout {
        CheckpointLayout::GoogleNpz | CheckpointLayout::TimmNpz => {
            google_npz::read(path, &opts.limits)?
        }
        CheckpointLayout::HuggingFace => hf::read(path, &opts.limits)?,
        CheckpointLayout::Timm => torch_pickle::timm_raw(path, safetensors_header::read(path)?)?,
        CheckpointLayout::OpenClip => open_clip::read(path, &opts.limits)?,
        // A PyTorch zip says its layout by its names: open_clip's, else timm's.
        CheckpointLayout::TorchPickle => {
            let tensors = torch_pickle::read_state_dict(path, &opts.limits)?;
            if open_clip::prefix(&tensors).is_some() {
                layout = CheckpointLayout::OpenClip;
                open_clip::raw(path, tensors, None)?
            } else {
                torch_pickle::timm_raw(path, tensors)?
            }
        }
    };
    finish(path, raw, layout, opts)
}

fn finish(
    path: &Path,
    raw: Raw,
    layout: CheckpointLayout,
    opts: &LoadOptions,
) -> Result<Loaded, ModelError> {
    let (class_names, normalization) = (raw.class_names.clone(), raw.normalization);
    let family = raw.family;
    // The file's own name of each block's fc1, when the reader renamed it, says where the block
    // lives (`dinov2.encoder.layer.3.mlp.fc1.weight`, `vit.encoder.layer.3.intermediate.dense.
    // weight`); the layout and family say it otherwise.
    let fc1_names: HashMap<String, String> = raw
        .origin
        .as_ref()
        .map(|(_, names)| names.clone())
        .unwrap_or_default();
    let model = assemble::build(path, raw, opts)?;
    let neuron_modules = (0..model.cfg.layers)
        .map(|l| {
            let file = fc1_names.get(&format!("blocks.{l}.mlp.fc1.weight"));
            let named = matches!(
                layout,
                CheckpointLayout::HuggingFace | CheckpointLayout::OpenClip
            );
            match file.map(String::as_str).filter(|_| named) {
                Some(f) if f.ends_with(".intermediate.dense.weight") => {
                    f.trim_end_matches(".dense.weight").to_string()
                }
                Some(f) if f.ends_with(".mlp.fc1.weight") => {
                    format!("{}.activation_fn", f.trim_end_matches(".fc1.weight"))
                }
                Some(f) if f.ends_with(".mlp.c_fc.weight") => {
                    format!("{}.gelu", f.trim_end_matches(".c_fc.weight"))
                }
                _ => layout.neuron_module(family, l),
            }
        })
        .collect();
    Ok(Loaded {
        model,
        layout,
        family,
        class_names,
        normalization,
        neuron_modules,
    })
}

/// Loads a Hugging Face checkpoint held in memory (the embedded model); `label` names it.
pub fn load_hf_parts(
    label: &Path,
    config: &str,
    safetensors: &[u8],
    preprocessor: Option<&str>,
    opts: &LoadOptions,
) -> Result<Loaded, ModelError> {
    let tensors = safetensors_header::read_bytes(label, safetensors)?;
    let raw = hf::from_parts(label, config, tensors, preprocessor)?;
    finish(label, raw, CheckpointLayout::HuggingFace, opts)
}
