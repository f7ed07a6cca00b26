//! DINOv2 (+ registers), CLIP vision towers, DeiT distilled and timm LayerScale/register
//! checkpoints made by transformers / timm (scripts/make_family_fixtures.py, never run by CI):
//! float64 outputs and CLS hidden units within 1e-10 of theirs; bad checkpoints give one-line
//! errors naming the file and the tensor.
mod common;
use candle_core::{DType, Tensor};
use common::*;
use neuronpath::model::load::Family;
use neuronpath::model::{load_model, LoadOptions, Mode, Pool, Rows};
use std::path::Path;

fn f64_opts() -> LoadOptions {
    LoadOptions {
        dtype: DType::F64,
        image_size: Some(28),
        ..Default::default()
    }
}

fn rows2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

/// Output and CLS (or distillation-row) hidden units against the reference.
fn check(key: &str, rel: &str, family: Family) {
    let want = &json("families/expected.json")[key];
    let mut opts = f64_opts();
    // timm files do not record the head count.
    opts.heads = Some(4);
    let loaded = load_model(&fixture(rel), &opts).unwrap();
    assert_eq!(loaded.family, family, "{key}");
    let m = loaded.model;
    assert_eq!(
        m.cfg.embedding,
        want["kind"] == "embedding",
        "{key}: output kind"
    );
    let x = npy("families/input.npy");
    let mut tokens = vec![(Rows::Cls, "hidden_cls")];
    if want.get("hidden_dist").is_some() {
        tokens.push((Rows::Dist, "hidden_dist"));
    }
    for (rows, name) in tokens {
        let out = m.forward(&x, &[], Some(rows), Mode::Frozen).unwrap();
        for (g, w) in rows2(&out.logits).iter().zip(&vec2(&want["output"])) {
            assert_close(g, w, 1e-10, &format!("{key} output"));
        }
        let layers = want[name].as_array().unwrap();
        assert_eq!(out.hidden.len(), layers.len());
        for (l, (h, w)) in out.hidden.iter().zip(layers).enumerate() {
            for (g, w) in rows2(h).iter().zip(&vec2(w)) {
                assert_close(g, w, 1e-10, &format!("{key} {name} layer {l}"));
            }
        }
        // The op-by-op oracle agrees too.
        let oracle = m.forward(&x, &[], Some(rows), Mode::Train).unwrap();
        for (g, w) in rows2(&oracle.logits).iter().zip(&vec2(&want["output"])) {
            assert_close(g, w, 1e-10, &format!("{key} oracle output"));
        }
    }
}

#[test]
fn dinov2_headless_with_bicubic_downsampled_positions() {
    check("dinov2", "families/dinov2", Family::Dinov2);
    let m = load("families/dinov2", DType::F64);
    // The file's own grid (5x5 at patch 7) when no size is asked for.
    assert_eq!((m.cfg.image_size, m.cfg.grid()), (35, 5));
    assert!(m.cfg.layer_scale && m.cfg.embedding && !m.cfg.pre_norm);
}

#[test]
fn dinov2_classifier_on_cls_and_mean_patches_with_upsampled_positions() {
    check("dinov2_cls", "families/dinov2_cls", Family::Dinov2);
    let m = load_model(&fixture("families/dinov2_cls"), &f64_opts())
        .unwrap()
        .model;
    assert_eq!(m.cfg.pool, Pool::ClsMeanPatch);
    assert_eq!(m.cfg.num_classes, 5);
}

#[test]
fn dinov2_with_registers_antialiased_positions_registers_outside_the_mean() {
    check(
        "dinov2_reg_cls",
        "families/dinov2_reg_cls",
        Family::Dinov2Registers,
    );
    let m = load_model(&fixture("families/dinov2_reg_cls"), &f64_opts())
        .unwrap()
        .model;
    assert_eq!((m.cfg.registers, m.cfg.prefix_tokens), (2, 3));
}

#[test]
fn clip_vision_tower_quick_gelu_pre_and_post_layernorm() {
    check("clip", "families/clip", Family::Clip);
    let l = load_model(&fixture("families/clip"), &f64_opts()).unwrap();
    assert_eq!(l.model.cfg.gelu, neuronpath::model::Gelu::Quick);
    assert!(l.model.cfg.pre_norm);
    // CLIP's own preprocessing statistics when the folder does not state them.
    assert_eq!(l.normalization.unwrap()[0][0], 0.48145466);
}

#[test]
fn clip_with_projection_from_safetensors_and_from_pytorch_model_bin() {
    check("clip_proj", "families/clip_proj", Family::Clip);
    check("clip_proj", "families/clip_proj_bin", Family::Clip);
}

#[test]
fn deit_distilled_mean_of_both_heads_and_both_token_rows() {
    check(
        "deit_distilled",
        "families/deit_distilled",
        Family::DeitDistilled,
    );
    let m = load_model(&fixture("families/deit_distilled"), &f64_opts())
        .unwrap()
        .model;
    assert_eq!(m.cfg.pool, Pool::ClsDist);
}

#[test]
fn timm_layerscale_and_registers_without_class_position() {
    check(
        "timm_dinov2_reg",
        "families/timm_dinov2_reg.safetensors",
        Family::Dinov2Registers,
    );
}

#[test]
fn f32_outputs_follow_f64() {
    for rel in [
        "families/dinov2",
        "families/dinov2_reg_cls",
        "families/clip",
        "families/deit_distilled",
    ] {
        let x = npy("families/input.npy");
        let out = |dtype| {
            let mut o = f64_opts();
            o.dtype = dtype;
            let m = load_model(&fixture(rel), &o).unwrap().model;
            rows2(&m.forward(&x, &[], None, Mode::Frozen).unwrap().logits)
        };
        for (a, b) in out(DType::F32).iter().zip(&out(DType::F64)) {
            assert_close(a, b, 1e-4, rel);
        }
    }
}

/// Copies a fixture folder into a temporary one, for damaging.
fn scratch(rel: &str, name: &str) -> std::path::PathBuf {
    let dst = std::env::temp_dir().join(format!("np-families-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture(rel)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

/// Rewrites a folder's model.safetensors without the tensors `drop` selects (or with one
/// reshaped).
fn rewrite(dir: &Path, edit: impl Fn(&str, Tensor) -> Option<Tensor>) {
    let st = dir.join("model.safetensors");
    let t = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
    let kept: std::collections::HashMap<String, Tensor> = t
        .into_iter()
        .filter_map(|(k, v)| edit(&k, v).map(|v| (k, v)))
        .collect();
    candle_core::safetensors::save(&kept, &st).unwrap();
}

fn one_line_error(dir: &Path) -> String {
    let err = match load_model(dir, &f64_opts()) {
        Ok(_) => panic!("{}: loaded a damaged checkpoint", dir.display()),
        Err(e) => e.to_string(),
    };
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(
        err.contains(&dir.display().to_string()),
        "names the folder: {err}"
    );
    err
}

#[test]
fn partial_or_wrong_checkpoints_name_the_file_and_the_tensor() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "families/dinov2",
            "encoder.layer.1.layer_scale2.lambda1",
            "missing",
        ),
        ("families/dinov2_reg_cls", "classifier.weight", "shape"),
        ("families/clip", "pre_layrnorm.weight", "missing"),
        (
            "families/clip_proj",
            "vision_model.encoder.layers.2.self_attn.k_proj.bias",
            "missing",
        ),
        (
            "families/deit_distilled",
            "distillation_classifier.bias",
            "missing",
        ),
    ];
    for (i, (rel, tensor, how)) in cases.iter().enumerate() {
        let dir = scratch(rel, &format!("case{i}"));
        rewrite(&dir, |k, v| match (k == *tensor, *how) {
            (false, _) => Some(v),
            (true, "missing") => None,
            (true, _) => Some(v.narrow(1, 0, 3).unwrap()),
        });
        let err = one_line_error(&dir);
        assert!(err.contains(tensor), "{rel}: names `{tensor}`: {err}");
        assert!(
            err.contains("model.safetensors"),
            "{rel}: names the file: {err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A DINOv2 config that asks for the SwiGLU MLP names the option.
    let dir = scratch("families/dinov2", "swiglu");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"use_swiglu_ffn\": false", "\"use_swiglu_ffn\": true"),
    )
    .unwrap();
    assert!(one_line_error(&dir).contains("use_swiglu_ffn"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn predict_json_prints_a_headless_models_embedding() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neuronpath"))
        .args(["predict", "--json", "--dtype", "f64", "--model"])
        .arg(fixture("families/clip_proj_bin"))
        .arg(fixture("families/input.npy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = vec2(&json("families/expected.json")["clip_proj"]["output"]);
    for (img, w) in v["images"].as_array().unwrap().iter().zip(&want) {
        assert_close(
            &vec1(&img["embedding"]),
            w,
            1e-10,
            "predict --json embedding",
        );
    }
}
