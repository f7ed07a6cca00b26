//! The linear probe (`train --backbone DIR --head-only`) and the DINOv2 folder writer, on the
//! tiny transformers-made DINOv2 fixtures and the committed Fashion-MNIST subset.
mod common;

use candle_core::{DType, Device, Tensor};
use common::{fixture, json, vec2};
use neuronpath::io::fashion_mnist::{FashionMnist, Split};
use neuronpath::io::preprocess::Normalization;
use neuronpath::model::save::Preprocessing;
use neuronpath::model::save_dinov2::save_hf_dinov2;
use neuronpath::model::{load_model, LoadOptions, Mode, Pool, Vit};
use neuronpath::training::probe::{self, Features, ProbeInput, ProbeRecipe};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("neuronpath-probe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn opts(dtype: DType) -> LoadOptions {
    LoadOptions {
        dtype,
        ..Default::default()
    }
}

/// At the input size of input.npy and expected.json (the position grid interpolated).
fn at28() -> LoadOptions {
    LoadOptions {
        dtype: DType::F64,
        image_size: Some(28),
        ..Default::default()
    }
}

fn forward(m: &Vit, x: &Tensor) -> Vec<Vec<f64>> {
    m.forward(&x.to_dtype(m.dtype()).unwrap(), &[], None, Mode::Frozen)
        .unwrap()
        .logits
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2()
        .unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Every backbone tensor of `a` and `b` (not the head), exactly equal.
fn same_backbone(a: &Vit, b: &Vit) {
    assert_eq!(flat(&a.patch.weight), flat(&b.patch.weight), "patch");
    assert_eq!(flat(&a.prefix), flat(&b.prefix), "prefix tokens");
    assert_eq!(flat(&a.pos), flat(&b.pos), "position embeddings");
    assert_eq!(flat(&a.norm.weight), flat(&b.norm.weight), "final norm");
    assert_eq!(flat(&a.norm.bias), flat(&b.norm.bias), "final norm bias");
    assert_eq!(a.blocks.len(), b.blocks.len());
    for (i, (x, y)) in a.blocks.iter().zip(&b.blocks).enumerate() {
        for (n, p, q) in [
            ("qkv", &x.qkv, &y.qkv),
            ("proj", &x.proj, &y.proj),
            ("fc1", &x.fc1, &y.fc1),
            ("fc2", &x.fc2, &y.fc2),
        ] {
            assert_eq!(flat(&p.weight), flat(&q.weight), "block {i} {n}");
            assert_eq!(
                p.bias.as_ref().map(flat),
                q.bias.as_ref().map(flat),
                "block {i} {n} bias"
            );
        }
        assert_eq!(
            flat(&x.ln_att.weight),
            flat(&y.ln_att.weight),
            "block {i} norm1"
        );
        assert_eq!(
            flat(&x.ln_ffn.bias),
            flat(&y.ln_ffn.bias),
            "block {i} norm2"
        );
    }
}

fn pre(m: &Vit) -> Preprocessing {
    Preprocessing {
        image_mean: [0.485, 0.456, 0.406],
        image_std: [0.229, 0.224, 0.225],
        size: m.cfg.image_size,
    }
}

/// Writing a loaded DINOv2 (headless, classifier, classifier with registers) and loading it
/// again gives the same network, which is still transformers' (expected.json, 1e-10).
#[test]
fn dinov2_writer_round_trips_and_matches_transformers() {
    let want = json("families/expected.json");
    let x = common::npy("families/input.npy")
        .to_dtype(DType::F64)
        .unwrap();
    for name in ["dinov2", "dinov2_cls", "dinov2_reg_cls"] {
        let src = load_model(&fixture(&format!("families/{name}")), &at28()).unwrap();
        let dir = scratch(&format!("rt-{name}"));
        let out = dir.join("model");
        save_hf_dinov2(&src.model, &out, None, &pre(&src.model)).unwrap();
        let back = load_model(&out, &opts(DType::F64)).unwrap();
        assert_eq!(back.family, src.family, "{name}");
        assert_eq!(back.model.cfg.pool, src.model.cfg.pool, "{name}");
        assert_eq!(back.model.cfg.registers, src.model.cfg.registers, "{name}");
        assert_eq!(back.model.cfg.embedding, src.model.cfg.embedding, "{name}");
        same_backbone(&src.model, &back.model);
        let got = forward(&back.model, &x);
        assert_eq!(got, forward(&src.model, &x), "{name}: outputs changed");
        let expected = vec2(&want[name]["output"]);
        for (g, w) in got.iter().zip(&expected) {
            common::assert_close(g, w, 1e-10, name);
        }
        // The written config is a transformers config of the right class.
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        let arch = cfg["architectures"][0].as_str().unwrap().to_string();
        let registers = name.contains("reg");
        assert_eq!(arch.contains("WithRegisters"), registers, "{name}: {arch}");
        assert_eq!(arch.ends_with("Model"), name == "dinov2", "{name}: {arch}");
    }
}

/// A CLS-only head is written as DINOv2's [CLS, patch mean] head with zeros on the mean half:
/// the logits are unchanged.
#[test]
fn cls_probe_written_as_dinov2_classifier() {
    let src = load_model(&fixture("families/dinov2"), &at28()).unwrap();
    let d = src.model.cfg.hidden;
    let head = probe::Probe {
        classes: 3,
        dim: d,
        weight: (0..3 * d)
            .map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.5)
            .collect(),
        bias: vec![0.1, -0.2, 0.3],
    };
    let m = probe::probe_model(&src.model, &head, ProbeInput::Cls).unwrap();
    let x = common::npy("families/input.npy")
        .to_dtype(DType::F64)
        .unwrap();
    let want = forward(&m, &x);
    let dir = scratch("clsprobe");
    let out = dir.join("model");
    save_hf_dinov2(&m, &out, None, &pre(&m)).unwrap();
    let back = load_model(&out, &opts(DType::F64)).unwrap().model;
    assert_eq!(back.cfg.pool, Pool::ClsMeanPatch);
    let w = back.head.weight.to_vec2::<f64>().unwrap();
    assert!(w.iter().all(|r| r[d..].iter().all(|&v| v == 0.0)));
    let got = forward(&back, &x);
    for (g, w) in got.iter().zip(&want) {
        common::assert_close(g, w, 1e-13, "cls probe");
    }
    // And the logits are the probe applied to the backbone's final-LayerNorm CLS.
    let emb = forward(&src.model, &x);
    for (e, g) in emb.iter().zip(&got) {
        let direct: Vec<f64> = (0..3)
            .map(|c| head.bias[c] + (0..d).map(|j| head.weight[c * d + j] * e[j]).sum::<f64>())
            .collect();
        common::assert_close(g, &direct, 1e-12, "probe on the embedding");
    }
}

/// Separable features: the regression fits them, and its (folded) head classifies raw features.
#[test]
fn fit_separates_blobs_and_is_deterministic() {
    let (n, dim, classes) = (300, 5, 3);
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let c = i % classes;
        for j in 0..dim {
            // Class c sits at 10 + 4c on feature c, with a deterministic wobble, an offset and
            // a scale the standardisation has to absorb.
            let wobble = ((i * 31 + j * 17) % 11) as f32 / 11.0 - 0.5;
            let centre = if j == c { 4.0 } else { 0.0 };
            values.push(100.0 + 50.0 * (centre + wobble));
        }
        labels.push(c as u8);
    }
    let f = Features {
        dim,
        values,
        labels,
    };
    let recipe = ProbeRecipe {
        epochs: 30,
        batch: 32,
        ..Default::default()
    };
    let (p, hist) = probe::fit(&f, classes, &recipe, false).unwrap();
    assert_eq!(p.accuracy(&f), 1.0);
    assert!(hist.last().unwrap().loss < hist[0].loss);
    let (q, _) = probe::fit(&f, classes, &recipe, false).unwrap();
    assert_eq!(p, q, "same seed, same head");
    let bad = Features {
        dim,
        values: vec![f32::NAN; n * dim],
        labels: f.labels.clone(),
    };
    let err = probe::fit(&bad, classes, &recipe, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-finite"), "{err}");
    for (r, flag) in [
        (
            ProbeRecipe {
                epochs: 0,
                ..Default::default()
            },
            "--epochs",
        ),
        (
            ProbeRecipe {
                lr: f64::NAN,
                ..Default::default()
            },
            "--lr",
        ),
        (
            ProbeRecipe {
                weight_decay: -1.0,
                ..Default::default()
            },
            "--wd",
        ),
    ] {
        let err = probe::fit(&f, classes, &r, false).unwrap_err().to_string();
        assert!(err.contains(flag), "{err}");
    }
}

/// The cache answers only for the same backbone, images and pipeline.
#[test]
fn feature_cache_is_keyed() {
    let m = load_model(&fixture("families/dinov2"), &opts(DType::F32))
        .unwrap()
        .model;
    let data = FashionMnist::load(&fixture("fashion-mnist"), Split::Test)
        .unwrap()
        .truncate(6);
    let dir = scratch("cache");
    let path = dir.join("f.safetensors");
    let norm = Normalization::ImageNet;
    let f = probe::cached_features(&path, &m, &data, ProbeInput::ClsMeanPatch, norm, "t", false)
        .unwrap();
    assert_eq!((f.len(), f.dim), (6, 2 * m.cfg.hidden));
    let key = probe::cache_key(&m, &data, ProbeInput::ClsMeanPatch, norm).unwrap();
    assert_eq!(probe::read_cache(&path, &key, 6, f.dim).as_ref(), Some(&f));
    let other = probe::cache_key(&m, &data, ProbeInput::Cls, norm).unwrap();
    assert_ne!(key, other);
    let half = probe::cache_key(&m, &data, ProbeInput::ClsMeanPatch, Normalization::Half).unwrap();
    assert_ne!(key, half);
    let fewer = data.clone().truncate(5);
    assert_ne!(
        key,
        probe::cache_key(&m, &fewer, ProbeInput::ClsMeanPatch, norm).unwrap()
    );
    assert!(probe::read_cache(&path, &other, 6, f.dim).is_none());
    assert!(probe::read_cache(&path, &key, 7, f.dim).is_none());
    std::fs::write(&path, b"not a safetensors file").unwrap();
    assert!(probe::read_cache(&path, &key, 6, f.dim).is_none());
    // The features are the extractor's: CLS and patch mean of the final-LayerNorm tokens.
    let x: Vec<f32> = (0..6)
        .flat_map(|i| probe::pixels(&data, i, m.cfg.image_size, norm))
        .collect();
    let s = m.cfg.image_size;
    let x = Tensor::from_vec(x, (6, 3, s, s), &Device::Cpu).unwrap();
    let emb = forward(&m, &x);
    for (i, e) in emb.iter().enumerate() {
        let got: Vec<f64> = f.values[i * f.dim..i * f.dim + m.cfg.hidden]
            .iter()
            .map(|&v| v as f64)
            .collect();
        common::assert_close(&got, e, 1e-6, "cached CLS feature");
    }
}

fn neuronpath(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neuronpath"))
        .args(args)
        .env("CANDLE_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// `train --backbone DIR --head-only` end to end: the written folder loads, holds the backbone
/// unchanged and the trained head, and predicts what the probe computes on the cached features.
#[test]
fn head_only_cli_end_to_end() {
    let dir = scratch("cli");
    let out = dir.join("run");
    let backbone = fixture("families/dinov2_reg_cls");
    let data = fixture("fashion-mnist");
    let args = [
        "train",
        "--backbone",
        backbone.to_str().unwrap(),
        "--head-only",
        "--probe-input",
        "cls-mean-patch",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--limit",
        "80",
        "--test-limit",
        "40",
        "--epochs",
        "40",
    ];
    let run = neuronpath(&args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("test accuracy"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("probe.json")).unwrap()).unwrap();
    assert_eq!(summary["train_images"], 80);
    assert_eq!(summary["test_images"], 40);
    let train_acc = summary["train_accuracy"].as_f64().unwrap();
    assert!(
        train_acc > 0.5,
        "a linear probe fits 80 images: {train_acc}"
    );

    let src = load_model(&backbone, &opts(DType::F32)).unwrap();
    let got = load_model(&out.join("model"), &opts(DType::F32)).unwrap();
    assert_eq!(got.family, src.family);
    assert_eq!(got.model.cfg.pool, Pool::ClsMeanPatch);
    assert_eq!(got.model.cfg.num_classes, 10);
    assert!(!got.model.cfg.embedding);
    assert_eq!(got.class_names.as_ref().unwrap()[9], "Ankle boot");
    same_backbone(&src.model, &got.model);

    // The model's logits on the test images = the head applied to the cached features.
    let test = FashionMnist::load(&data, Split::Test).unwrap().truncate(40);
    let norm = Normalization::ImageNet;
    let key = probe::cache_key(&src.model, &test, ProbeInput::ClsMeanPatch, norm).unwrap();
    let dim = 2 * src.model.cfg.hidden;
    let feats = probe::read_cache(&out.join("features/test.safetensors"), &key, 40, dim)
        .expect("test features cached under the backbone's key");
    let s = got.model.cfg.image_size;
    let x: Vec<f32> = (0..40)
        .flat_map(|i| probe::pixels(&test, i, s, norm))
        .collect();
    let logits = forward(
        &got.model,
        &Tensor::from_vec(x, (40, 3, s, s), &Device::Cpu).unwrap(),
    );
    let w = flat(&got.model.head.weight);
    let b = flat(got.model.head.bias.as_ref().unwrap());
    let mut hits = 0;
    for (i, l) in logits.iter().enumerate() {
        let f = &feats.values[i * dim..(i + 1) * dim];
        let direct: Vec<f64> = (0..10)
            .map(|c| b[c] + (0..dim).map(|j| w[c * dim + j] * f[j] as f64).sum::<f64>())
            .collect();
        common::assert_close(l, &direct, 1e-4, "model logits vs head on cached features");
        let pred = (0..10).max_by(|&a, &c| l[a].total_cmp(&l[c])).unwrap();
        hits += usize::from(pred == test.labels[i] as usize);
    }
    let test_acc = summary["test_accuracy"].as_f64().unwrap();
    assert!(
        (hits as f64 / 40.0 - test_acc).abs() <= 1.0 / 40.0,
        "{hits}/40 vs {test_acc}"
    );

    // Again: the features come from the cache, the head is the same; the folder is not
    // replaced without --force.
    let again = neuronpath(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(err.contains("--force"), "{err}");
    let mut forced = args.to_vec();
    forced.push("--force");
    let again = neuronpath(&forced);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(err.contains("cached features"), "{err}");
    let summary2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("probe.json")).unwrap()).unwrap();
    assert_eq!(summary2["test_accuracy"], summary["test_accuracy"]);
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Flag errors are one line naming the flag; a backbone without a classifier layout is refused
/// before any feature is computed.
#[test]
fn head_only_flag_errors() {
    let dir = scratch("errors");
    let out = dir.join("run");
    let data = fixture("fashion-mnist");
    let dinov2 = fixture("families/dinov2");
    let clip = fixture("families/clip");
    let base = |model: &Path| -> Vec<String> {
        [
            "train",
            "--backbone",
            model.to_str().unwrap(),
            "--head-only",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--limit",
            "8",
        ]
        .map(String::from)
        .to_vec()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["train".into(), "--head-only".into()], "--backbone"),
        (
            vec![
                "train".into(),
                "--backbone".into(),
                dinov2.display().to_string(),
            ],
            "--head-only",
        ),
        (
            [base(&dinov2), vec!["--epochs".into(), "0".into()]].concat(),
            "--epochs",
        ),
        (
            [base(&dinov2), vec!["--test-limit".into(), "0".into()]].concat(),
            "--test-limit",
        ),
        ([base(&dinov2), vec!["--lr=-1".into()]].concat(), "--lr"),
        (
            [base(&dinov2), vec!["--hidden".into(), "8".into()]].concat(),
            "--hidden",
        ),
        (base(&clip), "no Hugging Face classifier layout"),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = neuronpath(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!out.join("features").exists(), "{args:?} computed features");
    }
}
