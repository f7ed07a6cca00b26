//! numpy <-> candle conversions and the mapping of library errors to Python exceptions: problems
//! with a file are `OSError` (`FileNotFoundError` when it is missing), problems with arguments
//! `ValueError`, both with the library's message.
use candle_core::{DType, Device, Tensor};
use neuronpath::io::preprocess::PreprocessError;
use neuronpath::model::ModelError;
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// A checkpoint read from a file: every problem is the file's.
pub fn file_error(e: ModelError) -> PyErr {
    match &e {
        ModelError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        _ => PyOSError::new_err(e.to_string()),
    }
}

/// A model built from arguments (arrays, a config dict): every problem is the caller's.
pub fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// An image file that cannot be read or decoded (as PIL: an `OSError`).
pub fn image_error(e: PreprocessError) -> PyErr {
    match &e {
        PreprocessError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        PreprocessError::UnknownNormalization(_) => PyValueError::new_err(e.to_string()),
        _ => PyOSError::new_err(e.to_string()),
    }
}

/// A failure inside the computation (not the caller's input): should not happen.
pub fn compute_error(e: candle_core::Error) -> PyErr {
    PyRuntimeError::new_err(format!("neuronpath: {e}"))
}

/// A floating-point array as (shape, values in C order), whatever its memory order; `what`
/// names the argument in errors.
pub fn float_array(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<usize>, FloatData)> {
    let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a numpy array of float32 or float64, not {}",
            type_name(obj)
        ))
    })?;
    let shape = arr.shape().to_vec();
    if let Ok(a) = arr.cast::<PyArrayDyn<f32>>() {
        let a = a.readonly();
        // `as_array().iter()` walks the logical (C) order for any strides: Fortran-ordered and
        // sliced arrays are copied in the right order.
        return Ok((
            shape,
            FloatData::F32(a.as_array().iter().copied().collect()),
        ));
    }
    if let Ok(a) = arr.cast::<PyArrayDyn<f64>>() {
        let a = a.readonly();
        return Ok((
            shape,
            FloatData::F64(a.as_array().iter().copied().collect()),
        ));
    }
    let dtype = arr.dtype().str()?.to_string();
    Err(PyValueError::new_err(format!(
        "{what} must be float32 or float64, not {dtype}{}",
        if dtype == "uint8" {
            " (for images, call model.preprocess(images) first)"
        } else {
            ""
        }
    )))
}

/// Values of a float array.
pub enum FloatData {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl FloatData {
    pub fn all_finite(&self) -> bool {
        match self {
            FloatData::F32(v) => v.iter().all(|x| x.is_finite()),
            FloatData::F64(v) => v.iter().all(|x| x.is_finite()),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            FloatData::F32(_) => DType::F32,
            FloatData::F64(_) => DType::F64,
        }
    }

    pub fn into_tensor(
        self,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = match self {
            FloatData::F32(v) => Tensor::from_vec(v, shape, &Device::Cpu)?,
            FloatData::F64(v) => Tensor::from_vec(v, shape, &Device::Cpu)?,
        };
        t.to_dtype(dtype)?.to_device(device)
    }
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}
