//! Hugging Face folders: config.json + model.safetensors (or pytorch_model.bin). This file reads
//! `ViTForImageClassification` and DeiT (plain and distilled) and sends DINOv2 and CLIP configs to
//! their own readers (`dinov2.rs`, `clip.rs`).
use super::hf_config::{self, layer_count};
use super::hf_source::Source;
use super::{Family, ModelError, Raw};
use crate::limits::Limits;
use crate::model::config::Pool;
use candle_core::Tensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn read_text(path: &Path) -> Result<String, ModelError> {
    super::archive::open_regular(path)?;
    std::fs::read_to_string(path).map_err(|cause| ModelError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

/// The weight files of a Hugging Face folder, in transformers' order of preference: one
/// `model.safetensors`, the shards its index names, one `pytorch_model.bin`, or its shards.
pub(crate) fn weights_file(dir: &Path) -> Option<(Vec<PathBuf>, bool)> {
    for (single, index, torch) in [
        ("model.safetensors", "model.safetensors.index.json", false),
        ("pytorch_model.bin", "pytorch_model.bin.index.json", true),
    ] {
        if dir.join(single).is_file() {
            return Some((vec![dir.join(single)], torch));
        }
        if dir.join(index).is_file() {
            return Some((vec![dir.join(index)], torch));
        }
    }
    None
}

/// The files a Hugging Face folder is read from, sorted: `config.json`, the
/// `preprocessor_config.json` when present, and the weights (an index with its shards). Other
/// files in the folder (a README, a TensorFlow copy of the weights) are never read.
pub(crate) fn files_read(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let mut out = vec![dir.join("config.json")];
    let pre = dir.join("preprocessor_config.json");
    if pre.is_file() {
        out.push(pre);
    }
    for f in weights_file(dir).map(|w| w.0).unwrap_or_default() {
        if f.to_string_lossy().ends_with(".index.json") {
            out.extend(shards(dir, &f)?);
        }
        out.push(f);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The shard files an index names (plain names inside the folder, each once, sorted).
fn shards(dir: &Path, index: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let v: Value = serde_json::from_str(&read_text(index)?)
        .map_err(|e| ModelError::format(index, format!("invalid JSON: {e}")))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| ModelError::format(index, "no `weight_map` object"))?;
    let mut files = std::collections::BTreeSet::new();
    for (name, file) in map {
        let file = file.as_str().unwrap_or("");
        let plain = Path::new(file).file_name().is_some_and(|f| f == file);
        if !plain || file == ".." || file == "." {
            return Err(ModelError::format(
                index,
                format!("`weight_map.{name}` is {file:?}, not a file name in this folder"),
            ));
        }
        files.insert(file.to_string());
    }
    if files.is_empty() {
        return Err(ModelError::format(index, "empty `weight_map`"));
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Every tensor of a Hugging Face folder's weights (all shards).
pub(crate) fn read_folder_tensors(
    dir: &Path,
    limits: &Limits,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let (files, torch) = weights_file(dir).ok_or_else(|| {
        ModelError::format(
            dir,
            "no model.safetensors or pytorch_model.bin in the folder",
        )
    })?;
    let label = files[0].clone();
    let files = if label.extension().is_some_and(|e| e == "json") {
        shards(dir, &label)?
    } else {
        files
    };
    let mut out = HashMap::new();
    for f in &files {
        let part = if torch {
            super::torch_pickle::read_state_dict(f, limits)?
        } else {
            super::safetensors_header::read(f)?
        };
        out.extend(part);
    }
    Ok(out)
}

/// Reads a folder (config.json, the weights, optional preprocessor_config.json).
pub(crate) fn read(dir: &Path, limits: &Limits) -> Result<Raw, ModelError> {
    let src = read_folder_tensors(dir, limits)?;
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

/// The weights file (or shard index) of a folder, for error messages.
fn weights_path(label: &Path) -> PathBuf {
    weights_file(label)
        .map(|(files, _)| files[0].clone())
        .unwrap_or_else(|| label.join("model.safetensors"))
}

/// Builds the canonical tensors from a config text and the weights' tensors; `label` names
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
    let st = weights_path(label);
    let source = Source::new(&src, &st);
    let mut raw = match cfg["model_type"].as_str().unwrap_or("vit") {
        "dinov2" | "dinov2_with_registers" => super::dinov2::raw(&cfg_path, &cfg, &source)?,
        "clip_vision_model" | "clip" => super::clip::raw(&cfg_path, &cfg, &source)?,
        _ => vit_raw(&cfg_path, &cfg, &source)?,
    };
    super::hf_config::check(&cfg_path, &cfg, &raw)?;
    raw.class_names = class_names(&cfg);
    raw.origin = Some((st.clone(), source.origin.take()));
    if let Some(text) = preprocessor {
        if let Some(n) = normalization(label, text)? {
            raw.normalization = Some(n);
        }
    }
    Ok(raw)
}

/// `id2label` as a list, when its keys are 0..n.
fn class_names(cfg: &Value) -> Option<Vec<String>> {
    cfg["id2label"].as_object().and_then(|m| {
        let mut v: Vec<(usize, String)> = m
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
            .collect();
        v.sort();
        let ok = v.iter().enumerate().all(|(i, (k, _))| i == *k);
        ok.then(|| v.into_iter().map(|(_, n)| n).collect())
    })
}

/// `ViTForImageClassification`, `DeiTForImageClassification` and
/// `DeiTForImageClassificationWithTeacher` (CLS and distillation heads).
fn vit_raw(cfg_path: &Path, cfg: &Value, src: &Source) -> Result<Raw, ModelError> {
    let prefix = src
        .prefix(&["vit.", "deit."], "embeddings.cls_token")?
        .trim_end_matches('.');
    let t = ModelError::tensor(src.path);
    let e = format!("{prefix}.embeddings");
    let mut out = HashMap::new();
    // DeiT keeps a distillation token after CLS (prefix tokens CLS, dist).
    let mut prefix_tokens = vec![src.take(&format!("{e}.cls_token"))?];
    if src.has(&format!("{e}.distillation_token")) {
        prefix_tokens.push(src.take(&format!("{e}.distillation_token"))?);
    }
    out.insert(
        "cls_token".into(),
        Tensor::cat(&prefix_tokens, 1).map_err(&t)?,
    );
    out.insert(
        "pos_embed".into(),
        src.take(&format!("{e}.position_embeddings"))?,
    );
    src.embeddings(&mut out, &e)?;
    src.copy(&mut out, &format!("{prefix}.layernorm"), "norm")?;
    // The distilled DeiT has two heads and averages them; the others one classifier on CLS.
    let distilled = src.has("cls_classifier.weight");
    let (family, pool) = if distilled {
        src.copy(&mut out, "cls_classifier", "head")?;
        src.copy(&mut out, "distillation_classifier", "head_dist")?;
        (Family::DeitDistilled, Pool::ClsDist)
    } else {
        src.copy(&mut out, "classifier", "head")?;
        let family = match prefix {
            "deit" => Family::Deit,
            _ => Family::Vit,
        };
        (family, Pool::Cls)
    };
    let layers = layer_count(cfg_path, cfg, |i| {
        src.has(&format!(
            "{prefix}.encoder.layer.{i}.layernorm_before.weight"
        ))
    })?;
    for i in 0..layers {
        src.block(
            &mut out,
            (&format!("{prefix}.encoder.layer.{i}"), i),
            ("attention.attention", ["query", "key", "value"]),
            &[
                ("attention.output.dense", "attn.proj"),
                ("layernorm_before", "norm1"),
                ("layernorm_after", "norm2"),
                ("intermediate.dense", "mlp.fc1"),
                ("output.dense", "mlp.fc2"),
            ],
        )?;
    }
    Ok(Raw {
        pool: Some(pool),
        ..hf_config::raw((cfg_path, cfg), family, out, (1e-12, "gelu"))?
    })
}
