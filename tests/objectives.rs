//! Objectives beyond the class probability (logit, logit difference, an embedding's dot product
//! with a direction) and the new families under the search: F and dF/d(clamp) against direct
//! computation with plain candle ops, and f32 paths equal to f64 paths.
mod common;
use candle_core::{DType, Device, Tensor, Var};
use common::*;
use neuronpath::attribution::discover::{discover_batch, Method, Request, TargetKind};
use neuronpath::attribution::AttributionSettings as Settings;
use neuronpath::model::gradients::{clamp_gradients, ClampBatch};
use neuronpath::model::{load_model, Edit, LayerEdit, LoadOptions, Mode, Objective, Rows, Vit};

fn model(rel: &str, dtype: DType) -> Vit {
    let opts = LoadOptions {
        dtype,
        image_size: Some(28),
        heads: Some(4),
        ..Default::default()
    };
    load_model(&fixture(rel), &opts).unwrap().model
}

/// A seeded random direction of width `d`.
fn direction(d: usize) -> Objective {
    let v = Tensor::randn(0f64, 1.0, d, &Device::Cpu).unwrap();
    Objective::Direction {
        source: "random".into(),
        source_hex: None,
        vector: v.to_vec1().unwrap(),
    }
}

fn settings(rows: Rows, steps: usize) -> Settings {
    Settings {
        steps,
        top_k: 1,
        compat: false,
        rows,
        chunk_rows: 7,
        engine: Default::default(),
    }
}

/// F of each row by plain ops on the op-by-op forward: what the objective means, written out.
fn f_direct(m: &Vit, x: &Tensor, edits: &[Option<LayerEdit>], targets: &[usize]) -> Tensor {
    let out = m.forward(x, edits, None, Mode::Train).unwrap().logits;
    let cols: Vec<Tensor> = targets
        .iter()
        .enumerate()
        .map(|(r, &t)| {
            let row = out.get(r).unwrap();
            match &m.objective {
                Objective::Prob => {
                    let e = row.exp().unwrap();
                    (e.get(t).unwrap() / e.sum_all().unwrap()).unwrap()
                }
                Objective::Logit => row.get(t).unwrap(),
                Objective::LogitDiff { against } => {
                    (row.get(t).unwrap() - row.get(*against).unwrap()).unwrap()
                }
                Objective::Direction { vector, .. } => {
                    assert_eq!(t, 0);
                    let v = Tensor::new(vector.as_slice(), &Device::Cpu).unwrap();
                    (row * v).unwrap().sum_all().unwrap()
                }
            }
        })
        .collect();
    Tensor::stack(&cols, 0).unwrap()
}

#[test]
fn clamp_gradients_of_every_objective_equal_plain_autograd() {
    let x = npy("families/input.npy").to_dtype(DType::F64).unwrap();
    let cases: Vec<(&str, Objective, Rows, [usize; 3])> = vec![
        (
            "families/dinov2_cls",
            Objective::Logit,
            Rows::Cls,
            [1, 4, 0],
        ),
        (
            "families/dinov2_reg_cls",
            Objective::LogitDiff { against: 2 },
            Rows::Cls,
            [0, 3, 1],
        ),
        (
            "families/deit_distilled",
            Objective::LogitDiff { against: 0 },
            Rows::Dist,
            [5, 2, 3],
        ),
        ("families/clip", direction(24), Rows::Cls, [0, 0, 0]),
        ("families/clip_proj", direction(16), Rows::Cls, [0, 0, 0]),
        ("families/dinov2", direction(24), Rows::Cls, [0, 0, 0]),
        (
            "families/deit_distilled",
            Objective::Prob,
            Rows::Dist,
            [1, 1, 4],
        ),
    ];
    for (rel, obj, rows, targets) in cases {
        let mut m = model(rel, DType::F64);
        m.objective = obj;
        let image_of_row = [0usize, 1, 0];
        let mlp = m.cfg.mlp_dim;
        let clamps: Vec<(usize, Tensor)> = [0usize, 2]
            .iter()
            .map(|&l| (l, Tensor::randn(0f64, 0.5, (3, mlp), &Device::Cpu).unwrap()))
            .collect();
        let batch = ClampBatch {
            images: &x,
            image_of_row: &image_of_row,
            rows,
            clamps: &clamps,
            targets: &targets,
            probe: false,
        };
        let got = clamp_gradients(&m, &batch, 2).unwrap();
        let xr = x
            .index_select(&Tensor::new(&[0u32, 1, 0], &Device::Cpu).unwrap(), 0)
            .unwrap();
        for (ci, (layer, _)) in clamps.iter().enumerate() {
            let var = Var::from_tensor(&clamps[ci].1).unwrap();
            let edits: Vec<Option<LayerEdit>> = (0..m.cfg.layers)
                .map(|l| {
                    let (_, t) = clamps.iter().find(|(cl, _)| *cl == l)?;
                    let value = match l == *layer {
                        true => var.as_tensor().clone(),
                        false => t.clone(),
                    };
                    Some(LayerEdit {
                        rows,
                        edit: Edit::Clamp(value),
                    })
                })
                .collect();
            let f = f_direct(&m, &xr, &edits, &targets);
            let f_vals: Vec<f64> = f.to_vec1().unwrap();
            assert_close(&got.probs, &f_vals, 1e-10, &format!("{rel} F"));
            let want: Vec<f64> = f
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_close(
                &got.grads[ci],
                &want,
                1e-10,
                &format!("{rel} {:?} layer {layer}", m.objective),
            );
        }
    }
}

#[test]
fn clip_tower_with_a_direction_gives_a_path_and_its_jas() {
    let x = npy("families/input.npy").to_dtype(DType::F64).unwrap();
    let mut m = model("families/clip", DType::F64);
    m.objective = direction(24);
    let req = Request {
        settings: settings(Rows::Cls, 20),
        methods: vec![Method::Path, Method::Activation],
        target: TargetKind::Predicted,
        seed: 1,
    };
    let res = discover_batch(&m, &x, &[None, None], &[0, 1], &req).unwrap();
    // F of the clean image is the embedding's dot product with the direction.
    let emb = m.forward(&x, &[], None, Mode::Frozen).unwrap().logits;
    let Objective::Direction { vector, .. } = &m.objective else {
        unreachable!()
    };
    for (i, r) in res.iter().enumerate() {
        let e: Vec<f64> = emb.get(i).unwrap().to_vec1().unwrap();
        let dot: f64 = e.iter().zip(vector).map(|(a, b)| a * b).sum();
        assert!(
            (r.prob_target - dot).abs() < 1e-12,
            "{} vs {dot}",
            r.prob_target
        );
        assert_eq!((r.target, r.prediction), (0, 0));
        let p = &r.methods[&Method::Path];
        assert_eq!(p.path.len(), 3);
        assert!(p.path.iter().all(|&j| j < 48));
        assert!(p.jas.reference.is_finite() && p.jas.additive.is_finite());
        // Removing the path changes F (the tower is random but not degenerate).
        assert!(p.prob_removed != r.prob_target);
    }
}

#[test]
fn paths_agree_between_f32_and_f64_on_the_families() {
    let cases: Vec<(&str, Rows, Option<Objective>)> = vec![
        ("families/dinov2_cls", Rows::Cls, None),
        ("families/dinov2_reg_cls", Rows::Cls, None),
        ("families/deit_distilled", Rows::Cls, None),
        ("families/deit_distilled", Rows::Dist, None),
        ("families/clip_proj_bin", Rows::Cls, Some(direction(16))),
        ("families/timm_dinov2_reg.safetensors", Rows::Cls, None),
    ];
    for (rel, rows, obj) in cases {
        let run = |dtype: DType| {
            let mut m = model(rel, dtype);
            if let Some(o) = &obj {
                m.objective = o.clone();
            }
            let x = npy("families/input.npy").to_dtype(dtype).unwrap();
            let req = Request {
                settings: settings(rows, 20),
                methods: vec![Method::Path],
                target: TargetKind::Predicted,
                seed: 1,
            };
            discover_batch(&m, &x, &[None, None], &[0, 1], &req).unwrap()
        };
        let (a, b) = (run(DType::F32), run(DType::F64));
        for (ra, rb) in a.iter().zip(&b) {
            let (pa, pb) = (&ra.methods[&Method::Path], &rb.methods[&Method::Path]);
            assert_eq!(pa.path, pb.path, "{rel} {rows:?}");
            let scale = pb.jas.reference.abs().max(1e-3);
            assert!(
                (pa.jas.reference - pb.jas.reference).abs() < 1e-3 * scale,
                "{rel}: JAS {} vs {}",
                pa.jas.reference,
                pb.jas.reference
            );
        }
    }
}

/// Runs the binary; (success, stderr).
fn neuronpath(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_neuronpath"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn discover_flags_for_directions_objectives_targets_and_the_distillation_token() {
    let dir = std::env::temp_dir().join(format!("np-objectives-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = fixture("families/input.npy");
    let input = input.to_str().unwrap();
    let clip = fixture("families/clip");
    let clip = clip.to_str().unwrap();
    let v = Tensor::randn(0f32, 1.0, 24, &Device::Cpu).unwrap();
    let v_path = dir.join("v.npy");
    v.write_npy(&v_path).unwrap();
    let short = dir.join("short.npy");
    v.narrow(0, 0, 16).unwrap().write_npy(&short).unwrap();
    let out = dir.join("clip.jsonl");
    let (ok, err) = neuronpath(&[
        "discover",
        "--model",
        clip,
        "--direction",
        v_path.to_str().unwrap(),
        input,
        "--steps",
        "4",
        "--methods",
        "path",
        "--no-report",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["objective"]["kind"], "direction");
    assert_eq!(lines[0]["target"], "predicted");
    assert_eq!(lines.len(), 3, "header and two records");
    // A headless model needs a direction; the direction must fit the embedding; a label target
    // has no meaning with one score.
    let other = dir.join("other.jsonl");
    let other = other.to_str().unwrap();
    for (extra, words) in [
        (vec![], "pass --direction"),
        (vec!["--direction", short.to_str().unwrap()], "16 values"),
        (
            vec!["--direction", v_path.to_str().unwrap(), "--target", "label"],
            "--target label",
        ),
    ] {
        let mut a = vec![
            "discover",
            "--model",
            clip,
            input,
            "--no-report",
            "-o",
            other,
        ];
        a.extend(extra);
        let (ok, err) = neuronpath(&a);
        assert!(!ok && err.contains(words), "{words}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let deit = fixture("families/deit_distilled");
    let deit = deit.to_str().unwrap();
    let out3 = dir.join("deit.jsonl");
    let (ok, err) = neuronpath(&[
        "discover",
        "--model",
        deit,
        input,
        "--neuron-token",
        "dist",
        "--objective",
        "logit-diff:2",
        "--target",
        "class:1",
        "--steps",
        "4",
        "--methods",
        "path",
        "--no-report",
        "-o",
        out3.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let head: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&out3)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(head["neurons"], "dist");
    assert_eq!(head["target"]["class"], 1);
    assert_eq!(head["objective"]["against"], 2);
    for (flags, words) in [
        (vec!["--objective", "logit-diff:9"], "logit-diff:9"),
        (vec!["--target", "class:6"], "class:6"),
    ] {
        let mut a = vec![
            "discover",
            "--model",
            deit,
            input,
            "--no-report",
            "-o",
            other,
        ];
        a.extend(flags);
        let (ok, err) = neuronpath(&a);
        assert!(!ok && err.contains(words), "{words}: {err}");
    }
    let (ok, err) = neuronpath(&[
        "discover",
        "--model",
        clip,
        "--direction",
        v_path.to_str().unwrap(),
        input,
        "--neuron-token",
        "dist",
        "--no-report",
        "-o",
        other,
    ]);
    assert!(!ok && err.contains("no distillation token"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
