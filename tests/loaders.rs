//! Loader parity on fixtures made with transformers/timm (scripts/make_loader_fixtures.py),
//! and clear one-line errors for bad checkpoints.
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use neuronpath::model::{load_model, LoadOptions, ModelError};
use std::collections::HashMap;

fn opts(eps: Option<f64>, double: bool) -> LoadOptions {
    LoadOptions {
        dtype: DType::F64,
        heads: Some(4),
        ln_eps: eps,
        double_fc_norm: double,
        ..Default::default()
    }
}

fn logits(rel: &str, o: &LoadOptions) -> Vec<Vec<f64>> {
    let model = load_with(rel, o);
    let x = npy("loaders/input.npy");
    let out = model
        .forward(&x, &[], None, neuronpath::model::Mode::Frozen)
        .unwrap();
    to_vec2(&out.logits)
}

fn check(key: &str, rel: &str, o: &LoadOptions) {
    let want = vec2(&json("loaders/expected.json")[key]["logits"]);
    for (g, w) in logits(rel, o).iter().zip(&want) {
        assert_close(g, w, 1e-10, key);
    }
}

#[test]
fn hugging_face_vit_matches_transformers() {
    // heads and eps come from config.json here; the options must not be needed.
    check(
        "hf_vit",
        "loaders/hf_vit",
        &LoadOptions {
            dtype: DType::F64,
            ..Default::default()
        },
    );
}

#[test]
fn hugging_face_deit_matches_transformers() {
    check(
        "deit",
        "loaders/hf_deit",
        &LoadOptions {
            dtype: DType::F64,
            ..Default::default()
        },
    );
}

#[test]
fn timm_safetensors_matches_timm() {
    check(
        "timm_vit",
        "loaders/timm_vit.safetensors",
        &opts(Some(1e-12), false),
    );
}

#[test]
fn google_npz_matches_reference() {
    check(
        "google_vit_eps1e-6",
        "loaders/google_vit.npz",
        &opts(None, false),
    );
}

#[test]
fn mae_pth_matches_timm_with_single_and_double_fc_norm() {
    check("mae_vit", "loaders/mae_vit.pth", &opts(None, false));
    check(
        "mae_vit_double_fc_norm",
        "loaders/mae_vit.pth",
        &opts(None, true),
    );
}

#[test]
fn all_layouts_of_the_same_weights_agree() {
    let eps = Some(1e-6);
    let a = logits("loaders/hf_vit", &opts(eps, false));
    for rel in ["loaders/timm_vit.safetensors", "loaders/google_vit.npz"] {
        for (g, w) in logits(rel, &opts(eps, false)).iter().zip(&a) {
            assert_close(g, w, 1e-12, rel);
        }
    }
}

fn err(path: &std::path::Path, o: &LoadOptions) -> String {
    match load_model(path, o) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

fn timm_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("loaders/timm_vit.safetensors"), &Device::Cpu).unwrap()
}

fn write_timm(dir: &tempfile::TempDir, t: &HashMap<String, Tensor>) -> std::path::PathBuf {
    let p = dir.path().join("bad.safetensors");
    candle_core::safetensors::save(t, &p).unwrap();
    p
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = timm_tensors();
    t.remove("blocks.1.mlp.fc2.bias");
    let e = err(&write_timm(&dir, &t), &opts(None, false));
    assert!(e.contains("missing tensor `blocks.1.mlp.fc2.bias`"), "{e}");
    assert!(e.contains("bad.safetensors"), "{e}");
}

#[test]
fn wrong_shape_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = timm_tensors();
    t.insert(
        "blocks.2.attn.proj.weight".into(),
        Tensor::zeros((24, 12), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = err(&write_timm(&dir, &t), &opts(None, false));
    assert!(
        e.contains("`blocks.2.attn.proj.weight` has shape [24, 12], expected [24, 24]"),
        "{e}"
    );
}

#[test]
fn nan_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = timm_tensors();
    let mut v: Vec<f32> = t["blocks.0.mlp.fc1.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    v[5] = f32::NAN;
    t.insert(
        "blocks.0.mlp.fc1.weight".into(),
        Tensor::from_vec(v, (48, 24), &Device::Cpu).unwrap(),
    );
    let e = err(&write_timm(&dir, &t), &opts(None, false));
    assert!(e.contains("`blocks.0.mlp.fc1.weight` contains NaN"), "{e}");
}

#[test]
fn malicious_pickle_is_refused_without_running_it() {
    let e = err(&fixture("loaders/malicious.pth"), &opts(None, false));
    assert!(
        e.contains("refusing unsafe pickle") && e.contains("system"),
        "{e}"
    );
}

#[test]
fn unknown_and_truncated_files_give_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"this is not a checkpoint at all").unwrap();
    assert!(err(&junk, &opts(None, false)).contains("unknown checkpoint layout"));
    for rel in [
        "loaders/google_vit.npz",
        "loaders/mae_vit.pth",
        "loaders/timm_vit.safetensors",
    ] {
        let bytes = std::fs::read(fixture(rel)).unwrap();
        let cut = dir.path().join(format!("cut-{}", rel.replace('/', "-")));
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = err(&cut, &opts(None, false));
        assert!(e.contains("cut-"), "error should name the file: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    let missing = dir.path().join("nope.npz");
    assert!(err(&missing, &opts(None, false)).contains("no such file"));
}

#[test]
fn heads_that_do_not_divide_hidden_are_an_error() {
    let e = match load_model(
        &fixture("loaders/timm_vit.safetensors"),
        &LoadOptions::default(),
    ) {
        Err(ModelError::Format { msg, .. }) => msg,
        other => panic!("expected a format error, got {:?}", other.map(|_| ())),
    };
    assert!(e.contains("heads"), "{e}");
}
