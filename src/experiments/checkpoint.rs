//! Writes a [`Vit`] (pruning masks included) as a timm-layout `.safetensors` file with exactly
//! the canonical names the loader reads, so `neuronpath predict --model FILE` runs it.
//!
//! timm files do not record the head count, LayerNorm epsilon or GELU flavour: the loader
//! assumes hidden/64 heads, eps 1e-6 (1e-5 with a pre-norm, timm's CLIP towers) and erf GELU.
//! [`load_flags`] lists the options that reproduce the model when it differs; they are also
//! stored in the file's metadata.
//!
//! The other heads are written so that their shapes say them: registers as timm's `reg_token`,
//! DINOv2's [CLS, mean of patches] classifier as a `head` twice the token width, a projection or
//! backbone (an embedding) as a `head` without bias.
use super::error::{invalid, ExperimentError, Result};
use crate::model::ops::{LayerNorm, Linear};
use crate::model::{Gelu, Pool, Vit, VitConfig};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The timm loader's assumptions about what a timm file does not say.
const TIMM_LN_EPS: f64 = 1e-6;
const TIMM_CLIP_LN_EPS: f64 = 1e-5;
const TIMM_HEAD_DIM: usize = 64;

/// Command-line options `predict`/`discover` need to load the written file as this model.
pub fn load_flags(cfg: &VitConfig) -> Vec<String> {
    let mut f = Vec::new();
    if cfg.hidden / TIMM_HEAD_DIM != cfg.heads {
        f.push(format!("--heads {}", cfg.heads));
    }
    let assumed = match cfg.pre_norm {
        true => TIMM_CLIP_LN_EPS,
        false => TIMM_LN_EPS,
    };
    if cfg.ln_eps != assumed {
        f.push(format!("--ln-eps {:e}", cfg.ln_eps));
    }
    match cfg.gelu {
        Gelu::Erf => {}
        Gelu::Tanh => f.push("--gelu tanh".into()),
        Gelu::Quick => f.push("--gelu quick".into()),
    }
    f
}

/// Tensors under their timm names, on the CPU, in the model's element type.
struct Tensors(HashMap<String, Tensor>);

impl Tensors {
    fn put(&mut self, name: String, t: &Tensor) -> candle_core::Result<()> {
        self.0
            .insert(name, t.to_device(&Device::Cpu)?.contiguous()?);
        Ok(())
    }
    fn linear(&mut self, name: &str, l: &Linear) -> candle_core::Result<()> {
        self.put(format!("{name}.weight"), &l.weight)?;
        let out_dim = l.weight.dim(0)?;
        match &l.bias {
            Some(b) => self.put(format!("{name}.bias"), b),
            None => self.put(
                format!("{name}.bias"),
                &Tensor::zeros(out_dim, l.weight.dtype(), &Device::Cpu)?,
            ),
        }
    }
    fn norm(&mut self, name: &str, n: &LayerNorm) -> candle_core::Result<()> {
        self.put(format!("{name}.weight"), &n.weight)?;
        self.put(format!("{name}.bias"), &n.bias)
    }
}

fn gather(model: &Vit) -> candle_core::Result<HashMap<String, Tensor>> {
    let c = &model.cfg;
    let mut t = Tensors(HashMap::new());
    // Registers (after CLS) go to timm's reg_token, so that the loader knows them as registers.
    let r = c.registers;
    let lead = c.prefix_tokens - r;
    t.put(
        "cls_token".into(),
        &model.prefix.narrow(0, 0, lead)?.unsqueeze(0)?,
    )?;
    if r > 0 {
        t.put(
            "reg_token".into(),
            &model.prefix.narrow(0, lead, r)?.unsqueeze(0)?,
        )?;
    }
    t.put("pos_embed".into(), &model.pos.unsqueeze(0)?)?;
    // The Vit holds the patch conv as a (D, C*P*P) linear map; timm stores the conv kernel.
    t.linear("patch_embed.proj", &model.patch)?;
    let (d, p) = (c.hidden, c.patch_size);
    t.put(
        "patch_embed.proj.weight".into(),
        &model.patch.weight.reshape((d, c.channels, p, p))?,
    )?;
    for (i, b) in model.blocks.iter().enumerate() {
        let n = format!("blocks.{i}");
        t.norm(&format!("{n}.norm1"), &b.ln_att)?;
        t.linear(&format!("{n}.attn.qkv"), &b.qkv)?;
        t.linear(&format!("{n}.attn.proj"), &b.proj)?;
        t.norm(&format!("{n}.norm2"), &b.ln_ffn)?;
        t.linear(&format!("{n}.mlp.fc1"), &b.fc1)?;
        t.linear(&format!("{n}.mlp.fc2"), &b.fc2)?;
        if let Some(m) = &b.cls_mask {
            t.put(format!("{n}.mlp.cls_mask"), m)?;
        }
    }
    let final_norm = match c.pool {
        Pool::MeanPatch => "fc_norm",
        _ => "norm",
    };
    t.norm(final_norm, &model.norm)?;
    match c.embedding {
        // No bias: the loader reads the head as a projection (or identity) to an embedding.
        true => t.put("head.weight".into(), &model.head.weight)?,
        false => t.linear("head", &model.head)?,
    }
    if let Some(h) = &model.head_dist {
        t.linear("head_dist", h)?;
    }
    if let Some(n) = &model.pre_norm {
        t.norm("norm_pre", n)?;
    }
    Ok(t.0)
}

/// Writes `model` to `path` in its own element type (so an f64 model round-trips exactly).
/// Each block's `cls_mask`, if any, is written as `blocks.{i}.mlp.cls_mask`; `note` is stored in
/// the metadata under `neuronpath`, with the configuration and the load flags.
pub fn save_timm(model: &Vit, path: &Path, note: &serde_json::Value) -> Result<()> {
    let c = &model.cfg;
    if c.double_fc_norm {
        invalid!("a model with the doubled fc_norm (compatibility mode) has no timm equivalent");
    }
    if c.embedding && model.head.bias.is_some() {
        invalid!("an embedding head with a bias has no timm equivalent");
    }
    let tensors = gather(model)
        .map_err(|e| ExperimentError::Invalid(format!("cannot gather the model's tensors: {e}")))?;
    let meta =
        serde_json::json!({"config": c, "load_flags": load_flags(c).join(" "), "note": note});
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("neuronpath".to_string(), meta.to_string()),
    ]);
    let bytes = safetensors::serialize(&tensors, Some(metadata)).map_err(|source| {
        ExperimentError::Checkpoint {
            path: path.to_path_buf(),
            source,
        }
    })?;
    crate::output::write_atomic(path, &bytes)?;
    Ok(())
}
