//! Hugging Face `Dinov2Model` / `Dinov2ForImageClassification` and their `WithRegisters`
//! versions -> canonical tensors.
//!
//! DINOv2's blocks are the ViT's plus LayerScale on both branches (`layer_scale{1,2}.lambda1`).
//! Registers sit between CLS and the patches with no position embedding; the classifier reads
//! `[CLS, mean of the patch tokens]` after the final LayerNorm (registers not in the mean); the
//! headless model's output is the final-LayerNorm CLS (`pooler_output`). Position embeddings are
//! resized as transformers does for other image sizes (bicubic; antialiased with registers).
use super::hf_config::{self, layer_count};
use super::hf_source::Source;
use super::{Family, ModelError, PosResize, Raw};
use crate::model::config::Pool;
use candle_core::Tensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

pub(crate) fn raw(cfg_path: &Path, cfg: &Value, src: &Source) -> Result<Raw, ModelError> {
    if cfg["use_swiglu_ffn"].as_bool() == Some(true) {
        return Err(ModelError::format(
            cfg_path,
            "use_swiglu_ffn: the SwiGLU MLP (DINOv2 giant) is not supported",
        ));
    }
    let p = src.prefix(
        &["", "dinov2.", "dinov2_with_registers."],
        "embeddings.cls_token",
    )?;
    let t = ModelError::tensor(src.path);
    let e = format!("{p}embeddings");
    let mut out = HashMap::new();
    let cls = src.take(&format!("{e}.cls_token"))?;
    let pos = src.take(&format!("{e}.position_embeddings"))?;
    let reg_name = format!("{e}.register_tokens");
    let registers = if src.has(&reg_name) {
        let reg = src.take(&reg_name)?;
        if reg.rank() != 3 || cls.rank() != 3 || pos.rank() != 3 {
            return Err(ModelError::format(
                src.path,
                format!(
                    "`{reg_name}` {:?}, `{e}.cls_token` {:?} and `{e}.position_embeddings` {:?} must be (1, n, D)",
                    reg.dims(),
                    cls.dims(),
                    pos.dims()
                ),
            ));
        }
        let r = reg.dim(1).map_err(&t)?;
        let fits = |e: candle_core::Error| {
            ModelError::format(src.path, format!("`{reg_name}` does not fit CLS: {e}"))
        };
        out.insert(
            "cls_token".to_string(),
            Tensor::cat(&[&cls, &reg], 1).map_err(fits)?,
        );
        // Registers get no position: zero rows after the CLS row.
        let d = pos.dim(2).map_err(&t)?;
        let zeros = Tensor::zeros((1, r, d), pos.dtype(), pos.device()).map_err(&t)?;
        let n = pos.dim(1).map_err(&t)?;
        if n < 2 {
            return Err(ModelError::format(
                src.path,
                format!("`{e}.position_embeddings` has {n} rows"),
            ));
        }
        let head = pos.narrow(1, 0, 1).map_err(&t)?;
        let rest = pos.narrow(1, 1, n - 1).map_err(&t)?;
        out.insert(
            "pos_embed".to_string(),
            Tensor::cat(&[&head, &zeros, &rest], 1).map_err(&t)?,
        );
        r
    } else {
        out.insert("cls_token".to_string(), cls);
        out.insert("pos_embed".to_string(), pos);
        0
    };
    src.embeddings(&mut out, &e)?;
    src.copy(&mut out, &format!("{p}layernorm"), "norm")?;
    let layers = layer_count(cfg_path, cfg, |i| {
        src.has(&format!("{p}encoder.layer.{i}.norm1.weight"))
    })?;
    for i in 0..layers {
        let l = format!("{p}encoder.layer.{i}");
        src.block(
            &mut out,
            (&l, i),
            ("attention.attention", ["query", "key", "value"]),
            &[
                ("attention.output.dense", "attn.proj"),
                ("norm1", "norm1"),
                ("norm2", "norm2"),
                ("mlp.fc1", "mlp.fc1"),
                ("mlp.fc2", "mlp.fc2"),
            ],
        )?;
        let c = format!("blocks.{i}");
        for (k, to) in [(1, "ls1"), (2, "ls2")] {
            let name = format!("{l}.layer_scale{k}.lambda1");
            out.insert(format!("{c}.{to}.gamma"), src.take(&name)?);
            src.note(&format!("{c}.{to}.gamma"), &name);
        }
    }
    let classifier = src.has("classifier.weight");
    if classifier {
        src.copy(&mut out, "classifier", "head")?;
    }
    let family = match registers {
        0 => Family::Dinov2,
        _ => Family::Dinov2Registers,
    };
    Ok(Raw {
        pos_resize: match cfg["model_type"].as_str() {
            Some("dinov2_with_registers") => PosResize::BicubicAntialias,
            _ => PosResize::Bicubic,
        },
        registers,
        embedding: !classifier,
        pool: Some(match classifier {
            true => Pool::ClsMeanPatch,
            false => Pool::Cls,
        }),
        ..hf_config::raw((cfg_path, cfg), family, out, (1e-6, "gelu"))?
    })
}
