//! timm state dicts: `.safetensors` files and PyTorch `.pth` zip pickles (the MAE fine-tuned
//! checkpoint keeps its state dict under `model`). The pickle is interpreted, never executed,
//! and refused if it names anything but tensor storage and plain containers.
use super::{Family, ModelError, PosResize, Raw};
use crate::model::config::Gelu;
use candle_core::pickle::{Object, Stack};
use candle_core::Tensor;
use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

/// Globals a state-dict pickle may reference.
const ALLOWED: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "BoolStorage"),
    ("torch", "ByteStorage"),
];

/// A timm state dict as canonical tensors: timm's `dist_token` / `reg_token` join `cls_token`,
/// and a position embedding without prefix rows (`no_embed_class`) gets zero rows for them.
pub(crate) fn timm_raw(
    path: &Path,
    mut tensors: HashMap<String, Tensor>,
) -> Result<Raw, ModelError> {
    let t = ModelError::tensor(path);
    let has = |k: &str| tensors.contains_key(k);
    let family = if has("reg_token") {
        Family::Dinov2Registers
    } else if has("blocks.0.ls1.gamma") {
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
        family,
        pos_resize: PosResize::Linear,
        registers,
        embedding: false,
        tensors,
        heads: None,
        ln_eps: 1e-6,
        gelu: Gelu::Erf,
        pool: None,
        class_names: None,
        normalization: None,
        origin: None,
    })
}

/// The state dict of a PyTorch zip checkpoint (a `model` entry when there is one), vetted first.
pub(crate) fn state_dict(path: &Path) -> Result<HashMap<String, Tensor>, ModelError> {
    let key = vet(path)?.then_some("model");
    let tensors = candle_core::pickle::read_all_with_key(path, key)
        .map_err(|e| ModelError::format(path, format!("unreadable PyTorch checkpoint: {e}")))?;
    Ok(tensors.into_iter().collect())
}

fn check_globals(obj: &Object) -> Result<(), String> {
    match obj {
        Object::Class {
            module_name,
            class_name,
        } => {
            if ALLOWED
                .iter()
                .any(|(m, c)| m == module_name && c == class_name)
            {
                Ok(())
            } else {
                Err(format!(
                    "it references `{module_name}.{class_name}` (only tensors and plain containers are allowed)"
                ))
            }
        }
        Object::Tuple(v) | Object::List(v) => v.iter().try_for_each(check_globals),
        Object::Dict(kv) => kv
            .iter()
            .try_for_each(|(k, v)| check_globals(k).and_then(|_| check_globals(v))),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            check_globals(callable).and_then(|_| check_globals(args))
        }
        Object::PersistentLoad(o) => check_globals(o),
        _ => Ok(()),
    }
}

/// Interprets every `data.pkl` of the archive and checks what it references.
fn vet(path: &Path) -> Result<bool, ModelError> {
    let unsafe_pickle = |msg: String| ModelError::UnsafePickle {
        path: path.to_path_buf(),
        msg,
    };
    let file = std::fs::File::open(path).map_err(|cause| ModelError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| ModelError::format(path, format!("broken zip container: {e}")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut has_model_key = false;
    for name in names.iter().filter(|n| n.ends_with("data.pkl")) {
        let entry = zip
            .by_name(name)
            .map_err(|e| ModelError::format(path, format!("broken zip entry {name}: {e}")))?;
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut BufReader::new(entry))
            .map_err(|e| unsafe_pickle(format!("pickle not understood: {e}")))?;
        let obj = stack
            .finalize()
            .map_err(|e| unsafe_pickle(format!("pickle not understood: {e}")))?;
        check_globals(&obj).map_err(unsafe_pickle)?;
        if let Object::Dict(kv) = &obj {
            has_model_key |= kv
                .iter()
                .any(|(k, _)| *k == Object::Unicode("model".into()));
        }
    }
    Ok(has_model_key)
}

pub(crate) fn read(path: &Path) -> Result<Raw, ModelError> {
    timm_raw(path, state_dict(path)?)
}
