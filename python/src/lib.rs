//! `neuronpath._native`: the Python module over the neuronpath library (never the CLI).
//!
//! Every computation runs with the GIL released; between the passes of long work (each layer of
//! the search, each method, each batch) it takes the GIL back for a moment to check for Ctrl-C,
//! so a `KeyboardInterrupt` stops it within one pass.
mod convert;
mod model;

use convert::{file_error, value_error};
use model::{Model, Source};
use neuronpath::model::{load_model, Gelu, LoadOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::HashMap;
use std::path::PathBuf;

/// The module's own allocator (a cdylib's Rust allocations only; Python keeps its own): an
/// attribution pass allocates and frees hundreds of MB per layer, which glibc hands back to the
/// kernel and re-faults every time (the binary's choice too, see src/runtime.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// The options every loader takes, validated once here.
fn options(
    dtype: &str,
    heads: Option<usize>,
    image_size: Option<usize>,
    gelu: Option<&str>,
    ln_eps: Option<f64>,
    cuda: bool,
) -> PyResult<LoadOptions> {
    let dtype = match dtype {
        "f32" | "float32" => candle_core::DType::F32,
        "f64" | "float64" => candle_core::DType::F64,
        other => {
            return Err(value_error(format!(
                "dtype must be \"f32\" or \"f64\", not {other:?}"
            )))
        }
    };
    if heads == Some(0) {
        return Err(value_error("heads must be a positive integer"));
    }
    if image_size == Some(0) {
        return Err(value_error("image_size must be a positive integer"));
    }
    let gelu = match gelu {
        None => None,
        Some("erf") => Some(Gelu::Erf),
        Some("tanh") => Some(Gelu::Tanh),
        Some(other) => {
            return Err(value_error(format!(
                "gelu must be \"erf\" or \"tanh\", not {other:?}"
            )))
        }
    };
    if let Some(e) = ln_eps.filter(|e| !(e.is_finite() && *e > 0.0)) {
        return Err(value_error(format!(
            "ln_eps must be a positive number, not {e}"
        )));
    }
    let device = if cuda {
        candle_core::Device::new_cuda(0).map_err(|e| {
            value_error(format!(
                "cuda=True but no CUDA device is usable (build with the `cuda` feature): {e}"
            ))
        })?
    } else {
        candle_core::Device::Cpu
    };
    Ok(LoadOptions {
        dtype,
        device,
        image_size,
        heads,
        gelu,
        ln_eps,
        ..LoadOptions::default()
    })
}

/// Loads a checkpoint in any layout the CLI reads (detected from its contents): a Google ViT
/// `.npz`, a Hugging Face folder (`config.json` + `model.safetensors`), a timm `.safetensors`
/// or an MAE `.pth` (interpreted, never executed).
///
/// Problems with the file raise `OSError` (`FileNotFoundError` when it is missing); bad
/// arguments raise `ValueError`.
#[pyfunction]
#[pyo3(signature = (path, *, dtype="f32", heads=None, image_size=None, gelu=None, ln_eps=None, normalize=None, cuda=false))]
#[allow(clippy::too_many_arguments)]
fn load(
    py: Python<'_>,
    path: PathBuf,
    dtype: &str,
    heads: Option<usize>,
    image_size: Option<usize>,
    gelu: Option<&str>,
    ln_eps: Option<f64>,
    normalize: Option<&str>,
    cuda: bool,
) -> PyResult<Model> {
    let opts = options(dtype, heads, image_size, gelu, ln_eps, cuda)?;
    let loaded = py.detach(|| load_model(&path, &opts)).map_err(file_error)?;
    Model::new(loaded, Source::File(path), normalize)
}

/// A model from arrays already in memory: `tensors` maps timm, Hugging Face or open_clip names
/// to float32 / float64 numpy arrays
/// (`{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}`), `config` describes
/// what the names cannot (see `neuronpath.from_state_dict`). Bad names, shapes or values raise
/// `ValueError`.
#[pyfunction]
#[pyo3(signature = (tensors, config=None, *, dtype="f32", heads=None, image_size=None, gelu=None, ln_eps=None, normalize=None, name="state_dict", cuda=false))]
#[allow(clippy::too_many_arguments)]
fn from_state_dict(
    py: Python<'_>,
    tensors: &Bound<'_, PyDict>,
    config: Option<&Bound<'_, PyAny>>,
    dtype: &str,
    heads: Option<usize>,
    image_size: Option<usize>,
    gelu: Option<&str>,
    ln_eps: Option<f64>,
    normalize: Option<&str>,
    name: &str,
    cuda: bool,
) -> PyResult<Model> {
    let opts = options(dtype, heads, image_size, gelu, ln_eps, cuda)?;
    let config: serde_json::Value = match config {
        None => serde_json::json!({}),
        Some(c) if c.is_none() => serde_json::json!({}),
        Some(c) => pythonize::depythonize(c).map_err(|e| {
            value_error(format!(
                "config must be a JSON-like dict (str keys; numbers, strings, lists): {e}"
            ))
        })?,
    };
    if !config.is_object() {
        return Err(value_error("config must be a dict"));
    }
    let mut map = HashMap::with_capacity(tensors.len());
    for (k, v) in tensors.iter() {
        let key: String = k.extract().map_err(|_| {
            value_error(format!(
                "tensor names must be str, not {}",
                convert::type_name(&k)
            ))
        })?;
        let (shape, data) = convert::float_array(&v, &format!("tensors[{key:?}]"))?;
        if !data.all_finite() {
            return Err(value_error(format!(
                "tensors[{key:?}] contains NaN or infinite values"
            )));
        }
        // Kept in its own precision: an f64 state dict stays exact until the model's dtype.
        let dt = data.dtype();
        let t = data
            .into_tensor(&shape, dt, &candle_core::Device::Cpu)
            .map_err(convert::compute_error)?;
        map.insert(key, t);
    }
    let label = PathBuf::from(name);
    let loaded = py
        .detach(|| neuronpath::model::load::from_state_dict(&label, map, &config, &opts))
        .map_err(value_error)?;
    Model::new(loaded, Source::Memory(name.to_string()), normalize)
}

/// The model compiled into neuronpath: a 6-layer ViT trained on Fashion-MNIST (28x28 images
/// upscaled to its input size, 10 classes).
#[pyfunction]
#[pyo3(signature = (*, dtype="f32"))]
fn embedded(py: Python<'_>, dtype: &str) -> PyResult<Model> {
    let opts = options(dtype, None, None, None, None, false)?;
    let loaded = py
        .detach(|| neuronpath::embedded::model(&opts))
        .map_err(file_error)?;
    Model::new(
        loaded,
        Source::Memory(neuronpath::embedded::MODEL_NAME.to_string()),
        None,
    )
}

/// The embedded model's sample images (its test split): `(images, labels, sources)` with
/// `images` a list of HxWx3 uint8 arrays for `Model.preprocess`.
#[pyfunction]
fn embedded_samples(py: Python<'_>) -> PyResult<model::Samples> {
    model::embedded_samples(py)
}

/// The native half of the `neuronpath` package; use it through `import neuronpath`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // SAFETY: mimalloc is this module's global allocator, so it is linked; option 15 is
    // `mi_option_purge_delay` (-1: never hand freed memory back), as in the binary.
    unsafe { mi_option_set(15, -1) };
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(from_state_dict, m)?)?;
    m.add_function(wrap_pyfunction!(embedded, m)?)?;
    m.add_function(wrap_pyfunction!(embedded_samples, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
