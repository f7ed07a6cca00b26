//! `prune --save-model` for the heads beyond the paper's: DINOv2's [CLS, mean of patches]
//! classifier (with and without registers), DeiT distilled (two heads) and a CLIP tower with its
//! projection (F a direction). The saved checkpoint loads with the printed flags, keeps the
//! head, tokens and options, and `predict` gives the pruned model's outputs: the original model
//! with the saved masks applied to its CLS neurons as an intervention (op by op), within 1e-10.
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use neuronpath::model::intervene::{Edit, LayerEdit};
use neuronpath::model::{load_model, LoadOptions, Mode, Rows};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_neuronpath");

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("np-fprune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Four images (the fixture inputs and two rescaled copies), two per class.
fn inputs(dir: &Path) -> (PathBuf, PathBuf, Tensor) {
    let x = npy("families/input.npy").to_dtype(DType::F64).unwrap();
    let x = Tensor::cat(&[&x, &(&x * -0.5).unwrap()], 0).unwrap();
    let (xp, yp) = (dir.join("x.npy"), dir.join("y.json"));
    x.to_dtype(DType::F32).unwrap().write_npy(&xp).unwrap();
    std::fs::write(&yp, "[0, 1, 0, 1]").unwrap();
    // What predict reads back: the f32 values.
    let x = x
        .to_dtype(DType::F32)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    (xp, yp, x)
}

/// Outputs per image.
type Rows2 = Vec<Vec<f64>>;

/// Discover, prune with --save-model, predict the saved model; returns the original model's
/// outputs with the saved masks applied, the saved model's outputs, and the unpruned outputs.
fn prune_and_predict(rel: &str, extra: &[&str]) -> (Rows2, Rows2, Rows2) {
    let dir = tmp(&rel.replace('/', "-"));
    let (xp, yp, x) = inputs(&dir);
    let model = fixture(rel);
    let (m, xs, ys) = (
        model.to_str().unwrap(),
        xp.to_str().unwrap(),
        yp.to_str().unwrap(),
    );
    let results = dir.join("d.jsonl");
    let r = results.to_str().unwrap();
    let mut args = vec![
        "discover",
        "--model",
        m,
        xs,
        "--labels",
        ys,
        "--out",
        r,
        "--dtype",
        "f64",
        "--top-k",
        "3",
        "--steps",
        "3",
        "--methods",
        "path",
        "--image-size",
        "28",
    ];
    args.extend(extra);
    run(&args);
    let saved = dir.join("pruned.safetensors");
    let stdout = run(&[
        "prune",
        "--results",
        r,
        "--model",
        m,
        "--dtype",
        "f64",
        "--out",
        dir.join("prune").to_str().unwrap(),
        "--k",
        "1,3",
        "--p",
        "0.5",
        "--d",
        "3",
        "--save-model",
        saved.to_str().unwrap(),
        "--save-class",
        "0",
        "--image-size",
        "28",
    ]);
    // "load it with: neuronpath predict --model PATH FLAGS"
    let line = stdout
        .lines()
        .find(|l| l.starts_with("load it with:"))
        .unwrap_or_else(|| panic!("{rel}: no load line in {stdout}"));
    let flags: Vec<&str> = line
        .split_once(saved.to_str().unwrap())
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let mut pargs = vec!["predict", "--json", "--dtype", "f64", "--model"];
    let s = saved.to_str().unwrap();
    pargs.push(s);
    pargs.extend(&flags);
    pargs.push(xs);
    let v: serde_json::Value = serde_json::from_str(&run(&pargs)).unwrap();

    // The oracle: the original model, the saved masks as a CLS-row intervention, op by op.
    let orig = load_model(
        &model,
        &LoadOptions {
            dtype: DType::F64,
            image_size: Some(28),
            ..Default::default()
        },
    )
    .unwrap()
    .model;
    let st = candle_core::safetensors::load(&saved, &Device::Cpu).unwrap();
    let mut zeroed = 0;
    let edits: Vec<Option<LayerEdit>> = (0..orig.cfg.layers)
        .map(|l| {
            st.get(&format!("blocks.{l}.mlp.cls_mask")).map(|m| {
                let m = m.to_dtype(DType::F64).unwrap();
                zeroed += m
                    .to_vec1::<f64>()
                    .unwrap()
                    .iter()
                    .filter(|&&v| v == 0.0)
                    .count();
                LayerEdit {
                    rows: Rows::Cls,
                    edit: Edit::Scale(
                        m.unsqueeze(0)
                            .and_then(|m| m.broadcast_as((4, m.dim(1)?)))
                            .and_then(|m| m.contiguous())
                            .unwrap(),
                    ),
                }
            })
        })
        .collect();
    assert!(zeroed > 0, "{rel}: the saved model prunes nothing");
    let out = |edits: &[Option<LayerEdit>]| {
        let o = orig.forward(&x, edits, None, Mode::Train).unwrap().logits;
        let o = match orig.cfg.embedding {
            true => o,
            false => candle_nn::ops::softmax_last_dim(&o).unwrap(),
        };
        to_vec2(&o)
    };
    let key = match orig.cfg.embedding {
        true => "embedding",
        false => "probs",
    };
    let got: Vec<Vec<f64>> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|im| vec1(&im[key]))
        .collect();

    // The saved model keeps the head, tokens and options.
    let mut opts = LoadOptions {
        dtype: DType::F64,
        ..Default::default()
    };
    for f in flags.chunks(2) {
        match f {
            ["--heads", h] => opts.heads = Some(h.parse().unwrap()),
            ["--ln-eps", e] => opts.ln_eps = Some(e.parse().unwrap()),
            ["--gelu", "quick"] => opts.gelu = Some(neuronpath::model::Gelu::Quick),
            ["--gelu", "tanh"] => opts.gelu = Some(neuronpath::model::Gelu::Tanh),
            ["--normalize", _] => {}
            other => panic!("{rel}: unexpected load flags {other:?}"),
        }
    }
    let back = load_model(&saved, &opts).unwrap().model;
    let (a, b) = (&orig.cfg, &back.cfg);
    assert_eq!(
        (
            a.pool,
            a.prefix_tokens,
            a.registers,
            a.embedding,
            a.pre_norm
        ),
        (
            b.pool,
            b.prefix_tokens,
            b.registers,
            b.embedding,
            b.pre_norm
        ),
        "{rel}: head and tokens"
    );
    assert_eq!(
        (a.gelu, a.ln_eps, a.heads, a.num_classes),
        (b.gelu, b.ln_eps, b.heads, b.num_classes),
        "{rel}: options"
    );
    let _ = std::fs::remove_dir_all(&dir);
    (out(&edits), got, out(&[]))
}

fn check(rel: &str, extra: &[&str]) {
    let (want, got, unpruned) = prune_and_predict(rel, extra);
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(&want) {
        assert_close(g, w, 1e-10, &format!("{rel}: predict of the saved model"));
    }
    let moved = want
        .iter()
        .flatten()
        .zip(unpruned.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(moved > 1e-6, "{rel}: pruning changed nothing ({moved})");
}

#[test]
fn dinov2_classifier_on_cls_and_mean_patches() {
    check("families/dinov2_cls", &[]);
}

#[test]
fn dinov2_with_registers_keeps_its_registers() {
    check("families/dinov2_reg_cls", &[]);
}

#[test]
fn deit_distilled_keeps_both_heads() {
    check("families/deit_distilled", &[]);
}

#[test]
fn clip_tower_with_projection_and_a_direction() {
    let dir = tmp("direction");
    let v: Vec<f32> = (0..16).map(|i| ((i * 7 % 5) as f32 - 2.0) / 3.0).collect();
    let d = dir.join("direction.npy");
    Tensor::from_vec(v, 16, &Device::Cpu)
        .unwrap()
        .write_npy(&d)
        .unwrap();
    check("families/clip_proj", &["--direction", d.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
}
