//! open_clip's ViT image towers -> canonical tensors: a hub folder (`open_clip_config.json` +
//! `open_clip_model.safetensors` or `open_clip_pytorch_model.bin`), or a bare state dict
//! (`.safetensors`, or a PyTorch zip such as a training checkpoint's `state_dict`) holding a full
//! CLIP (`visual.*`, the text tower ignored), a DDP one (`module.visual.*`) or the tower alone.
//!
//! The tower is CLIP's (`clip.rs`) under other names: `conv1` (no bias), `class_embedding` (D),
//! `positional_embedding` (N, D), `ln_pre` (absent with `no_ln_pre`), blocks
//! `transformer.resblocks.{i}` with PyTorch's fused `attn.in_proj_*` (query, key, value stacked,
//! as ours), `mlp.c_fc` / `mlp.c_proj`, optional LayerScale `ls_1.gamma` / `ls_2.gamma`;
//! `ln_post` on the CLS token, then `x @ proj` with `proj` stored as (D, E). Only the plain
//! token-pooled tower is read: attentional pooling, average pooling and timm trunks are refused.
//! The file does not say the activation: `quick_gelu` in the config (OpenAI-trained weights),
//! else open_clip's default erf GELU (`--gelu quick` for a bare OpenAI-trained state dict).
use super::{Family, ModelError, PosResize, Raw};
use crate::limits::Limits;
use crate::model::config::{Gelu, Pool};
use candle_core::Tensor;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// open_clip's `OPENAI_DATASET_MEAN` / `_STD`, its default preprocessing.
const OPENAI_NORMALIZATION: [[f64; 3]; 2] = [
    [0.48145466, 0.4578275, 0.40821073],
    [0.26862954, 0.26130258, 0.27577711],
];

const CONFIG: &str = "open_clip_config.json";

/// Where the tower's tensors sit in a state dict: a full CLIP, a DDP-wrapped one, the tower alone.
const PREFIXES: [&str; 3] = ["visual.", "module.visual.", ""];

/// The prefix of the open_clip image tower in `tensors`, if they hold one.
pub(crate) fn prefix(tensors: &HashMap<String, Tensor>) -> Option<&'static str> {
    PREFIXES.into_iter().find(|p| {
        tensors.contains_key(&format!("{p}conv1.weight"))
            && tensors.contains_key(&format!("{p}class_embedding"))
    })
}

/// The same test on names only (a safetensors header).
pub(crate) fn has_tower<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| {
        PREFIXES
            .iter()
            .any(|p| n.strip_prefix(p) == Some("class_embedding"))
    })
}

/// A hub folder's weights file (safetensors preferred, as open_clip does) and its config.
pub(crate) fn folder_files(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let config = dir.join(CONFIG);
    if !config.is_file() {
        return None;
    }
    ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|f| f.is_file())
        .map(|w| (w, config))
}

/// Reads a hub folder or a `.safetensors` file with open_clip names.
pub(crate) fn read(path: &Path, limits: &Limits) -> Result<Raw, ModelError> {
    if !path.is_dir() {
        return raw(path, super::safetensors_header::read(path)?, None);
    }
    let (weights, config) = folder_files(path).ok_or_else(|| {
        ModelError::format(
            path,
            "folder without open_clip_config.json + open_clip_model.safetensors or open_clip_pytorch_model.bin",
        )
    })?;
    super::archive::open_regular(&config)?;
    let text = std::fs::read_to_string(&config).map_err(|cause| ModelError::Io {
        path: config.clone(),
        cause,
    })?;
    let cfg: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(&config, format!("invalid JSON: {e}")))?;
    let tensors = if weights.extension().is_some_and(|e| e == "bin") {
        super::torch_pickle::read_state_dict(&weights, limits)?
    } else {
        super::safetensors_header::read(&weights)?
    };
    raw(&weights, tensors, Some((&config, &cfg)))
}

/// What `open_clip_config.json` says about the tower.
struct TowerConfig {
    layers: Option<usize>,
    heads: Option<usize>,
    ln_pre: bool,
    gelu: Gelu,
    ln_eps: f64,
    normalization: [[f64; 3]; 2],
}

impl TowerConfig {
    /// A bare state dict: open_clip's defaults (`ln_pre` follows the tensors).
    fn bare() -> Self {
        TowerConfig {
            layers: None,
            heads: None,
            ln_pre: true,
            gelu: Gelu::Erf,
            ln_eps: 1e-5,
            normalization: OPENAI_NORMALIZATION,
        }
    }

    fn parse(path: &Path, cfg: &Value) -> Result<Self, ModelError> {
        let bad = |msg: String| ModelError::format(path, msg);
        let model = &cfg["model_cfg"];
        let v = &model["vision_cfg"];
        if !v.is_object() {
            return Err(bad("no `model_cfg.vision_cfg` object".into()));
        }
        if v["timm_model_name"].as_str().is_some_and(|s| !s.is_empty()) {
            return Err(bad(format!(
                "`vision_cfg.timm_model_name` {}: timm image towers inside open_clip are not supported",
                v["timm_model_name"]
            )));
        }
        if v["attentional_pool"].as_bool() == Some(true) {
            return Err(bad(
                "`vision_cfg.attentional_pool`: attentional pooling (CoCa) is not supported".into(),
            ));
        }
        match v["pool_type"].as_str() {
            None | Some("tok") => {}
            Some(other) => {
                return Err(bad(format!(
                    "`vision_cfg.pool_type` `{other}`: only `tok` (the CLS token) is supported"
                )))
            }
        }
        let positive = |key: &str| -> Result<Option<usize>, ModelError> {
            match &v[key] {
                Value::Null => Ok(None),
                x => match x.as_u64() {
                    Some(n) if n > 0 => Ok(Some(n as usize)),
                    _ => Err(bad(format!(
                        "`vision_cfg.{key}` must be a positive integer, not {x}"
                    ))),
                },
            }
        };
        let layers = positive("layers")?;
        let heads = match (positive("width")?, positive("head_width")?.unwrap_or(64)) {
            (Some(w), hw) if w % hw == 0 => Some(w / hw),
            (Some(w), hw) => {
                return Err(bad(format!(
                    "`vision_cfg.width` {w} is not a multiple of `head_width` {hw}"
                )))
            }
            (None, _) => None,
        };
        let ln_eps = match &v["norm_kwargs"]["eps"] {
            Value::Null => 1e-5,
            x => x
                .as_f64()
                .filter(|e| *e > 0.0 && e.is_finite())
                .ok_or_else(|| {
                    bad(format!(
                        "`vision_cfg.norm_kwargs.eps` must be a positive number, not {x}"
                    ))
                })?,
        };
        let three = |key: &str| -> Result<Option<[f64; 3]>, ModelError> {
            match &cfg["preprocess_cfg"][key] {
                Value::Null => Ok(None),
                x => x
                    .as_array()
                    .filter(|a| a.len() == 3)
                    .and_then(|a| Some([a[0].as_f64()?, a[1].as_f64()?, a[2].as_f64()?]))
                    .map(Some)
                    .ok_or_else(|| {
                        bad(format!(
                            "`preprocess_cfg.{key}` must be three numbers, not {x}"
                        ))
                    }),
            }
        };
        let normalization = match (three("mean")?, three("std")?) {
            (Some(m), Some(s)) => [m, s],
            (None, None) => OPENAI_NORMALIZATION,
            _ => {
                return Err(bad(
                    "`preprocess_cfg` gives a mean without a std or a std without a mean".into(),
                ))
            }
        };
        Ok(TowerConfig {
            layers,
            heads,
            ln_pre: v["no_ln_pre"].as_bool() != Some(true),
            gelu: match model["quick_gelu"].as_bool() {
                Some(true) => Gelu::Quick,
                _ => Gelu::Erf,
            },
            ln_eps,
            normalization,
        })
    }
}

/// Canonical tensors taken from the file's, remembering each one's file name for errors.
struct Tower<'a> {
    tensors: &'a HashMap<String, Tensor>,
    file: &'a Path,
    prefix: &'static str,
    out: HashMap<String, Tensor>,
    names: HashMap<String, String>,
}

impl Tower<'_> {
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(&format!("{}{name}", self.prefix))
    }
    /// The file's `{prefix}{from}`, to be stored as canonical `to`.
    fn take(&mut self, from: &str, to: &str) -> Result<Tensor, ModelError> {
        let name = format!("{}{from}", self.prefix);
        let x = self
            .tensors
            .get(&name)
            .cloned()
            .ok_or_else(|| ModelError::Missing {
                path: self.file.to_path_buf(),
                name: name.clone(),
            })?;
        self.names.insert(to.to_string(), name);
        Ok(x)
    }
    fn put(&mut self, from: &str, to: &str) -> Result<(), ModelError> {
        let x = self.take(from, to)?;
        self.out.insert(to.to_string(), x);
        Ok(())
    }
    /// `{from}.weight` / `.bias` as `{to}.weight` / `.bias`.
    fn pair(&mut self, from: &str, to: &str) -> Result<(), ModelError> {
        for p in ["weight", "bias"] {
            self.put(&format!("{from}.{p}"), &format!("{to}.{p}"))?;
        }
        Ok(())
    }
}

/// The image tower of `tensors` (read from `file`) as canonical tensors; `config` is the hub
/// folder's `open_clip_config.json` and its contents.
pub(crate) fn raw(
    file: &Path,
    tensors: HashMap<String, Tensor>,
    config: Option<(&Path, &Value)>,
) -> Result<Raw, ModelError> {
    let mut cfg = match config {
        Some((path, v)) => TowerConfig::parse(path, v)?,
        None => TowerConfig::bare(),
    };
    let prefix = prefix(&tensors).ok_or_else(|| ModelError::Missing {
        path: file.to_path_buf(),
        name: "visual.class_embedding".into(),
    })?;
    for refused in ["attn_pool.", "trunk."] {
        if let Some(name) = tensors
            .keys()
            .find(|k| k.starts_with(&format!("{prefix}{refused}")))
        {
            return Err(ModelError::format(
                file,
                format!("tensor `{name}`: attentional pooling and timm trunks are not supported"),
            ));
        }
    }
    let t = ModelError::tensor(file);
    let mut w = Tower {
        tensors: &tensors,
        file,
        prefix,
        out: HashMap::new(),
        names: HashMap::new(),
    };
    // The tower's unbatched tensors get the canonical batch axis; a wrong shape is reported by
    // assemble's check under the file's name.
    let cls = w.take("class_embedding", "cls_token")?;
    let d = cls.elem_count();
    w.out
        .insert("cls_token".into(), cls.reshape((1, 1, d)).map_err(&t)?);
    let pos = w.take("positional_embedding", "pos_embed")?;
    let pos = match pos.rank() {
        2 => pos.unsqueeze(0).map_err(&t)?,
        _ => pos,
    };
    w.out.insert("pos_embed".into(), pos);
    let conv = w.take("conv1.weight", "patch_embed.proj.weight")?;
    let width = conv.dims().first().copied().unwrap_or(0);
    let zeros = Tensor::zeros(width, conv.dtype(), conv.device()).map_err(&t)?;
    w.out.insert("patch_embed.proj.bias".into(), zeros);
    w.out.insert("patch_embed.proj.weight".into(), conv);
    // A bare state dict has ln_pre when its tensors do; a config says so itself.
    cfg.ln_pre &= config.is_some() || w.has("ln_pre.weight");
    if cfg.ln_pre {
        w.pair("ln_pre", "norm_pre")?;
    }
    w.pair("ln_post", "norm")?;
    let found = (0..)
        .take_while(|i| w.has(&format!("transformer.resblocks.{i}.ln_1.weight")))
        .count();
    let layers = match cfg.layers {
        Some(n) if n < found => {
            return Err(ModelError::format(
                config.map_or(file, |c| c.0),
                format!("`vision_cfg.layers` is {n} but the weights hold {found} blocks"),
            ))
        }
        // More than found: the first missing tensor is named below.
        Some(n) => n,
        None => found,
    };
    let layer_scale = w.has("transformer.resblocks.0.ls_1.gamma");
    for i in 0..layers {
        let (l, c) = (format!("transformer.resblocks.{i}"), format!("blocks.{i}"));
        for (from, to) in [
            ("ln_1", "norm1"),
            ("attn.out_proj", "attn.proj"),
            ("ln_2", "norm2"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        ] {
            w.pair(&format!("{l}.{from}"), &format!("{c}.{to}"))?;
        }
        w.put(
            &format!("{l}.attn.in_proj_weight"),
            &format!("{c}.attn.qkv.weight"),
        )?;
        w.put(
            &format!("{l}.attn.in_proj_bias"),
            &format!("{c}.attn.qkv.bias"),
        )?;
        if layer_scale {
            w.put(&format!("{l}.ls_1.gamma"), &format!("{c}.ls1.gamma"))?;
            w.put(&format!("{l}.ls_2.gamma"), &format!("{c}.ls2.gamma"))?;
        }
    }
    // x @ proj with proj (D, E): the head is its transpose, without bias (a projection).
    if w.has("proj") {
        let proj = w.take("proj", "head.weight")?;
        let head = match proj.rank() {
            2 => proj.t().and_then(|x| x.contiguous()).map_err(&t)?,
            _ => proj,
        };
        w.out.insert("head.weight".into(), head);
    }
    let (out, names) = (w.out, w.names);
    Ok(Raw {
        family: Family::Clip,
        // open_clip's resize_pos_embed: bicubic, antialiased.
        pos_resize: PosResize::BicubicAntialias,
        registers: 0,
        embedding: true,
        tensors: out,
        heads: cfg.heads,
        ln_eps: cfg.ln_eps,
        gelu: cfg.gelu,
        pool: Some(Pool::Cls),
        class_names: None,
        normalization: Some(cfg.normalization),
        origin: Some((file.to_path_buf(), names)),
    })
}
