//! Hugging Face CLIP vision towers (`CLIPVisionModel`, `CLIPVisionModelWithProjection`, or the
//! vision half of a full `CLIPModel` folder) -> canonical tensors.
//!
//! CLIP's blocks are the ViT's with quick-GELU by default; a LayerNorm (`pre_layrnorm`) runs on
//! the embeddings before the first block, the pooled output is the post-LayerNorm CLS and, with a
//! projection, `visual_projection` (no bias) of it. The patch embedding has no bias.
use super::hf_config::{self, layer_count};
use super::hf_source::Source;
use super::{Family, ModelError, PosResize, Raw};
use crate::model::config::Pool;
use candle_core::Tensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// CLIP's preprocessing mean and std (what its image processor uses), when the folder has no
/// preprocessor_config.json.
const CLIP_NORMALIZATION: [[f64; 3]; 2] = [
    [0.48145466, 0.4578275, 0.40821073],
    [0.26862954, 0.26130258, 0.27577711],
];

pub(crate) fn raw(cfg_path: &Path, cfg: &Value, src: &Source) -> Result<Raw, ModelError> {
    // A full CLIPModel keeps the tower's settings under vision_config.
    let cfg = match cfg["model_type"].as_str() {
        Some("clip") => &cfg["vision_config"],
        _ => cfg,
    };
    let p = src.prefix(&["vision_model.", ""], "embeddings.class_embedding")?;
    let t = ModelError::tensor(src.path);
    let e = format!("{p}embeddings");
    let mut out = HashMap::new();
    let cls = src.take(&format!("{e}.class_embedding"))?;
    let pos = src.take(&format!("{e}.position_embedding.weight"))?;
    let patch = src.take(&format!("{e}.patch_embedding.weight"))?;
    let d = cls.elem_count();
    let shaped = |name: &str, x: Tensor, shape: (usize, usize, usize)| {
        x.reshape(shape).map_err(|_| ModelError::Shape {
            path: src.path.to_path_buf(),
            name: name.to_string(),
            got: x.dims().to_vec(),
            expected: vec![shape.0, shape.1, shape.2],
        })
    };
    out.insert(
        "cls_token".into(),
        shaped(&format!("{e}.class_embedding"), cls, (1, 1, d))?,
    );
    let rows = pos.dims().first().copied().unwrap_or(0);
    out.insert(
        "pos_embed".into(),
        shaped(&format!("{e}.position_embedding.weight"), pos, (1, rows, d))?,
    );
    let width = patch.dims().first().copied().unwrap_or(0);
    out.insert(
        "patch_embed.proj.bias".into(),
        Tensor::zeros(width, patch.dtype(), patch.device()).map_err(&t)?,
    );
    out.insert("patch_embed.proj.weight".into(), patch);
    src.note(
        "patch_embed.proj.weight",
        &format!("{e}.patch_embedding.weight"),
    );
    src.note("cls_token", &format!("{e}.class_embedding"));
    src.note("pos_embed", &format!("{e}.position_embedding.weight"));
    src.copy(&mut out, &format!("{p}pre_layrnorm"), "norm_pre")?;
    src.copy(&mut out, &format!("{p}post_layernorm"), "norm")?;
    let layers = layer_count(cfg_path, cfg, |i| {
        src.has(&format!("{p}encoder.layers.{i}.layer_norm1.weight"))
    })?;
    for i in 0..layers {
        src.block(
            &mut out,
            (&format!("{p}encoder.layers.{i}"), i),
            ("self_attn", ["q_proj", "k_proj", "v_proj"]),
            &[
                ("self_attn.out_proj", "attn.proj"),
                ("layer_norm1", "norm1"),
                ("layer_norm2", "norm2"),
                ("mlp.fc1", "mlp.fc1"),
                ("mlp.fc2", "mlp.fc2"),
            ],
        )?;
    }
    if src.has("visual_projection.weight") {
        out.insert("head.weight".into(), src.take("visual_projection.weight")?);
        src.note("head.weight", "visual_projection.weight");
    }
    Ok(Raw {
        pos_resize: PosResize::Bicubic,
        embedding: true,
        pool: Some(Pool::Cls),
        normalization: Some(CLIP_NORMALIZATION),
        ..hf_config::raw((cfg_path, cfg), Family::Clip, out, (1e-5, "quick_gelu"))?
    })
}
