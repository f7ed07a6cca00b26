//! Writes a [`Vit`] as a Hugging Face `ViTForImageClassification` folder: the exact inverse of
//! the Hugging Face loader, so `load_model` of the folder gives back the same weights. Also
//! what every family's writer shares: the checks, the folder's three files, a block's tensors.
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
    prepare(model, dir, class_names, "ViTForImageClassification")?;
    let folder = Folder {
        architecture: "ViTForImageClassification",
        config: config_json(model, class_names),
        preprocessing: pre,
    };
    folder.write(dir, hf_tensors(model))
}

/// Checks what every Hugging Face writer refuses (pruning masks, a wrong number of class names;
/// `what` names the target format) and creates `dir`.
pub(crate) fn prepare(
    model: &Vit,
    dir: &Path,
    class_names: Option<&[String]>,
    what: &str,
) -> Result<(), ModelError> {
    if model.blocks.iter().any(|b| b.cls_mask.is_some()) {
        // Hugging Face has no place for them; dropping them would change the model.
        return Err(ModelError::format(
            dir,
            format!("pruning masks (cls_mask) cannot be written as {what}"),
        ));
    }
    let classes = model.cfg.num_classes;
    if let Some(names) = class_names.filter(|n| n.len() != classes) {
        return Err(ModelError::format(
            dir,
            format!("{} class names for {classes} classes", names.len()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|cause| ModelError::Io {
        path: dir.to_path_buf(),
        cause,
    })
}

/// The three files of a Hugging Face folder, before they are written.
pub(crate) struct Folder<'a> {
    /// The transformers class, also the safetensors mark.
    pub architecture: &'a str,
    pub config: Value,
    pub preprocessing: &'a Preprocessing,
}

impl Folder<'_> {
    /// Writes `model.safetensors` (the `tensors`), `config.json` and `preprocessor_config.json`
    /// into `dir`, each atomically.
    pub(crate) fn write(
        &self,
        dir: &Path,
        tensors: candle_core::Result<HashMap<String, Tensor>>,
    ) -> Result<(), ModelError> {
        let st = dir.join("model.safetensors");
        let tensors = tensors.map_err(ModelError::tensor(&st))?;
        write_safetensors(&st, &tensors, self.architecture)?;
        write_json(&dir.join("config.json"), &self.config)?;
        write_json(
            &dir.join("preprocessor_config.json"),
            &preprocessor_json(self.preprocessing),
        )
    }
}

/// `tensors` as a safetensors file at `st`, atomically, marked as ours with `architecture` (so a
/// later save may replace it without --force).
fn write_safetensors(
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

fn write_json(path: &Path, value: &Value) -> Result<(), ModelError> {
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
    let mut cfg = base_config(model, ("vit", "ViTForImageClassification"));
    cfg["intermediate_size"] = json!(c.mlp_dim);
    cfg["torch_dtype"] = json!("float32");
    labels(&mut cfg, c.num_classes, class_names);
    cfg
}

/// The config.json keys every family shares: `model_type`, the architecture, the sizes, the
/// activation, and no dropout.
pub(crate) fn base_config(model: &Vit, (model_type, architecture): (&str, &str)) -> Value {
    let c = &model.cfg;
    json!({
        "architectures": [architecture],
        "model_type": model_type,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.channels,
        "hidden_size": c.hidden,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "hidden_act": hidden_act(c.gelu),
        "layer_norm_eps": c.ln_eps,
        "qkv_bias": true,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
    })
}

/// A classifier's keys: the number of labels, both label maps and the problem type.
pub(crate) fn labels(cfg: &mut Value, classes: usize, class_names: Option<&[String]>) {
    let (id2label, label2id) = label_maps(classes, class_names);
    cfg["num_labels"] = json!(classes);
    cfg["id2label"] = id2label;
    cfg["label2id"] = label2id;
    cfg["problem_type"] = json!("single_label_classification");
}

/// config.json's name of the activation.
fn hidden_act(gelu: Gelu) -> &'static str {
    match gelu {
        Gelu::Erf => "gelu",
        Gelu::Tanh => "gelu_pytorch_tanh",
        Gelu::Quick => "quick_gelu",
    }
}

/// `id2label` and `label2id` of `classes` classes (`LABEL_i` without names).
fn label_maps(classes: usize, class_names: Option<&[String]>) -> (Value, Value) {
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

fn preprocessor_json(pre: &Preprocessing) -> Value {
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
    let mut out = HfTensors::new(DType::F32);
    let e = "vit.embeddings";
    out.put(format!("{e}.cls_token"), &model.prefix.unsqueeze(0)?)?;
    out.put(format!("{e}.position_embeddings"), &model.pos.unsqueeze(0)?)?;
    out.patch_embeddings(e, model)?;
    let names = BlockNames {
        norms: ["layernorm_before", "layernorm_after"],
        mlp: ["intermediate.dense", "output.dense"],
    };
    out.blocks(model, "vit.encoder.layer.", &names)?;
    out.norm("vit.layernorm", &model.norm)?;
    out.linear("classifier", &model.head, c.num_classes)?;
    Ok(out.tensors)
}

/// Where a family's folder keeps a block's LayerNorms and MLP layers, under the block's name.
pub(crate) struct BlockNames {
    /// Before attention, before the MLP.
    pub norms: [&'static str; 2],
    /// fc1, fc2.
    pub mlp: [&'static str; 2],
}

/// Tensors gathered under Hugging Face names, contiguous on the CPU in one element type.
pub(crate) struct HfTensors {
    pub tensors: HashMap<String, Tensor>,
    dtype: DType,
}

impl HfTensors {
    pub(crate) fn new(dtype: DType) -> Self {
        HfTensors {
            tensors: HashMap::new(),
            dtype,
        }
    }
    pub(crate) fn put(&mut self, name: String, t: &Tensor) -> candle_core::Result<()> {
        let t = t
            .to_device(&Device::Cpu)?
            .to_dtype(self.dtype)?
            .contiguous()?;
        self.tensors.insert(name, t);
        Ok(())
    }
    pub(crate) fn norm(&mut self, name: &str, ln: &LayerNorm) -> candle_core::Result<()> {
        self.put(format!("{name}.weight"), &ln.weight)?;
        self.put(format!("{name}.bias"), &ln.bias)
    }
    pub(crate) fn linear(
        &mut self,
        name: &str,
        lin: &Linear,
        out_dim: usize,
    ) -> candle_core::Result<()> {
        self.put(format!("{name}.weight"), &lin.weight)?;
        self.put(format!("{name}.bias"), bias(lin, out_dim)?.as_ref())
    }
    /// `{e}.patch_embeddings.projection`: the patch embedding as a convolution.
    pub(crate) fn patch_embeddings(&mut self, e: &str, model: &Vit) -> candle_core::Result<()> {
        let c = &model.cfg;
        let (d, ch, p) = (c.hidden, c.channels, c.patch_size);
        let w = model.patch.weight.reshape((d, ch, p, p))?;
        self.put(format!("{e}.patch_embeddings.projection.weight"), &w)?;
        let b = bias(&model.patch, d)?;
        self.put(format!("{e}.patch_embeddings.projection.bias"), b.as_ref())
    }
    /// Every block of `model`, block i under `{layer}{i}`: its LayerNorms and MLP as `names`
    /// says, attention as `attention.attention.{query,key,value}` and `attention.output.dense`.
    pub(crate) fn blocks(
        &mut self,
        model: &Vit,
        layer: &str,
        names: &BlockNames,
    ) -> candle_core::Result<()> {
        let (d, mlp) = (model.cfg.hidden, model.cfg.mlp_dim);
        for (i, b) in model.blocks.iter().enumerate() {
            let l = format!("{layer}{i}");
            self.norm(&format!("{l}.{}", names.norms[0]), &b.ln_att)?;
            self.norm(&format!("{l}.{}", names.norms[1]), &b.ln_ffn)?;
            // The fused (3D, D) projection is query, key, value stacked in that order.
            for (j, part) in ["query", "key", "value"].into_iter().enumerate() {
                let w = b.qkv.weight.narrow(0, j * d, d)?;
                let bq = bias(&b.qkv, 3 * d)?.narrow(0, j * d, d)?;
                let name = format!("{l}.attention.attention.{part}");
                self.linear(&name, &Linear::new(w, Some(bq)), d)?;
            }
            self.linear(&format!("{l}.attention.output.dense"), &b.proj, d)?;
            self.linear(&format!("{l}.{}", names.mlp[0]), &b.fc1, mlp)?;
            self.linear(&format!("{l}.{}", names.mlp[1]), &b.fc2, d)?;
        }
        Ok(())
    }
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
