//! timm state dicts: `.safetensors` files and PyTorch zip checkpoints (`.pth`, Hugging Face
//! `pytorch_model.bin`; the MAE fine-tuned checkpoint keeps its state dict under `model`).
//! The pickle goes through our own bounded interpreter ([`super::pickle`]): nothing in it is ever
//! executed, and anything but tensors and plain containers is refused.
use super::archive::Archive;
use super::pickle::{unpickle, PickleError, StorageKind, TensorRef, Value};
use super::{Family, ModelError, Raw};
use crate::limits::Limits;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

/// A timm state dict as canonical tensors: timm's `dist_token` / `reg_token` join `cls_token`,
/// and a position embedding without prefix rows (`no_embed_class`) gets zero rows for them.
pub(crate) fn timm_raw(
    path: &Path,
    mut tensors: HashMap<String, Tensor>,
) -> Result<Raw, ModelError> {
    let t = ModelError::tensor(path);
    // timm's CLIP towers (pre-norm) have no patch-embedding bias.
    if tensors.contains_key("norm_pre.weight") && !tensors.contains_key("patch_embed.proj.bias") {
        if let Some(w) = tensors.get("patch_embed.proj.weight") {
            let width = w.dims().first().copied().unwrap_or(0);
            let zeros = Tensor::zeros(width, w.dtype(), w.device()).map_err(&t)?;
            tensors.insert("patch_embed.proj.bias".into(), zeros);
        }
    }
    let has = |k: &str| tensors.contains_key(k);
    // DINOv2's [CLS, mean of patches] head (a saved pruned DINOv2): twice the token width.
    let width = |k: &str, axis: usize| tensors.get(k).and_then(|x| x.dims().get(axis).copied());
    let cls_mean_head =
        width("head.weight", 1).is_some_and(|w| Some(w) == width("cls_token", 2).map(|d| 2 * d));
    let family = if has("reg_token") {
        Family::Dinov2Registers
    } else if has("blocks.0.ls1.gamma") || cls_mean_head {
        Family::Dinov2
    } else if has("norm_pre.weight") {
        Family::Clip
    } else if has("head_dist.weight") {
        Family::DeitDistilled
    } else if has("dist_token") {
        Family::Deit
    } else if has("fc_norm.weight") {
        Family::Mae
    } else {
        Family::Vit
    };
    let mut registers = 0;
    if let Some(cls) = tensors.get("cls_token").cloned() {
        let mut prefix = vec![cls];
        for extra in ["dist_token", "reg_token"] {
            if let Some(e) = tensors.remove(extra) {
                if e.rank() != 3 {
                    return Err(ModelError::format(
                        path,
                        format!(
                            "tensor `{extra}` has shape {:?}, expected (1, n, D)",
                            e.dims()
                        ),
                    ));
                }
                if extra == "reg_token" {
                    registers = e.dim(1).map_err(&t)?;
                }
                prefix.push(e);
            }
        }
        let p: usize = prefix
            .iter()
            .map(|e| e.dims().get(1).copied().unwrap_or(0))
            .sum();
        if prefix.len() > 1 {
            let cat = Tensor::cat(&prefix, 1).map_err(|e| {
                ModelError::format(path, format!("prefix tokens do not fit together: {e}"))
            })?;
            tensors.insert("cls_token".into(), cat);
        }
        if let Some(pos) = tensors.get("pos_embed").cloned() {
            let rows = pos.dims().get(1).copied().unwrap_or(0);
            let square = |n: usize| {
                let g = (n as f64).sqrt().round() as usize;
                g > 0 && g * g == n
            };
            if rows >= p && !square(rows - p) && square(rows) && pos.rank() == 3 {
                let d = pos.dim(2).map_err(&t)?;
                let zeros = Tensor::zeros((1, p, d), pos.dtype(), pos.device()).map_err(&t)?;
                let full = Tensor::cat(&[&zeros, &pos], 1).map_err(&t)?;
                tensors.insert("pos_embed".into(), full);
            }
        }
    }
    Ok(Raw {
        registers,
        // timm builds its CLIP towers with LayerNorm eps 1e-5, every other ViT with 1e-6.
        ln_eps: if family == Family::Clip { 1e-5 } else { 1e-6 },
        ..Raw::new(family, tensors)
    })
}

/// The member folder of a PyTorch zip checkpoint: the prefix of its one `data.pkl`.
fn pickle_prefix(ar: &Archive) -> Result<String, ModelError> {
    let pkls: Vec<String> = ar
        .names()
        .into_iter()
        .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .collect();
    match pkls.as_slice() {
        [one] => Ok(one[..one.len() - "data.pkl".len()].to_string()),
        [] => Err(ModelError::format(
            ar.path(),
            "PyTorch zip without data.pkl",
        )),
        _ => Err(ModelError::format(
            ar.path(),
            format!("PyTorch zip with {} data.pkl members", pkls.len()),
        )),
    }
}

/// The state dict inside a checkpoint object: under `model` or `state_dict` when the top level is
/// a training checkpoint, else the top level itself.
fn state_dict(top: &Value) -> Option<&Value> {
    for key in ["model", "state_dict"] {
        if let Some(v @ Value::Dict(_)) = top.get(key) {
            return Some(v);
        }
    }
    matches!(top, Value::Dict(_)).then_some(top)
}

/// Every tensor of a PyTorch zip checkpoint's state dict, by name.
pub(crate) fn read_state_dict(
    path: &Path,
    limits: &Limits,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let mut ar = Archive::open(path, limits)?;
    let prefix = pickle_prefix(&ar)?;
    if let Ok(order) = ar.read(&format!("{prefix}byteorder"), None) {
        if order != b"little" {
            return Err(ModelError::format(
                path,
                "big-endian PyTorch checkpoint (not supported)",
            ));
        }
    }
    let pkl = ar.read(&format!("{prefix}data.pkl"), None)?;
    let top = unpickle(&pkl).map_err(|e| match e {
        PickleError::Refused(msg) => ModelError::UnsafePickle {
            path: path.to_path_buf(),
            msg,
        },
        PickleError::Malformed(msg) => {
            ModelError::format(path, format!("unreadable pickle in data.pkl: {msg}"))
        }
    })?;
    let dict = state_dict(&top).ok_or_else(|| {
        ModelError::format(path, "the checkpoint's pickle does not hold a state dict")
    })?;
    let mut storages: HashMap<String, Rc<Vec<u8>>> = HashMap::new();
    let mut out = HashMap::new();
    for (k, v) in dict.dict_pairs().into_iter().flatten() {
        if let (Value::Str(name), Value::Tensor(t)) = (k, v) {
            let tensor = materialize(&mut ar, &prefix, name, t, &mut storages)?;
            out.insert(name.to_string(), tensor);
        }
    }
    if out.is_empty() {
        return Err(ModelError::format(
            path,
            "the checkpoint's state dict holds no tensors",
        ));
    }
    Ok(out)
}

/// Copies a tensor view out of its storage (read once per storage, its size checked first).
fn materialize(
    ar: &mut Archive,
    prefix: &str,
    name: &str,
    t: &TensorRef,
    storages: &mut HashMap<String, Rc<Vec<u8>>>,
) -> Result<Tensor, ModelError> {
    let path = ar.path().to_path_buf();
    let es = t.storage.kind.size() as u64;
    let bytes = match storages.get(&t.storage.key) {
        Some(b) => b.clone(),
        None => {
            let want = t.storage.numel.checked_mul(es).ok_or_else(|| {
                ModelError::format(&path, format!("storage of tensor `{name}` overflows"))
            })?;
            let b = Rc::new(ar.read(&format!("{prefix}data/{}", t.storage.key), Some(want))?);
            storages.insert(t.storage.key.clone(), b.clone());
            b
        }
    };
    let numel = t.numel();
    let nbytes = numel.saturating_mul(es);
    ar.charge(nbytes, &format!("tensor `{name}`"))?;
    let es = es as usize;
    let mut data = Vec::with_capacity(nbytes as usize);
    let contiguous = {
        let mut expect = 1usize;
        let mut ok = true;
        for (&d, &s) in t.shape.iter().zip(&t.stride).rev() {
            ok &= d <= 1 || s == expect;
            expect = expect.saturating_mul(d);
        }
        ok
    };
    if numel == 0 {
        // Nothing to copy (the offset of an empty view is not checked).
    } else if contiguous {
        let start = t.offset as usize * es;
        data.extend_from_slice(&bytes[start..start + nbytes as usize]);
    } else {
        // Strided view: walk the multi-index (bounds were checked when the view was read).
        let rank = t.shape.len();
        let mut idx = vec![0usize; rank];
        loop {
            let off =
                t.offset as usize + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            data.extend_from_slice(&bytes[off * es..(off + 1) * es]);
            let mut d = rank;
            loop {
                if d == 0 {
                    break;
                }
                d -= 1;
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
            if d == 0 && idx.iter().all(|&i| i == 0) {
                break;
            }
        }
    }
    let tensor = |dtype: DType, data: &[u8]| {
        Tensor::from_raw_buffer(data, dtype, &t.shape, &Device::Cpu)
            .map_err(ModelError::tensor(&path))
    };
    match t.storage.kind {
        StorageKind::F64 => tensor(DType::F64, &data),
        StorageKind::F32 => tensor(DType::F32, &data),
        StorageKind::F16 => tensor(DType::F16, &data),
        StorageKind::BF16 => tensor(DType::BF16, &data),
        StorageKind::I64 => tensor(DType::I64, &data),
        StorageKind::I32 => tensor(DType::I32, &data),
        StorageKind::I16 => tensor(DType::I16, &data),
        StorageKind::I8 => {
            let wide: Vec<u8> = data
                .iter()
                .flat_map(|&b| (b as i8 as i16).to_le_bytes())
                .collect();
            tensor(DType::I16, &wide)
        }
        StorageKind::U8 | StorageKind::Bool => tensor(DType::U8, &data),
    }
}
