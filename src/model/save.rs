//! Writes a [`Vit`] as a Hugging Face `ViTForImageClassification` folder: the exact inverse of
//! the Hugging Face loader, so `load_model` of the folder gives back the same weights.
use crate::model::config::Gelu;
use crate::model::config::Pool;
use crate::model::load::ModelError;
use crate::model::ops::{LayerNorm, Linear};
use crate::model::vit::Vit;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// The input pipeline the model expects, recorded in `preprocessor_config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessing {
    /// Per-channel mean subtracted from pixels scaled to [0, 1] (RGB).
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation the centred pixels are divided by (RGB).
    pub image_std: [f64; 3],
    /// Square input side in pixels.
    pub size: usize,
}

/// Writes `config.json`, `model.safetensors` (f32, Hugging Face names) and
/// `preprocessor_config.json` into `dir` (created if needed). Only single-CLS-token models with
/// CLS pooling have a `ViTForImageClassification` equivalent.
pub fn save_hf(
    model: &Vit,
    dir: &Path,
    class_names: Option<&[String]>,
    pre: &Preprocessing,
) -> Result<(), ModelError> {
    let c = &model.cfg;
    if c.prefix_tokens != 1 || c.pool != Pool::Cls || c.double_fc_norm {
        return Err(ModelError::format(
            dir,
            "only CLS-pooled models with one prefix token can be written as ViTForImageClassification",
        ));
    }
    if model.blocks.iter().any(|b| b.cls_mask.is_some()) {
        // Hugging Face has no place for them; dropping them would change the model.
        return Err(ModelError::format(
            dir,
            "pruning masks (cls_mask) cannot be written as ViTForImageClassification",
        ));
    }
    if let Some(names) = class_names {
        if names.len() != c.num_classes {
            return Err(ModelError::format(
                dir,
                format!("{} class names for {} classes", names.len(), c.num_classes),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|cause| ModelError::Io {
        path: dir.to_path_buf(),
        cause,
    })?;
    let st = dir.join("model.safetensors");
    let tensors = hf_tensors(model).map_err(ModelError::tensor(&st))?;
    write_safetensors(&st, &tensors, "ViTForImageClassification")?;
    write_json(&dir.join("config.json"), &config_json(model, class_names))?;
    write_json(
        &dir.join("preprocessor_config.json"),
        &preprocessor_json(pre),
    )
}

/// `tensors` as a safetensors file at `st`, atomically, marked as ours with `architecture` (so a
/// later save may replace it without --force).
pub(crate) fn write_safetensors(
    st: &Path,
    tensors: &HashMap<String, Tensor>,
    architecture: &str,
) -> Result<(), ModelError> {
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (
            crate::output::MARK_KEY.to_string(),
            architecture.to_string(),
        ),
    ]);
    // Serialised in memory: safetensors' own file writer creates owner-only (0600) files.
    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| ModelError::format(st, format!("cannot serialise: {e}")))?;
    write(st, &bytes)
}

pub(crate) fn write_json(path: &Path, value: &Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    write(path, text.as_bytes())
}

/// Atomically (temporary file, rename), the error naming the file.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    crate::output::write_atomic(path, bytes).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        cause: std::io::Error::other(e.to_string()),
    })
}

fn config_json(model: &Vit, class_names: Option<&[String]>) -> Value {
    let c = &model.cfg;
    let (id2label, label2id) = label_maps(c.num_classes, class_names);
    json!({
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.channels,
        "hidden_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "intermediate_size": c.mlp_dim,
        "hidden_act": match c.gelu {
            Gelu::Erf => "gelu",
            Gelu::Tanh => "gelu_pytorch_tanh",
            Gelu::Quick => "quick_gelu",
        },
        "layer_norm_eps": c.ln_eps,
        "qkv_bias": true,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "num_labels": c.num_classes,
        "id2label": id2label,
        "label2id": label2id,
        "problem_type": "single_label_classification",
        "torch_dtype": "float32",
    })
}

/// `id2label` and `label2id` of `classes` classes (`LABEL_i` without names).
pub(crate) fn label_maps(classes: usize, class_names: Option<&[String]>) -> (Value, Value) {
    let names: Vec<String> = match class_names {
        Some(n) => n.to_vec(),
        None => (0..classes).map(|i| format!("LABEL_{i}")).collect(),
    };
    let id2label: Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i.to_string(), json!(n)))
        .collect();
    let label2id: Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), json!(i)))
        .collect();
    (Value::Object(id2label), Value::Object(label2id))
}

pub(crate) fn preprocessor_json(pre: &Preprocessing) -> Value {
    json!({
        "image_processor_type": "ViTImageProcessor",
        "do_resize": true,
        "size": {"height": pre.size, "width": pre.size},
        "resample": 2,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": pre.image_mean,
        "image_std": pre.image_std,
    })
}

/// The model's tensors under their Hugging Face names, f32 contiguous on the CPU.
fn hf_tensors(model: &Vit) -> candle_core::Result<HashMap<String, Tensor>> {
    let c = &model.cfg;
    let mut out = HashMap::new();
    let mut put = |name: String, t: &Tensor| -> candle_core::Result<()> {
        let t = t
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .contiguous()?;
        out.insert(name, t);
        Ok(())
    };
    let e = "vit.embeddings";
    put(format!("{e}.cls_token"), &model.prefix.unsqueeze(0)?)?;
    put(format!("{e}.position_embeddings"), &model.pos.unsqueeze(0)?)?;
    let (d, ch, p) = (c.hidden, c.channels, c.patch_size);
    let pw = model.patch.weight.reshape((d, ch, p, p))?;
    put(format!("{e}.patch_embeddings.projection.weight"), &pw)?;
    put(
        format!("{e}.patch_embeddings.projection.bias"),
        bias(&model.patch, d)?.as_ref(),
    )?;
    let mut norm = |name: &str, ln: &LayerNorm| -> candle_core::Result<()> {
        put(format!("{name}.weight"), &ln.weight)?;
        put(format!("{name}.bias"), &ln.bias)
    };
    for (i, b) in model.blocks.iter().enumerate() {
        let l = format!("vit.encoder.layer.{i}");
        norm(&format!("{l}.layernorm_before"), &b.ln_att)?;
        norm(&format!("{l}.layernorm_after"), &b.ln_ffn)?;
    }
    norm("vit.layernorm", &model.norm)?;
    let mut linear = |name: &str, lin: &Linear, out_dim: usize| -> candle_core::Result<()> {
        put(format!("{name}.weight"), &lin.weight)?;
        put(format!("{name}.bias"), bias(lin, out_dim)?.as_ref())
    };
    for (i, b) in model.blocks.iter().enumerate() {
        let l = format!("vit.encoder.layer.{i}");
        // The fused (3D, D) projection is query, key, value stacked in that order.
        for (j, part) in ["query", "key", "value"].into_iter().enumerate() {
            let w = b.qkv.weight.narrow(0, j * d, d)?;
            let bq = bias(&b.qkv, 3 * d)?.narrow(0, j * d, d)?;
            let name = format!("{l}.attention.attention.{part}");
            linear(&name, &Linear::new(w, Some(bq)), d)?;
        }
        linear(&format!("{l}.attention.output.dense"), &b.proj, d)?;
        linear(&format!("{l}.intermediate.dense"), &b.fc1, c.mlp_dim)?;
        linear(&format!("{l}.output.dense"), &b.fc2, d)?;
    }
    linear("classifier", &model.head, c.num_classes)?;
    Ok(out)
}

/// The layer's bias, zeros when it has none (Hugging Face always stores one; qkv_bias is true).
pub(crate) fn bias(
    lin: &Linear,
    out_dim: usize,
) -> candle_core::Result<std::borrow::Cow<'_, Tensor>> {
    Ok(match &lin.bias {
        Some(b) => std::borrow::Cow::Borrowed(b),
        None => std::borrow::Cow::Owned(Tensor::zeros(
            out_dim,
            lin.weight.dtype(),
            lin.weight.device(),
        )?),
    })
}
