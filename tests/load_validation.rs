//! Configuration values and tensors that disagree or make no sense are one-line errors naming the
//! file and the value, never a panic or a silently different model.
mod common;
use candle_core::{DType, Device, Tensor};
use common::fixture;
use neuronpath::model::{load_model, LoadOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn err(path: &Path, o: &LoadOptions) -> String {
    let e = load_model(path, o).map(|_| ()).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    e
}

fn heads4() -> LoadOptions {
    LoadOptions {
        heads: Some(4),
        ..Default::default()
    }
}

fn timm() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("loaders/timm_vit.safetensors"), &Device::Cpu).unwrap()
}

fn save(dir: &Path, t: &HashMap<String, Tensor>) -> PathBuf {
    let p = dir.join("m.safetensors");
    candle_core::safetensors::save(t, &p).unwrap();
    p
}

fn hf_with_config(dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = fixture("loaders/hf_vit");
    let d = dir.join("vit");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(src.join("model.safetensors"), d.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(d.join("config.json"), cfg.to_string()).unwrap();
    d
}

#[test]
fn block_tensors_of_unimplemented_options_are_refused() {
    // A timm ViT with qk-norm (or relative position bias, ...) would load as a plain ViT and
    // compute another function if its extra tensors were ignored.
    for extra in [
        "attn.q_norm.weight",
        "attn.relative_position_bias_table",
        "mlp.norm.weight",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut t = timm();
        let name = format!("blocks.1.{extra}");
        t.insert(
            name.clone(),
            Tensor::ones(4, DType::F32, &Device::Cpu).unwrap(),
        );
        let e = err(&save(dir.path(), &t), &heads4());
        assert!(
            e.contains(&format!("`{name}`")) && e.contains("qk-norm"),
            "{e}"
        );
    }
    // The plain file still loads.
    let dir = tempfile::tempdir().unwrap();
    load_model(&save(dir.path(), &timm()), &heads4()).unwrap();
}

#[test]
fn integer_typed_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = timm();
    let w = t["blocks.0.mlp.fc1.weight"].to_dtype(DType::I64).unwrap();
    t.insert("blocks.0.mlp.fc1.weight".into(), w);
    let e = err(&save(dir.path(), &t), &heads4());
    assert!(
        e.contains("`blocks.0.mlp.fc1.weight` has integer dtype I64"),
        "{e}"
    );
}

#[test]
fn zero_sized_patch_kernel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = timm();
    t.insert(
        "patch_embed.proj.weight".into(),
        Tensor::zeros((24, 3, 0, 0), DType::F32, &Device::Cpu).unwrap(),
    );
    let e = err(&save(dir.path(), &t), &heads4());
    assert!(e.contains("zero-sized patch kernel"), "{e}");
}

#[test]
fn layer_norm_eps_must_be_positive_and_finite() {
    let dir = tempfile::tempdir().unwrap();
    let d = hf_with_config(dir.path(), |c| c["layer_norm_eps"] = (-1e-6).into());
    let e = err(&d, &LoadOptions::default());
    assert!(e.contains("layer_norm_eps is -0.000001"), "{e}");
    for bad in [f64::NAN, -1.0, 0.0, f64::INFINITY] {
        let o = LoadOptions {
            ln_eps: Some(bad),
            ..Default::default()
        };
        let e = err(&fixture("loaders/hf_vit"), &o);
        assert!(
            e.contains("--ln-eps") && e.contains("positive finite"),
            "{e}"
        );
    }
}

#[test]
fn num_hidden_layers_must_match_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let d = hf_with_config(dir.path(), |c| c["num_hidden_layers"] = 1.into());
    let e = err(&d, &LoadOptions::default());
    assert!(
        e.contains("num_hidden_layers is 1 but the weights hold") && e.contains("config.json"),
        "{e}"
    );
    let d = hf_with_config(dir.path(), |c| c["num_hidden_layers"] = "two".into());
    assert!(err(&d, &LoadOptions::default()).contains("num_hidden_layers is \"two\""));
}

#[test]
fn config_values_of_the_wrong_type_or_disagreeing_with_the_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "hidden_size",
            "32".into(),
            "hidden_size is \"32\", expected a positive integer",
        ),
        (
            "num_attention_heads",
            2.5.into(),
            "num_attention_heads is 2.5",
        ),
        ("patch_size", 0.into(), "patch_size is 0"),
        ("image_size", (-32).into(), "image_size is -32"),
        (
            "layer_norm_eps",
            "1e-6".into(),
            "layer_norm_eps is \"1e-6\"",
        ),
        (
            "hidden_size",
            1_000_000_000_000u64.into(),
            "hidden_size is 1000000000000 but the weights",
        ),
        (
            "intermediate_size",
            7.into(),
            "intermediate_size is 7 but the weights",
        ),
        (
            "num_channels",
            1.into(),
            "num_channels is 1 but the weights",
        ),
        ("patch_size", 4.into(), "patch_size is 4 but the weights"),
        ("image_size", 64.into(), "image_size is 64"),
        (
            "num_labels",
            3.into(),
            "num_labels gives 3 classes but the classifier has",
        ),
        (
            "id2label",
            serde_json::json!({}),
            "id2label gives 0 classes",
        ),
    ];
    for (key, value, needle) in cases {
        let d = hf_with_config(dir.path(), |c| c[key] = value.clone());
        let e = err(&d, &LoadOptions::default());
        assert!(
            e.contains(needle) && e.contains("config.json"),
            "{key}: {e}"
        );
    }
    // The unedited config loads.
    load_model(&hf_with_config(dir.path(), |_| {}), &LoadOptions::default()).unwrap();
}

#[test]
fn weights_that_overflow_are_refused_naming_the_largest() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = timm();
    let w = &t["patch_embed.proj.weight"];
    let huge = (w.sign().unwrap() * 3e38).unwrap();
    t.insert("patch_embed.proj.weight".into(), huge);
    let e = err(&save(dir.path(), &t), &heads4());
    assert!(
        e.contains("NaN or infinite") && e.contains("`patch_embed.proj.weight`"),
        "{e}"
    );
    // The same values are representable and harmless in f64.
    let o = LoadOptions {
        dtype: DType::F64,
        ..heads4()
    };
    load_model(&dir.path().join("m.safetensors"), &o).unwrap();
}

#[test]
fn image_size_must_give_a_grid_of_bounded_size() {
    for (size, needle) in [
        (0, "not a positive multiple"),
        (17, "not a positive multiple"),
        (16 * 300, "at most 256x256"),
    ] {
        let o = LoadOptions {
            image_size: Some(size),
            ..heads4()
        };
        let e = err(&fixture("loaders/timm_vit.safetensors"), &o);
        assert!(e.contains(needle), "{size}: {e}");
    }
}
