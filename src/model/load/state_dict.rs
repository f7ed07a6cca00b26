//! A model from tensors already in memory (a PyTorch `state_dict()` handed over as arrays), with
//! timm or Hugging Face names, and a configuration given as JSON (what the file layouts store
//! beside their tensors).
use super::{finish, hf, torch_pickle, CheckpointLayout, LoadOptions, Loaded, ModelError};
use crate::model::config::Gelu;
use crate::model::config::Pool;
use candle_core::Tensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Builds a model from `tensors`. Hugging Face names (`vit.*` / `deit.*`, `classifier.*`) take
/// `config` as the model's `config.json` (`model.config.to_dict()`); its `image_mean` /
/// `image_std`, when present, set the normalisation. timm names (`blocks.*`) read these keys of
/// `config` (timm's `pretrained_cfg` works as is, other keys are ignored):
/// `num_heads` (or `num_attention_heads`), `layer_norm_eps`, `hidden_act` (`gelu` / `gelu_tanh`),
/// `global_pool` (`token` / `avg`), `mean` + `std` (or `image_mean` + `image_std`),
/// `class_names` (or `label_names`, or `id2label`). open_clip names (`visual.*`, or the image
/// tower's own) take `config` as `open_clip_config.json` (`model_cfg`, `preprocess_cfg`), or
/// open_clip's defaults when it has no `model_cfg`. `label` names the model in errors.
pub fn from_state_dict(
    label: &Path,
    tensors: HashMap<String, Tensor>,
    config: &Value,
    opts: &LoadOptions,
) -> Result<Loaded, ModelError> {
    let bad = |msg: String| ModelError::format(label, msg);
    if !config.is_object() {
        return Err(bad("the configuration must be a JSON object".into()));
    }
    let hf_names = ["vit", "deit"]
        .iter()
        .any(|p| tensors.contains_key(&format!("{p}.embeddings.cls_token")));
    if hf_names {
        let (tensors, renamed) = classic_hf_names(tensors);
        let text = config.to_string();
        let raw = hf::from_parts(label, &text, tensors, Some(&text))?;
        let mut loaded = finish(label, raw, CheckpointLayout::HuggingFace, opts)?;
        if let Some(prefix) = renamed {
            loaded.neuron_modules = (0..loaded.model.cfg.layers)
                .map(|l| format!("{prefix}.layers.{l}.mlp.activation_fn"))
                .collect();
        }
        return Ok(loaded);
    }
    if super::open_clip::prefix(&tensors).is_some() {
        let cfg = config.get("model_cfg").map(|_| (label, config));
        let raw = super::open_clip::raw(label, tensors, cfg)?;
        return finish(label, raw, CheckpointLayout::OpenClip, opts);
    }
    if !tensors.keys().any(|k| k.starts_with("blocks.")) {
        let mut some: Vec<&String> = tensors.keys().collect();
        some.sort();
        some.truncate(3);
        return Err(bad(format!(
            "neither timm (`blocks.*`) nor Hugging Face (`vit.*` / `deit.*`) tensor names (first names: {some:?})"
        )));
    }
    let mut raw = torch_pickle::timm_raw(label, tensors)?;
    let int = |keys: &[&str]| -> Result<Option<usize>, ModelError> {
        match keys.iter().find_map(|k| config.get(*k).map(|v| (*k, v))) {
            None | Some((_, Value::Null)) => Ok(None),
            Some((k, v)) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(bad(format!(
                    "config `{k}` must be a positive integer, not {v}"
                ))),
            },
        }
    };
    raw.heads = int(&["num_heads", "num_attention_heads"])?;
    match config.get("layer_norm_eps") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_f64() {
            Some(e) if e > 0.0 && e.is_finite() => raw.ln_eps = e,
            _ => return Err(bad(format!("config `layer_norm_eps` must be > 0, not {v}"))),
        },
    }
    match config.get("hidden_act").and_then(|v| v.as_str()) {
        None | Some("gelu") => raw.gelu = Gelu::Erf,
        Some("gelu_tanh" | "gelu_new" | "gelu_pytorch_tanh") => raw.gelu = Gelu::Tanh,
        Some(other) => {
            return Err(bad(format!(
                "config `hidden_act` `{other}` is not supported (gelu, gelu_tanh)"
            )))
        }
    }
    match config.get("global_pool").and_then(|v| v.as_str()) {
        None => {}
        Some("token") => raw.pool = Some(Pool::Cls),
        Some("avg") => raw.pool = Some(Pool::MeanPatch),
        Some(other) => {
            return Err(bad(format!(
                "config `global_pool` `{other}` is not supported (token, avg)"
            )))
        }
    }
    let three = |k: &str| -> Result<Option<[f64; 3]>, ModelError> {
        match config.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_array()
                .filter(|a| a.len() == 3)
                .and_then(|a| Some([a[0].as_f64()?, a[1].as_f64()?, a[2].as_f64()?]))
                .map(Some)
                .ok_or_else(|| bad(format!("config `{k}` must be three numbers, not {v}"))),
        }
    };
    let mean = three("mean")?.or(three("image_mean")?);
    let std = three("std")?.or(three("image_std")?);
    raw.normalization = match (mean, std) {
        (Some(m), Some(s)) => Some([m, s]),
        (None, None) => None,
        _ => {
            return Err(bad(
                "config gives a mean without a std, or a std without a mean".into(),
            ))
        }
    };
    raw.class_names = class_names(config).map_err(bad)?;
    finish(label, raw, CheckpointLayout::Timm, opts)
}

/// `class_names` / `label_names` (a list of strings) or `id2label` (index -> name, all of 0..n).
fn class_names(config: &Value) -> Result<Option<Vec<String>>, String> {
    for k in ["class_names", "label_names"] {
        if let Some(v) = config.get(k).filter(|v| !v.is_null()) {
            return v
                .as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
                .map(Some)
                .ok_or_else(|| format!("config `{k}` must be a list of strings"));
        }
    }
    let Some(map) = config.get("id2label").and_then(|v| v.as_object()) else {
        return Ok(None);
    };
    let mut v: Vec<(usize, String)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
        .collect();
    v.sort();
    let complete = v.len() == map.len() && v.iter().enumerate().all(|(i, (k, _))| i == *k);
    if !complete {
        return Err("config `id2label` must map 0..n-1 to names".into());
    }
    Ok(Some(v.into_iter().map(|(_, n)| n).collect()))
}

/// transformers 5 names a ViT's blocks differently in memory than in its files
/// (`vit.layers.3.attention.q_proj`, `.mlp.fc1` for the files' `vit.encoder.layer.3.attention.
/// attention.query`, `.intermediate.dense`): maps them to the file names the reader knows.
/// Returns the model prefix (`vit` / `deit`) when it renamed anything.
fn classic_hf_names(tensors: HashMap<String, Tensor>) -> (HashMap<String, Tensor>, Option<String>) {
    const PARTS: &[(&str, &str)] = &[
        ("attention.q_proj.", "attention.attention.query."),
        ("attention.k_proj.", "attention.attention.key."),
        ("attention.v_proj.", "attention.attention.value."),
        ("attention.o_proj.", "attention.output.dense."),
        ("mlp.fc1.", "intermediate.dense."),
        ("mlp.fc2.", "output.dense."),
        ("layernorm_before.", "layernorm_before."),
        ("layernorm_after.", "layernorm_after."),
    ];
    let mut renamed = None;
    let out = tensors
        .into_iter()
        .map(|(name, t)| {
            for prefix in ["vit", "deit"] {
                let Some(rest) = name.strip_prefix(&format!("{prefix}.layers.")) else {
                    continue;
                };
                let Some((layer, part)) = rest.split_once('.') else {
                    continue;
                };
                for (new, old) in PARTS {
                    if let Some(param) = part.strip_prefix(new) {
                        renamed = Some(prefix.to_string());
                        return (format!("{prefix}.encoder.layer.{layer}.{old}{param}"), t);
                    }
                }
            }
            (name, t)
        })
        .collect();
    (out, renamed)
}
