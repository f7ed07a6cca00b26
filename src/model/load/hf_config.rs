//! config.json against the weights: every size the config states must be a positive integer and
//! agree with the tensors, so that a config that was edited, truncated or belongs to another
//! checkpoint is an error naming the key, never a silently different model (a readers' default
//! used in place of a value of the wrong type, a layer count ignored). Also the two settings every
//! reader takes from the config: the layer count and the activation.
use super::{Family, ModelError, Raw};
use crate::model::config::Gelu;
use candle_core::Tensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// Keys whose value, when present and not null, must be a positive integer.
const POSITIVE: [&str; 7] = [
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_hidden_layers",
    "patch_size",
    "image_size",
    "num_channels",
];

/// Checks the (vision) config `cfg` of `cfg_path` against the canonical tensors of `raw`.
pub(crate) fn check(cfg_path: &Path, cfg: &Value, raw: &Raw) -> Result<(), ModelError> {
    let bad = |msg: String| Err(ModelError::format(cfg_path, msg));
    let cfg = match cfg["model_type"].as_str() {
        Some("clip") if cfg["vision_config"].is_object() => &cfg["vision_config"],
        _ => cfg,
    };
    let Some(obj) = cfg.as_object() else {
        return bad("not a JSON object".into());
    };
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let mut stated = std::collections::HashMap::new();
    for key in POSITIVE {
        if let Some(v) = get(key) {
            match v.as_u64() {
                Some(n) if n > 0 => {
                    stated.insert(key, n as usize);
                }
                _ => return bad(format!("{key} is {v}, expected a positive integer")),
            }
        }
    }
    // Its range is checked with the option's (`--ln-eps`) when the model is built.
    if let Some(v) = get("layer_norm_eps").filter(|v| !v.is_number()) {
        return bad(format!("layer_norm_eps is {v}, expected a positive number"));
    }
    if let Some(v) = get("num_labels") {
        if v.as_u64().is_none() {
            return bad(format!(
                "num_labels is {v}, expected a non-negative integer"
            ));
        }
    }
    let dims = |name: &str| raw.tensors.get(name).map(|t| t.dims().to_vec());
    let agree = |key: &str, tensor: &str, found: Option<usize>| match (stated.get(key), found) {
        (Some(&n), Some(f)) if n != f => {
            bad(format!("{key} is {n} but the weights' {tensor} says {f}"))
        }
        _ => Ok(()),
    };
    let pe = dims("patch_embed.proj.weight").filter(|d| d.len() == 4);
    let patch = pe.as_ref().map(|d| d[2]);
    agree("hidden_size", "patch_embed", pe.as_ref().map(|d| d[0]))?;
    agree("num_channels", "patch_embed", pe.as_ref().map(|d| d[1]))?;
    agree("patch_size", "patch_embed", patch)?;
    let fc1 = dims("blocks.0.mlp.fc1.weight").filter(|d| d.len() == 2);
    agree("intermediate_size", "mlp fc1", fc1.map(|d| d[0]))?;
    if let (Some(&size), Some(p)) = (stated.get("image_size"), patch.filter(|&p| p > 0)) {
        // The position table holds the grid the checkpoint was trained at, after its prefix
        // tokens (CLS, and a distillation token for DeiT).
        let prefix = dims("cls_token")
            .and_then(|d| d.get(1).copied())
            .unwrap_or(1);
        let rows = dims("pos_embed").and_then(|d| d.get(1).copied());
        let grid = size / p;
        if let Some(rows) = rows {
            if size % p != 0 || grid * grid + prefix != rows {
                return bad(format!(
                    "image_size is {size} (a {grid}x{grid} grid of {p}-pixel patches) but the weights' position table has {rows} rows ({prefix} prefix token(s))"
                ));
            }
        }
    }
    // The classifier's rows against the classes the config names (not a projection head:
    // CLIP's embedding is no set of classes).
    let classifier = dims("head.weight").filter(|_| !raw.embedding);
    if let Some(rows) = classifier.and_then(|d| d.first().copied()) {
        let labels = get("id2label")
            .and_then(Value::as_object)
            .map(|m| ("id2label", m.len()));
        let num = get("num_labels").and_then(Value::as_u64);
        for (key, n) in labels
            .into_iter()
            .chain(num.map(|n| ("num_labels", n as usize)))
        {
            if n != rows {
                return bad(format!(
                    "{key} gives {n} classes but the classifier has {rows} outputs"
                ));
            }
        }
    }
    Ok(())
}

/// The number of layers: config.json's `num_hidden_layers`, else counted from `exists(i)`.
/// A config that states fewer layers than the weights hold is an error, not a silent truncation.
pub(crate) fn layer_count(
    cfg_path: &Path,
    cfg: &Value,
    exists: impl Fn(usize) -> bool,
) -> Result<usize, ModelError> {
    let found = (0..).take_while(|&i| exists(i)).count();
    match cfg.get("num_hidden_layers") {
        None | Some(Value::Null) => Ok(found),
        Some(v) => match v.as_u64() {
            Some(n) if n as usize == found => Ok(found),
            // Fewer found: the missing layer's first tensor is reported by name later.
            Some(n) if (n as usize) > found && n <= 4096 => Ok(n as usize),
            _ => Err(ModelError::format(
                cfg_path,
                format!("num_hidden_layers is {v} but the weights hold {found} layers"),
            )),
        },
    }
}

/// `tensors` of `family` with the settings config.json states: the heads, the LayerNorm eps and the
/// activation (`ln_eps` and `act` are the family's defaults when the config has none).
pub(crate) fn raw(
    (cfg_path, cfg): (&Path, &Value),
    family: Family,
    tensors: HashMap<String, Tensor>,
    (ln_eps, act): (f64, &str),
) -> Result<Raw, ModelError> {
    Ok(Raw {
        heads: cfg["num_attention_heads"].as_u64().map(|v| v as usize),
        ln_eps: cfg["layer_norm_eps"].as_f64().unwrap_or(ln_eps),
        gelu: activation(cfg_path, cfg, act)?,
        ..Raw::new(family, tensors)
    })
}

/// config.json's `hidden_act` (`default` when absent).
pub(crate) fn activation(cfg_path: &Path, cfg: &Value, default: &str) -> Result<Gelu, ModelError> {
    match cfg["hidden_act"].as_str().unwrap_or(default) {
        "gelu" => Ok(Gelu::Erf),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Gelu::Tanh),
        "quick_gelu" => Ok(Gelu::Quick),
        other => Err(ModelError::format(
            cfg_path,
            format!("unsupported hidden_act `{other}`"),
        )),
    }
}
