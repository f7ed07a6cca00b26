//! timm state dicts: `.safetensors` files and PyTorch `.pth` zip pickles (the MAE fine-tuned
//! checkpoint keeps its state dict under `model`). The pickle is interpreted, never executed,
//! and refused if it names anything but tensor storage and plain containers.
use super::{ModelError, Raw};
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

pub(crate) fn timm_raw(_path: &Path, tensors: HashMap<String, Tensor>) -> Raw {
    Raw {
        tensors,
        heads: None,
        ln_eps: 1e-6,
        gelu: Gelu::Erf,
        pool: None,
        class_names: None,
        normalization: None,
    }
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
    let key = vet(path)?.then_some("model");
    let tensors = candle_core::pickle::read_all_with_key(path, key)
        .map_err(|e| ModelError::format(path, format!("unreadable PyTorch checkpoint: {e}")))?;
    Ok(timm_raw(path, tensors.into_iter().collect()))
}
