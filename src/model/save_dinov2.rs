//! Writes a DINOv2 [`Vit`] (with or without registers) as a Hugging Face folder:
//! `Dinov2ForImageClassification` (or the `WithRegisters` one) for a classifier, `Dinov2Model` for
//! a headless backbone. The inverse of the DINOv2 reader, so `load_model` gives back the same
//! model, and transformers loads the same network.
//!
//! The model holds LayerScale folded into each branch's output projection: the folder stores the
//! folded projections and `lambda1 = 1`. The position grid is written at the model's image size.
//! A classifier on CLS alone (a probe) is written as DINOv2's `[CLS, mean of patches]` head with
//! zero weights on the patch mean, which computes the same logits.
use crate::model::config::{Gelu, Pool};
use crate::model::load::ModelError;
use crate::model::ops::{LayerNorm, Linear};
use crate::model::save::{
    bias, label_maps, preprocessor_json, write_json, write_safetensors, Preprocessing,
};
use crate::model::vit::Vit;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// Writes `config.json`, `model.safetensors` (in the model's element type, so an f64 model
/// round-trips exactly) and `preprocessor_config.json` into `dir` (created if needed).
pub fn save_hf_dinov2(
    model: &Vit,
    dir: &Path,
    class_names: Option<&[String]>,
    pre: &Preprocessing,
) -> Result<(), ModelError> {
    let c = &model.cfg;
    let fits = c.prefix_tokens == 1 + c.registers
        && !c.pre_norm
        && !c.double_fc_norm
        && model.head_dist.is_none()
        && match c.embedding {
            true => c.pool == Pool::Cls,
            false => matches!(c.pool, Pool::Cls | Pool::ClsMeanPatch),
        };
    if !fits {
        return Err(ModelError::format(
            dir,
            format!(
                "a model with {:?} pooling, {} prefix tokens ({} registers){} has no Hugging Face DINOv2 equivalent",
                c.pool,
                c.prefix_tokens,
                c.registers,
                if c.pre_norm { " and a pre-encoder LayerNorm" } else { "" }
            ),
        ));
    }
    if model.blocks.iter().any(|b| b.cls_mask.is_some()) {
        return Err(ModelError::format(
            dir,
            "pruning masks (cls_mask) cannot be written as a Hugging Face DINOv2 model",
        ));
    }
    if let (Some(names), false) = (class_names, c.embedding) {
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
    let tensors = tensors(model).map_err(ModelError::tensor(&st))?;
    write_safetensors(&st, &tensors, hf_names(model).1)?;
    write_json(&dir.join("config.json"), &config_json(model, class_names))?;
    write_json(
        &dir.join("preprocessor_config.json"),
        &preprocessor_json(pre),
    )
}

/// The transformers `model_type` and architecture of `model`.
fn hf_names(model: &Vit) -> (&'static str, &'static str) {
    match (model.cfg.registers > 0, model.cfg.embedding) {
        (false, true) => ("dinov2", "Dinov2Model"),
        (false, false) => ("dinov2", "Dinov2ForImageClassification"),
        (true, true) => ("dinov2_with_registers", "Dinov2WithRegistersModel"),
        (true, false) => (
            "dinov2_with_registers",
            "Dinov2WithRegistersForImageClassification",
        ),
    }
}

fn config_json(model: &Vit, class_names: Option<&[String]>) -> Value {
    let c = &model.cfg;
    let registers = c.registers > 0;
    let (model_type, arch) = hf_names(model);
    let mut cfg = json!({
        "architectures": [arch],
        "model_type": model_type,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.channels,
        "hidden_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "mlp_ratio": c.mlp_dim / c.hidden,
        "hidden_act": match c.gelu {
            Gelu::Erf => "gelu",
            Gelu::Tanh => "gelu_pytorch_tanh",
            Gelu::Quick => "quick_gelu",
        },
        "layer_norm_eps": c.ln_eps,
        "layerscale_value": 1.0,
        "qkv_bias": true,
        "use_swiglu_ffn": false,
        "drop_path_rate": 0.0,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": match model.dtype() {
            DType::F64 => "float64",
            _ => "float32",
        },
    });
    if registers {
        cfg["num_register_tokens"] = json!(c.registers);
    }
    if !c.embedding {
        let (id2label, label2id) = label_maps(c.num_classes, class_names);
        cfg["num_labels"] = json!(c.num_classes);
        cfg["id2label"] = id2label;
        cfg["label2id"] = label2id;
        cfg["problem_type"] = json!("single_label_classification");
    }
    cfg
}

/// The model's tensors under the Hugging Face DINOv2 names, contiguous on the CPU, f64 for an
/// f64 model and f32 otherwise.
fn tensors(model: &Vit) -> candle_core::Result<HashMap<String, Tensor>> {
    let c = &model.cfg;
    let (d, r) = (c.hidden, c.registers);
    let dt = match model.dtype() {
        DType::F64 => DType::F64,
        _ => DType::F32,
    };
    let mut out = HashMap::new();
    let mut put = |name: String, t: &Tensor| -> candle_core::Result<()> {
        let t = t.to_device(&Device::Cpu)?.to_dtype(dt)?.contiguous()?;
        out.insert(name, t);
        Ok(())
    };
    // A classifier's backbone sits under `dinov2.` (`dinov2_with_registers.`), a bare model at
    // the top level.
    let p = match (c.embedding, r > 0) {
        (true, _) => "",
        (false, false) => "dinov2.",
        (false, true) => "dinov2_with_registers.",
    };
    let e = format!("{p}embeddings");
    put(
        format!("{e}.cls_token"),
        &model.prefix.narrow(0, 0, 1)?.unsqueeze(0)?,
    )?;
    // The model's position rows are [CLS, one zero row per register, the grid].
    let n = model.pos.dim(0)?;
    let pos = Tensor::cat(
        &[
            &model.pos.narrow(0, 0, 1)?,
            &model.pos.narrow(0, 1 + r, n - 1 - r)?,
        ],
        0,
    )?;
    put(format!("{e}.position_embeddings"), &pos.unsqueeze(0)?)?;
    if r > 0 {
        put(
            format!("{e}.register_tokens"),
            &model.prefix.narrow(0, 1, r)?.unsqueeze(0)?,
        )?;
    }
    // Used only for masked inputs (never here); transformers expects it.
    put(
        format!("{e}.mask_token"),
        &Tensor::zeros((1, d), dt, &Device::Cpu)?,
    )?;
    let (ch, ps) = (c.channels, c.patch_size);
    put(
        format!("{e}.patch_embeddings.projection.weight"),
        &model.patch.weight.reshape((d, ch, ps, ps))?,
    )?;
    put(
        format!("{e}.patch_embeddings.projection.bias"),
        bias(&model.patch, d)?.as_ref(),
    )?;
    let ones = Tensor::ones(d, dt, &Device::Cpu)?;
    let mut norm = |name: &str, ln: &LayerNorm| -> candle_core::Result<()> {
        put(format!("{name}.weight"), &ln.weight)?;
        put(format!("{name}.bias"), &ln.bias)
    };
    for (i, b) in model.blocks.iter().enumerate() {
        let l = format!("{p}encoder.layer.{i}");
        norm(&format!("{l}.norm1"), &b.ln_att)?;
        norm(&format!("{l}.norm2"), &b.ln_ffn)?;
    }
    norm(&format!("{p}layernorm"), &model.norm)?;
    let mut linear = |name: &str, lin: &Linear, out_dim: usize| -> candle_core::Result<()> {
        put(format!("{name}.weight"), &lin.weight)?;
        put(format!("{name}.bias"), bias(lin, out_dim)?.as_ref())
    };
    for (i, b) in model.blocks.iter().enumerate() {
        let l = format!("{p}encoder.layer.{i}");
        for (j, part) in ["query", "key", "value"].into_iter().enumerate() {
            let w = b.qkv.weight.narrow(0, j * d, d)?;
            let bq = bias(&b.qkv, 3 * d)?.narrow(0, j * d, d)?;
            linear(
                &format!("{l}.attention.attention.{part}"),
                &Linear::new(w, Some(bq)),
                d,
            )?;
        }
        linear(&format!("{l}.attention.output.dense"), &b.proj, d)?;
        linear(&format!("{l}.mlp.fc1"), &b.fc1, c.mlp_dim)?;
        linear(&format!("{l}.mlp.fc2"), &b.fc2, d)?;
    }
    if !c.embedding {
        let w = match c.pool {
            // [CLS, mean of patches] with nothing read from the mean.
            Pool::Cls => Tensor::cat(&[&model.head.weight, &model.head.weight.zeros_like()?], 1)?,
            _ => model.head.weight.clone(),
        };
        let b = bias(&model.head, c.num_classes)?.into_owned();
        linear("classifier", &Linear::new(w, Some(b)), c.num_classes)?;
    }
    for i in 0..c.layers {
        for k in [1, 2] {
            put(
                format!("{p}encoder.layer.{i}.layer_scale{k}.lambda1"),
                &ones,
            )?;
        }
    }
    Ok(out)
}
