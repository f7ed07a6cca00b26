//! The prefix search engine against the reference engine (one full forward + backward per
//! step, its oracle): identical neuron sets and selection scores within 1e-12 (f64) on the golden
//! models and on every family and variant the search supports (top-K, the authors' top-K quirk,
//! the MAE variant (prefix reuse without the tangent), DeiT's distillation row, DINOv2's
//! mean-patch head and registers, CLIP's pre-LayerNorm and quick-GELU, pruning masks, every
//! objective, any chunking); paths equal in f32. In each case also the path's JAS (both forms and
//! the gap) from the block states the search kept, against the JAS by a separate forward +
//! backward. The reference-form JAS by one forward + tangent pass against the backward form. The
//! prefix engine on the tensor backend (what CUDA runs, here on the CPU) against the reference
//! engine, its path JAS too.
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use neuronpath::attribution::jas::reference_jas_by_tangent;
use neuronpath::attribution::search::search_with_jas;
use neuronpath::attribution::search_prefix::{prefix_applies, prefix_gives_jas};
use neuronpath::attribution::{
    clean_pass, joint_attribution, layer_progressive_search, AttributionSettings, NeuronSets,
    SearchEngine, SearchResult,
};
use neuronpath::bench::vit_config;
use neuronpath::model::test_support::with_device_block;
use neuronpath::model::{load_model, Gelu, LoadOptions, Objective, Rows, Vit};
use neuronpath::training::Params;
use rand::SeedableRng;

fn settings(rows: Rows, top_k: usize, compat: bool, chunk: usize) -> AttributionSettings {
    AttributionSettings {
        steps: 20,
        top_k,
        compat,
        rows,
        chunk_rows: chunk,
        engine: SearchEngine::Prefix,
    }
}

fn search(m: &Vit, x: &Tensor, t: &[usize], s: &AttributionSettings) -> SearchResult {
    let (_, acts) = clean_pass(m, x, s.rows).unwrap();
    layer_progressive_search(m, x, t, &acts, s).unwrap()
}

/// Both engines on the same input: the same sets; the scores within `tol` of the reference's
/// (relative to each layer's largest score). Then the path's JAS ([`path_jas_agrees`]).
fn agree(m: &Vit, x: &Tensor, t: &[usize], s: &AttributionSettings, tol: f64, what: &str) {
    let prefix = search(m, x, t, s);
    let reference = search(
        m,
        x,
        t,
        &AttributionSettings {
            engine: SearchEngine::Reference,
            ..s.clone()
        },
    );
    same_search(&prefix, &reference, tol, what);
    path_jas_agrees(m, x, t, s, &reference, tol, what, false);
}

/// The path's JAS that the prefix engine gives from the block states it kept (with `s`, or
/// where `s`'s chunks are too small for that, with one image's rows per chunk; on the tensor
/// backend with `device`) against `joint_attribution`'s forward + backward of the reference
/// engine's sets.
#[allow(clippy::too_many_arguments)]
fn path_jas_agrees(
    m: &Vit,
    x: &Tensor,
    t: &[usize],
    s: &AttributionSettings,
    reference: &SearchResult,
    tol: f64,
    what: &str,
    device: bool,
) {
    let s = if prefix_gives_jas(m, s) {
        s.clone()
    } else {
        AttributionSettings {
            chunk_rows: s.steps,
            ..s.clone()
        }
    };
    if !prefix_applies(m, &s) {
        return;
    }
    assert!(prefix_gives_jas(m, &s), "{what}");
    // A tolerance of 0 asks for the reference engine's own numbers; these are the prefix's.
    let tol = tol.max(1e-12);
    let (probs, acts) = clean_pass(m, x, s.rows).unwrap();
    let clean: Vec<f64> = probs.iter().zip(t).map(|(p, &c)| p[c]).collect();
    let run = || search_with_jas(m, x, t, &acts, Some(&clean), &s, &|| Ok(())).unwrap();
    let (found, jas) = if device {
        with_device_block(run)
    } else {
        run()
    };
    same_search(&found, reference, tol, &format!("{what}, keeping blocks"));
    let jas = jas.unwrap_or_else(|| panic!("{what}: the prefix engine gave no JAS"));
    let expect = joint_attribution(m, x, t, &acts, &reference.sets, &clean, &s).unwrap();
    for (i, (j, e)) in jas.iter().zip(&expect).enumerate() {
        // Relative to F: the additive form and the gap sum terms of F's size.
        let scale = clean[i].abs().max(e.reference.abs());
        for (name, a, b) in [
            ("reference", j.reference, e.reference),
            ("additive", j.additive, e.additive),
            ("delta", j.delta, e.delta),
        ] {
            assert!(
                (a - b).abs() <= tol * scale,
                "{what}: image {i} JAS {name} {a} vs {b}"
            );
        }
    }
    assert_eq!(jas.len(), t.len(), "{what}");
}

/// The same sets; the scores within `tol` of the reference's (relative to each layer's largest).
fn same_search(prefix: &SearchResult, reference: &SearchResult, tol: f64, what: &str) {
    assert_eq!(prefix.sets, reference.sets, "{what}: neuron sets");
    for (i, (p, r)) in prefix.scores.iter().zip(&reference.scores).enumerate() {
        for (l, (p, r)) in p.iter().zip(r).enumerate() {
            assert_close(p, r, tol, &format!("{what}: image {i} layer {l} scores"));
        }
    }
}

fn golden(dtype: DType) -> (Vit, Tensor) {
    let m = load("golden/tiny_vit.npz", dtype);
    let x = npy("golden/input_x.npy").to_dtype(dtype).unwrap();
    (m, x)
}

#[test]
fn golden_vit_f64_every_variant_and_chunking() {
    let (m, x) = golden(DType::F64);
    assert!(prefix_applies(&m, &settings(Rows::Cls, 1, false, 1)));
    for (k, compat) in [(1, false), (3, false), (3, true)] {
        for chunk in [1, 7, 1000] {
            let s = settings(Rows::Cls, k, compat, chunk);
            agree(
                &m,
                &x,
                &[3, 3],
                &s,
                1e-12,
                &format!("K={k} compat={compat} chunk={chunk}"),
            );
        }
    }
    // One Riemann step (alpha = 0 only).
    let one = AttributionSettings {
        steps: 1,
        ..settings(Rows::Cls, 1, false, 1000)
    };
    agree(&m, &x, &[3, 3], &one, 1e-12, "m = 1");
    // Different targets per image.
    agree(
        &m,
        &x,
        &[1, 8],
        &settings(Rows::Cls, 1, false, 5),
        1e-12,
        "targets 1, 8",
    );
}

#[test]
fn golden_vit_f64_objectives_and_a_pruning_mask() {
    let (mut m, x) = golden(DType::F64);
    let s = settings(Rows::Cls, 2, false, 9);
    for objective in [Objective::Logit, Objective::LogitDiff { against: 0 }] {
        m.objective = objective.clone();
        agree(&m, &x, &[3, 3], &s, 1e-12, &format!("{objective:?}"));
    }
    m.objective = Objective::Prob;
    // A pruned model: a 0/1 mask on the CLS row of every block's hidden units.
    let width = m.cfg.mlp_dim;
    for (l, b) in m.blocks.iter_mut().enumerate() {
        let mask: Vec<f64> = (0..width)
            .map(|j| ((j + l) % 3 != 0) as u8 as f64)
            .collect();
        b.cls_mask = Some(Tensor::new(mask, &Device::Cpu).unwrap());
    }
    agree(&m, &x, &[3, 3], &s, 1e-12, "pruned");
}

#[test]
fn golden_vit_f32_paths_equal_the_reference_engines() {
    let (m, x) = golden(DType::F32);
    for k in [1, 3] {
        agree(
            &m,
            &x,
            &[3, 3],
            &settings(Rows::Cls, k, false, 7),
            1e-4,
            &format!("f32 K={k}"),
        );
    }
}

#[test]
fn mae_f64_prefix_reuse_in_image_groups() {
    let opts = LoadOptions {
        dtype: DType::F64,
        heads: Some(4),
        ..Default::default()
    };
    let m = load_with("golden/tiny_mae_state_dict.npz", &opts);
    let x = npy("golden/input_x.npy").to_dtype(DType::F64).unwrap();
    // m = 20 rows per image: 20 rows per chunk search one image at a time, 45 two together.
    for (k, compat, chunk) in [
        (1, false, 20),
        (1, false, 45),
        (3, true, 20),
        (2, false, 1000),
    ] {
        let s = settings(Rows::Patches, k, compat, chunk);
        assert!(prefix_applies(&m, &s));
        let what = format!("MAE K={k} compat={compat} chunk={chunk}");
        agree(&m, &x, &[3, 3], &s, 1e-12, &what);
    }
    agree(
        &m,
        &x,
        &[1, 8],
        &settings(Rows::Patches, 1, false, 40),
        1e-12,
        "MAE targets 1, 8",
    );
    // One image's rows do not fit a chunk: the reference engine runs (the very same numbers).
    let s = settings(Rows::Patches, 1, false, 13);
    assert!(!prefix_applies(&m, &s));
    agree(&m, &x, &[3, 3], &s, 0.0, "MAE, 13 rows per chunk");
}

fn family(rel: &str) -> Vit {
    let opts = LoadOptions {
        dtype: DType::F64,
        image_size: Some(28),
        heads: Some(4),
        ..Default::default()
    };
    let mut m = load_model(&fixture(rel), &opts).unwrap().model;
    if m.cfg.embedding {
        // A backbone: F is the embedding's dot product with a direction.
        let width = m.score_width();
        let v = Tensor::randn(0f64, 1.0, width, &Device::Cpu).unwrap();
        m.objective = Objective::Direction {
            source: "random".into(),
            source_hex: None,
            vector: v.to_vec1().unwrap(),
        };
    }
    m
}

#[test]
fn families_f64() {
    let x = npy("families/input.npy").to_dtype(DType::F64).unwrap();
    let b = x.dim(0).unwrap();
    for (rel, rows) in [
        ("families/dinov2", Rows::Cls),
        ("families/dinov2_cls", Rows::Cls),
        ("families/dinov2_reg_cls", Rows::Cls),
        ("families/clip", Rows::Cls),
        ("families/clip_proj", Rows::Cls),
        ("families/deit_distilled", Rows::Cls),
        ("families/deit_distilled", Rows::Dist),
        ("families/timm_dinov2_reg.safetensors", Rows::Cls),
    ] {
        let m = family(rel);
        let targets: Vec<usize> = (0..b).map(|i| i % m.score_width()).collect();
        for (k, compat) in [(1, false), (2, true)] {
            let s = settings(rows, k, compat, 11);
            assert!(prefix_applies(&m, &s), "{rel}");
            agree(
                &m,
                &x,
                &targets,
                &s,
                1e-12,
                &format!("{rel} {rows:?} K={k}"),
            );
        }
    }
}

#[test]
fn random_shapes_f64() {
    // Odd token counts, one head and many, tanh and quick GELU, MLP widths that are not 4x.
    for (i, (image, patch, hidden, mlp, heads, layers, gelu)) in [
        (12, 4, 24, 40, 3, 4, Gelu::Tanh),
        (10, 5, 16, 20, 1, 3, Gelu::Erf),
        (8, 8, 12, 30, 2, 5, Gelu::Quick),
    ]
    .into_iter()
    .enumerate()
    {
        let mut cfg = vit_config(image, patch, hidden, mlp, heads, layers);
        cfg.gelu = gelu;
        cfg.num_classes = 5;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let params = Params::init(&cfg, &mut rng, &Device::Cpu).unwrap();
        // Initial biases are zero and LayerNorm weights one: perturb every parameter.
        let noise = |d: &[usize]| Tensor::randn(0f64, 0.3, d, &Device::Cpu);
        let m = params
            .frozen_vit_with(|t| t.to_dtype(DType::F64)? + noise(t.dims())?)
            .unwrap();
        let x = Tensor::randn(0f64, 1.0, (3, 3, image, image), &Device::Cpu).unwrap();
        agree(
            &m,
            &x,
            &[0, 2, 4],
            &settings(Rows::Cls, 1, false, 6),
            1e-12,
            &format!("shape {i}"),
        );
    }
}

/// `discover --engine reference` and the default engine write the same paths and margins.
#[test]
fn discover_cli_engines_write_the_same_paths() {
    let dir = std::env::temp_dir().join(format!("np-prefix-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |name: &str, extra: &[&str]| -> Vec<serde_json::Value> {
        let out = dir.join(name);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_neuronpath"))
            .args([
                "discover",
                "--per-class",
                "1",
                "--methods",
                "path",
                "--no-report",
            ])
            .args(["--dtype", "f64", "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let recs: Vec<serde_json::Value> = text
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 10, "{name}: one record per class");
        recs
    };
    let prefix = run("prefix.jsonl", &[]);
    let reference = run("reference.jsonl", &["--engine", "reference"]);
    for (p, r) in prefix.iter().zip(&reference) {
        let (p, r) = (&p["methods"]["path"], &r["methods"]["path"]);
        assert_eq!(p["path"], r["path"]);
        let margins = |v: &serde_json::Value| -> Vec<f64> {
            v["margins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        // Margins are differences of scores: relative to the scores, not to themselves.
        assert_close(&margins(p), &margins(r), 1e-9, "margins");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// JAS of `sets` both ways: by forward + backward (`joint_attribution`) and by forward + tangent.
fn jas_both_ways(
    m: &Vit,
    x: &Tensor,
    targets: &[usize],
    sets: &[NeuronSets],
    s: &AttributionSettings,
    what: &str,
) {
    let (clean, acts) = clean_pass(m, x, s.rows).unwrap();
    let probs: Vec<f64> = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| clean[i][t])
        .collect();
    let want: Vec<f64> = joint_attribution(m, x, targets, &acts, sets, &probs, s)
        .unwrap()
        .iter()
        .map(|j| j.reference)
        .collect();
    let got = reference_jas_by_tangent(m, x, targets, &acts, sets, s).unwrap();
    assert_close(&got, &want, 1e-12, what);
}

/// Distinct neurons per layer, different per image (as a baseline's sets are: not a path the
/// search would pick).
fn some_sets(images: usize, layers: usize, k: usize, mlp: usize) -> Vec<NeuronSets> {
    (0..images)
        .map(|i| {
            (0..layers)
                .map(|l| (0..k).map(|r| (7 * l + 13 * r + 5 * i) % mlp).collect())
                .collect()
        })
        .collect()
}

#[test]
fn reference_jas_by_tangent_equals_the_backward_form() {
    let (m, x) = golden(DType::F64);
    let targets = [3, 8];
    for (k, compat, chunk) in [(1, false, 1), (1, false, 7), (3, false, 5), (3, true, 100)] {
        let s = settings(Rows::Cls, k, compat, chunk);
        let what = format!("K={k} compat={compat} chunk={chunk}");
        let found = search(&m, &x, &targets, &s);
        jas_both_ways(&m, &x, &targets, &found.sets, &s, &format!("path {what}"));
        let sets = some_sets(2, m.cfg.layers, k, m.cfg.mlp_dim);
        jas_both_ways(&m, &x, &targets, &sets, &s, &format!("other sets {what}"));
    }
    let x = npy("families/input.npy").to_dtype(DType::F64).unwrap();
    let b = x.dim(0).unwrap();
    for (rel, rows) in [
        ("families/deit_distilled", Rows::Dist),
        ("families/dinov2_reg_cls", Rows::Cls),
        ("families/clip_proj", Rows::Cls),
    ] {
        let m = family(rel);
        let targets: Vec<usize> = (0..b).map(|i| i % m.score_width()).collect();
        let s = settings(rows, 2, false, 11);
        let sets = some_sets(b, m.cfg.layers, 2, m.cfg.mlp_dim);
        jas_both_ways(&m, &x, &targets, &sets, &s, rel);
    }
}

/// The prefix engine on the tensor backend (what CUDA runs; here on the CPU through
/// `with_device_block`) against the reference engine on the slice backend: the same sets, the
/// scores within 1e-12 (f64), for K = 1, top-K, the authors' quirk, chunking and the MAE variant;
/// and the reference-form JAS by one forward + tangent pass on the tensor backend.
#[test]
fn tensor_backend_prefix_engine_equals_the_reference_f64() {
    let both = |m: &Vit, x: &Tensor, t: &[usize], s: &AttributionSettings, what: &str| {
        assert!(
            with_device_block(|| prefix_applies(m, s)),
            "{what}: applies"
        );
        let prefix = with_device_block(|| search(m, x, t, s));
        let reference = search(
            m,
            x,
            t,
            &AttributionSettings {
                engine: SearchEngine::Reference,
                ..s.clone()
            },
        );
        same_search(&prefix, &reference, 1e-12, what);
        path_jas_agrees(m, x, t, s, &reference, 1e-12, what, true);
    };
    let (m, x) = golden(DType::F64);
    for (k, compat, chunk) in [
        (1, false, 1),
        (1, false, 1000),
        (3, false, 7),
        (3, true, 1000),
    ] {
        let s = settings(Rows::Cls, k, compat, chunk);
        both(
            &m,
            &x,
            &[3, 3],
            &s,
            &format!("K={k} compat={compat} chunk={chunk}"),
        );
    }
    let targets = [3, 8];
    let s = settings(Rows::Cls, 2, false, 5);
    let sets = some_sets(2, m.cfg.layers, 2, m.cfg.mlp_dim);
    let (clean, acts) = clean_pass(&m, &x, s.rows).unwrap();
    let probs: Vec<f64> = targets
        .iter()
        .enumerate()
        .map(|(i, &t)| clean[i][t])
        .collect();
    let want: Vec<f64> = joint_attribution(&m, &x, &targets, &acts, &sets, &probs, &s)
        .unwrap()
        .iter()
        .map(|j| j.reference)
        .collect();
    let got =
        with_device_block(|| reference_jas_by_tangent(&m, &x, &targets, &acts, &sets, &s).unwrap());
    assert_close(&got, &want, 1e-12, "tensor backend JAS by tangent");

    let opts = LoadOptions {
        dtype: DType::F64,
        heads: Some(4),
        ..Default::default()
    };
    let mae = load_with("golden/tiny_mae_state_dict.npz", &opts);
    for (k, chunk) in [(1, 20), (2, 1000)] {
        let s = settings(Rows::Patches, k, false, chunk);
        both(&mae, &x, &[3, 3], &s, &format!("MAE K={k} chunk={chunk}"));
    }
}
