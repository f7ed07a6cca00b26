//! Writes a DINOv2 [`Vit`] (with or without registers) as a Hugging Face folder:
//! `Dinov2ForImageClassification` (or the `WithRegisters` one) for a classifier, `Dinov2Model` for
//! a headless backbone. The inverse of the DINOv2 reader, so `load_model` gives back the same
//! model, and transformers loads the same network.
//!
//! The model holds LayerScale folded into each branch's output projection: the folder stores the
//! folded projections and `lambda1 = 1`. The position grid is written at the model's image size.
//! A classifier on CLS alone (a probe) is written as DINOv2's `[CLS, mean of patches]` head with
//! zero weights on the patch mean, which computes the same logits.
use crate::model::config::Pool;
use crate::model::load::ModelError;
use crate::model::ops::Linear;
use crate::model::save::{
    base_config, bias, labels, prepare, BlockNames, Folder, HfTensors, Preprocessing,
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
    // A backbone has no classes: its names are not checked (nor written).
    let names = class_names.filter(|_| !c.embedding);
    prepare(model, dir, names, "a Hugging Face DINOv2 model")?;
    let folder = Folder {
        architecture: hf_names(model).1,
        config: config_json(model, class_names),
        preprocessing: pre,
    };
    folder.write(dir, tensors(model))
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
    let mut cfg = base_config(model, hf_names(model));
    cfg["mlp_ratio"] = json!(c.mlp_dim / c.hidden);
    cfg["layerscale_value"] = json!(1.0);
    cfg["use_swiglu_ffn"] = json!(false);
    cfg["drop_path_rate"] = json!(0.0);
    cfg["torch_dtype"] = json!(match model.dtype() {
        DType::F64 => "float64",
        _ => "float32",
    });
    if c.registers > 0 {
        cfg["num_register_tokens"] = json!(c.registers);
    }
    if !c.embedding {
        labels(&mut cfg, c.num_classes, class_names);
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
    let mut out = HfTensors::new(dt);
    // A classifier's backbone sits under `dinov2.` (`dinov2_with_registers.`), a bare model at
    // the top level.
    let p = match (c.embedding, r > 0) {
        (true, _) => "",
        (false, false) => "dinov2.",
        (false, true) => "dinov2_with_registers.",
    };
    let e = format!("{p}embeddings");
    out.put(
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
    out.put(format!("{e}.position_embeddings"), &pos.unsqueeze(0)?)?;
    if r > 0 {
        out.put(
            format!("{e}.register_tokens"),
            &model.prefix.narrow(0, 1, r)?.unsqueeze(0)?,
        )?;
    }
    // Used only for masked inputs (never here); transformers expects it.
    out.put(
        format!("{e}.mask_token"),
        &Tensor::zeros((1, d), dt, &Device::Cpu)?,
    )?;
    out.patch_embeddings(&e, model)?;
    let names = BlockNames {
        norms: ["norm1", "norm2"],
        mlp: ["mlp.fc1", "mlp.fc2"],
    };
    out.blocks(model, &format!("{p}encoder.layer."), &names)?;
    out.norm(&format!("{p}layernorm"), &model.norm)?;
    if !c.embedding {
        let w = match c.pool {
            // [CLS, mean of patches] with nothing read from the mean.
            Pool::Cls => Tensor::cat(&[&model.head.weight, &model.head.weight.zeros_like()?], 1)?,
            _ => model.head.weight.clone(),
        };
        let b = bias(&model.head, c.num_classes)?.into_owned();
        out.linear("classifier", &Linear::new(w, Some(b)), c.num_classes)?;
    }
    let ones = Tensor::ones(d, dt, &Device::Cpu)?;
    for i in 0..c.layers {
        for k in [1, 2] {
            out.put(
                format!("{p}encoder.layer.{i}.layer_scale{k}.lambda1"),
                &ones,
            )?;
        }
    }
    Ok(out.tensors)
}
