//! Hugging Face `ViTForImageClassification` / plain DeiT folders -> canonical tensors.
use super::{ModelError, Raw};
use crate::model::config::Gelu;
use crate::model::config::Pool;
use candle_core::{Device, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

fn read_text(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path).map_err(|cause| ModelError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// Reads a folder (config.json, model.safetensors, optional preprocessor_config.json).
pub(crate) fn read(dir: &Path) -> Result<Raw, ModelError> {
    let st = dir.join("model.safetensors");
    let src = candle_core::safetensors::load(&st, &Device::Cpu)
        .map_err(|e| ModelError::format(&st, format!("unreadable safetensors: {e}")))?;
    let pre_path = dir.join("preprocessor_config.json");
    let pre = if pre_path.is_file() {
        Some(read_text(&pre_path)?)
    } else {
        None
    };
    from_parts(
        dir,
        &read_text(&dir.join("config.json"))?,
        src,
        pre.as_deref(),
    )
}

/// Mean and std of `preprocessor_config.json`, if it states them.
fn normalization(label: &Path, text: &str) -> Result<Option<[[f64; 3]; 2]>, ModelError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| ModelError::format(label, format!("invalid preprocessor_config.json: {e}")))?;
    let three = |k: &str| -> Option<[f64; 3]> {
        let a = v[k].as_array()?;
        (a.len() == 3)
            .then(|| [a[0].as_f64(), a[1].as_f64(), a[2].as_f64()])
            .and_then(|x| Some([x[0]?, x[1]?, x[2]?]))
    };
    Ok(three("image_mean")
        .zip(three("image_std"))
        .map(|(m, s)| [m, s]))
}

/// Builds the canonical tensors from a config text and the safetensors' tensors; `label` names
/// the checkpoint in errors (a folder, or the embedded model).
pub(crate) fn from_parts(
    label: &Path,
    config: &str,
    src: HashMap<String, Tensor>,
    preprocessor: Option<&str>,
) -> Result<Raw, ModelError> {
    let cfg_path = label.join("config.json");
    let cfg: Value = serde_json::from_str(config)
        .map_err(|e| ModelError::format(&cfg_path, format!("invalid JSON: {e}")))?;
    let st = label.join("model.safetensors");
    let prefix = ["vit", "deit"]
        .into_iter()
        .find(|p| src.contains_key(&format!("{p}.embeddings.cls_token")))
        .ok_or_else(|| ModelError::Missing {
            path: st.clone(),
            name: "vit.embeddings.cls_token".into(),
        })?;
    let take = |name: &str| {
        src.get(name).cloned().ok_or_else(|| ModelError::Missing {
            path: st.clone(),
            name: name.to_string(),
        })
    };
    let t = ModelError::tensor(&st);
    let e = format!("{prefix}.embeddings");
    let mut out = HashMap::new();
    // DeiT keeps a distillation token after CLS (prefix tokens CLS, dist; head reads CLS).
    let mut prefix_tokens = vec![take(&format!("{e}.cls_token"))?];
    if let Some(dist) = src.get(&format!("{e}.distillation_token")) {
        prefix_tokens.push(dist.clone());
    }
    out.insert(
        "cls_token".into(),
        Tensor::cat(&prefix_tokens, 1).map_err(&t)?,
    );
    out.insert(
        "pos_embed".into(),
        take(&format!("{e}.position_embeddings"))?,
    );
    for p in ["weight", "bias"] {
        out.insert(
            format!("patch_embed.proj.{p}"),
            take(&format!("{e}.patch_embeddings.projection.{p}"))?,
        );
        out.insert(
            format!("norm.{p}"),
            take(&format!("{prefix}.layernorm.{p}"))?,
        );
        out.insert(format!("head.{p}"), take(&format!("classifier.{p}"))?);
    }
    let layers = cfg["num_hidden_layers"].as_u64().map(|v| v as usize);
    for i in 0..layers.unwrap_or(usize::MAX) {
        let l = format!("{prefix}.encoder.layer.{i}");
        if layers.is_none() && !src.contains_key(&format!("{l}.layernorm_before.weight")) {
            break;
        }
        let c = format!("blocks.{i}");
        for p in ["weight", "bias"] {
            let qkv = ["query", "key", "value"]
                .iter()
                .map(|q| take(&format!("{l}.attention.attention.{q}.{p}")))
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(
                format!("{c}.attn.qkv.{p}"),
                Tensor::cat(&qkv, 0).map_err(&t)?,
            );
            for (src_name, dst) in [
                ("attention.output.dense", "attn.proj"),
                ("layernorm_before", "norm1"),
                ("layernorm_after", "norm2"),
                ("intermediate.dense", "mlp.fc1"),
                ("output.dense", "mlp.fc2"),
            ] {
                out.insert(
                    format!("{c}.{dst}.{p}"),
                    take(&format!("{l}.{src_name}.{p}"))?,
                );
            }
        }
    }
    let gelu = match cfg["hidden_act"].as_str().unwrap_or("gelu") {
        "gelu" => Gelu::Erf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Gelu::Tanh,
        other => {
            return Err(ModelError::format(
                &cfg_path,
                format!("unsupported hidden_act `{other}`"),
            ))
        }
    };
    let class_names = cfg["id2label"].as_object().and_then(|m| {
        let mut v: Vec<(usize, String)> = m
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
            .collect();
        v.sort();
        let ok = v.iter().enumerate().all(|(i, (k, _))| i == *k);
        ok.then(|| v.into_iter().map(|(_, n)| n).collect())
    });
    Ok(Raw {
        tensors: out,
        heads: cfg["num_attention_heads"].as_u64().map(|v| v as usize),
        ln_eps: cfg["layer_norm_eps"].as_f64().unwrap_or(1e-12),
        gelu,
        pool: Some(Pool::Cls),
        class_names,
        normalization: match preprocessor {
            Some(text) => normalization(label, text)?,
            None => None,
        },
    })
}
