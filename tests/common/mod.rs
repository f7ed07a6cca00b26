//! Shared helpers of the integration tests: fixture paths, JSON goldens, tolerances.
#![allow(dead_code)]
use candle_core::{DType, Device, Tensor};
use neuronpath::model::{load_model, LoadOptions, Vit};
use serde_json::Value;
use std::path::PathBuf;

/// The fixtures folder: $NEURONPATH_FIXTURES when set, else this checkout's tests/fixtures, else
/// tests/fixtures under the current directory (a test binary run from a copy of the repository
/// on another machine).
pub fn fixture_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEURONPATH_FIXTURES") {
        return PathBuf::from(dir);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("tests/fixtures")
    }
}

pub fn fixture(rel: &str) -> PathBuf {
    fixture_root().join(rel)
}

pub fn json(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

pub fn vec1(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

pub fn vec2(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(vec1).collect()
}

pub fn load(rel: &str, dtype: DType) -> Vit {
    let opts = LoadOptions {
        dtype,
        ..Default::default()
    };
    load_model(&fixture(rel), &opts).unwrap().model
}

pub fn load_with(rel: &str, opts: &LoadOptions) -> Vit {
    load_model(&fixture(rel), opts).unwrap().model
}

pub fn npy(rel: &str) -> Tensor {
    Tensor::read_npy(fixture(rel))
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap()
}

/// Largest relative error, relative to the largest magnitude of the expected values
/// (element-wise relative error is meaningless for values near zero).
pub fn max_rel(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-300);
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / scale)
        .fold(0.0, f64::max)
}

pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    let e = max_rel(got, want);
    assert!(
        e <= tol,
        "{what}: relative error {e:e} > {tol:e}\n got {got:?}\nwant {want:?}"
    );
}

pub fn to_vec2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

/// Equal JSON up to floating-point noise from different batch compositions (GEMM blocking):
/// numbers within 1e-12 relative, everything else exactly.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Two runs' records are the same, pairwise, up to [`same`].
pub fn assert_same_records(a: &[Value], b: &[Value]) {
    assert_eq!(a.len(), b.len(), "record counts");
    for (x, y) in a.iter().zip(b) {
        assert!(same(x, y), "records differ:\n{x}\n{y}");
    }
}
