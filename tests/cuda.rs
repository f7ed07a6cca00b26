//! The CUDA path (Mode::Frozen: the tensor backend of `model/block_ops/`) against the golden values and against
//! the CPU path (custom kernels, fused block), on the tiny models of tests/fixtures/golden.
//! Only built with `--features cuda`; every test passes with a message when there is no GPU.
//! Fixtures: $NEURONPATH_FIXTURES, else tests/fixtures (see tests/common).
#![cfg(feature = "cuda")]
mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use neuronpath::attribution::discover::{discover_batch, ImageResult, Method, Request, TargetKind};
use neuronpath::attribution::{
    clean_pass, joint_attribution, layer_progressive_search, AttributionSettings,
};
use neuronpath::model::gradients::{clamp_gradients, ClampBatch, ClampGrads};
use neuronpath::model::{ops, LoadOptions, Mode, Rows, Vit};
use std::sync::OnceLock;

/// The first GPU, or None (with a message) when there is none.
fn gpu() -> Option<Device> {
    static DEV: OnceLock<Option<Device>> = OnceLock::new();
    let dev = DEV.get_or_init(|| match Device::new_cuda(0) {
        Ok(d) => Some(d),
        Err(e) => {
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default();
            eprintln!("no CUDA device ({first}): skipping the CUDA tests");
            None
        }
    });
    if dev.is_none() {
        eprintln!("skipped: no CUDA device");
    }
    dev.clone()
}

fn tiny_vit(dtype: DType, device: &Device) -> Vit {
    load_with(
        "golden/tiny_vit.npz",
        &LoadOptions {
            dtype,
            device: device.clone(),
            ..Default::default()
        },
    )
}

fn tiny_mae(device: &Device) -> Vit {
    load_with(
        "golden/tiny_mae_state_dict.npz",
        &LoadOptions {
            dtype: DType::F64,
            double_fc_norm: true,
            heads: Some(4),
            device: device.clone(),
            ..Default::default()
        },
    )
}

fn input(dtype: DType, device: &Device) -> Tensor {
    npy("golden/input_x.npy")
        .to_dtype(dtype)
        .unwrap()
        .to_device(device)
        .unwrap()
}

fn check_clean(dtype: DType, key: &str, tol: f64) {
    let Some(gpu) = gpu() else { return };
    let model = tiny_vit(dtype, &gpu);
    assert!(model.device().is_cuda());
    let gold = json("golden/expected_vit.json");
    let x = input(dtype, &gpu);
    let out = model
        .forward(&x, &[], Some(Rows::Cls), Mode::Frozen)
        .unwrap();
    assert!(out.logits.device().is_cuda());
    let probs = to_vec2(&ops::softmax(&out.logits, Mode::Frozen).unwrap());
    for (g, w) in probs.iter().zip(&vec2(&gold[key]["clean_probs"])) {
        assert_close(g, w, tol, "CUDA clean probabilities");
    }
    let acts = gold[key]["clean_cls_ffn_activations"].as_array().unwrap();
    assert_eq!(out.hidden.len(), acts.len());
    for (l, layer) in acts.iter().enumerate() {
        let got = to_vec2(&out.hidden[l]);
        for (img, w) in vec2(layer).iter().enumerate() {
            assert_close(
                &got[img],
                w,
                tol,
                &format!("CUDA activations layer {l} image {img}"),
            );
        }
    }
}

#[test]
fn cuda_clean_pass_f64_matches_reference() {
    check_clean(DType::F64, "vit_f64", 1e-10);
}

#[test]
fn cuda_clean_pass_f32_matches_reference() {
    check_clean(DType::F32, "vit_f32", 1e-5);
}

#[test]
fn cuda_mae_double_fc_norm_matches_reference() {
    let Some(gpu) = gpu() else { return };
    let model = tiny_mae(&gpu);
    let probs = to_vec2(&model.probabilities(&input(DType::F64, &gpu), &[]).unwrap());
    let want = vec2(&json("golden/expected_mae.json")["clean_probs_double_fc_norm"]);
    for (g, w) in probs.iter().zip(&want) {
        assert_close(g, w, 1e-10, "CUDA MAE probabilities (double fc_norm)");
    }
}

/// Clamps at every layer (clean CLS values scaled per layer) computed on the CPU, as
/// tests/gradients.rs does.
fn clamps_for(model: &Vit, x: &Tensor) -> Vec<(usize, Tensor)> {
    let (_, acts) = clean_pass(model, x, Rows::Cls).unwrap();
    let mlp = model.cfg.mlp_dim;
    (0..model.cfg.layers)
        .map(|l| {
            let rows: Vec<f64> = (0..2)
                .flat_map(|i| {
                    acts.layers[i][l]
                        .iter()
                        .map(move |v| v * (0.3 + 0.2 * l as f64))
                })
                .collect();
            (l, Tensor::from_vec(rows, (2, mlp), &Device::Cpu).unwrap())
        })
        .collect()
}

fn grads_on(
    model: &Vit,
    x: &Tensor,
    clamps: &[(usize, Tensor)],
    probe: bool,
    chunk: usize,
) -> ClampGrads {
    let dev = model.device();
    let clamps: Vec<(usize, Tensor)> = clamps
        .iter()
        .map(|(l, t)| (*l, t.to_device(dev).unwrap()))
        .collect();
    let batch = ClampBatch {
        images: &x.to_device(dev).unwrap(),
        image_of_row: &[0, 1],
        rows: Rows::Cls,
        clamps: &clamps,
        targets: &[3, 3],
        probe,
    };
    clamp_gradients(model, &batch, chunk).unwrap()
}

fn compare_grads(gpu_g: &ClampGrads, cpu_g: &ClampGrads, tol: f64, what: &str) {
    assert_close(&gpu_g.probs, &cpu_g.probs, tol, &format!("{what}: F"));
    assert_eq!(gpu_g.grads.len(), cpu_g.grads.len());
    for (l, (g, c)) in gpu_g.grads.iter().zip(&cpu_g.grads).enumerate() {
        assert_close(g, c, tol, &format!("{what}: dF/d(clamp) layer {l}"));
    }
}

#[test]
fn cuda_clamp_gradients_equal_cpu_f64() {
    let Some(gpu) = gpu() else { return };
    let cpu_model = tiny_vit(DType::F64, &Device::Cpu);
    let gpu_model = tiny_vit(DType::F64, &gpu);
    let x = input(DType::F64, &Device::Cpu);
    let clamps = clamps_for(&cpu_model, &x);
    let cpu_g = grads_on(&cpu_model, &x, &clamps, false, 100);
    let gpu_g = grads_on(&gpu_model, &x, &clamps, false, 100);
    compare_grads(&gpu_g, &cpu_g, 1e-10, "clamped");
    // One row per chunk changes nothing on the GPU either.
    let single = grads_on(&gpu_model, &x, &clamps, false, 1);
    compare_grads(&single, &gpu_g, 1e-12, "chunked");
    // Probes (influence pattern): total derivatives.
    let cpu_p = grads_on(&cpu_model, &x, &clamps, true, 100);
    let gpu_p = grads_on(&gpu_model, &x, &clamps, true, 100);
    compare_grads(&gpu_p, &cpu_p, 1e-10, "probed");
}

#[test]
fn cuda_clamp_gradients_close_to_cpu_f32() {
    let Some(gpu) = gpu() else { return };
    let cpu_model = tiny_vit(DType::F32, &Device::Cpu);
    let gpu_model = tiny_vit(DType::F32, &gpu);
    let x = input(DType::F32, &Device::Cpu);
    let clamps = clamps_for(&cpu_model, &x);
    let cpu_g = grads_on(&cpu_model, &x, &clamps, false, 100);
    let gpu_g = grads_on(&gpu_model, &x, &clamps, false, 100);
    compare_grads(&gpu_g, &cpu_g, 1e-4, "clamped f32");
}

fn settings(rows: Rows, top_k: usize, compat: bool) -> AttributionSettings {
    AttributionSettings {
        steps: 20,
        top_k,
        compat,
        rows,
        chunk_rows: 1000,
        engine: Default::default(),
    }
}

/// Search and JAS of the path on both devices: same neurons, scores and JAS within `tol`.
fn compare_search(cpu_model: &Vit, gpu_model: &Vit, s: &AttributionSettings, tol: f64) {
    let targets = vec![3usize, 3];
    let mut found = Vec::new();
    for model in [cpu_model, gpu_model] {
        let x = input(model.dtype(), model.device());
        let (probs, acts) = clean_pass(model, &x, s.rows).unwrap();
        let clean: Vec<f64> = probs.iter().map(|p| p[3]).collect();
        let r = layer_progressive_search(model, &x, &targets, &acts, s).unwrap();
        let jas = joint_attribution(model, &x, &targets, &acts, &r.sets, &clean, s).unwrap();
        found.push((r, jas, clean));
    }
    let ((cr, cj, cc), (gr, gj, gc)) = (&found[0], &found[1]);
    assert_close(gc, cc, tol, "clean F");
    assert_eq!(gr.sets, cr.sets, "CUDA and CPU find different neurons");
    for (i, (g, c)) in gr.scores.iter().zip(&cr.scores).enumerate() {
        for (l, (gl, cl)) in g.iter().zip(c).enumerate() {
            assert_close(gl, cl, tol, &format!("scores image {i} layer {l}"));
        }
    }
    let field = |j: &[neuronpath::attribution::Jas],
                 f: fn(&neuronpath::attribution::Jas) -> f64| {
        j.iter().map(f).collect::<Vec<f64>>()
    };
    assert_close(
        &field(gj, |j| j.reference),
        &field(cj, |j| j.reference),
        tol,
        "JAS (reference form)",
    );
    assert_close(
        &field(gj, |j| j.additive),
        &field(cj, |j| j.additive),
        tol,
        "JAS (additive form)",
    );
}

#[test]
fn cuda_search_equals_cpu_f64() {
    let Some(gpu) = gpu() else { return };
    let (cpu_model, gpu_model) = (
        tiny_vit(DType::F64, &Device::Cpu),
        tiny_vit(DType::F64, &gpu),
    );
    compare_search(&cpu_model, &gpu_model, &settings(Rows::Cls, 1, false), 1e-9);
    compare_search(&cpu_model, &gpu_model, &settings(Rows::Cls, 3, false), 1e-9);
    compare_search(&cpu_model, &gpu_model, &settings(Rows::Cls, 3, true), 1e-9);
}

#[test]
fn cuda_mae_search_equals_cpu_f64() {
    let Some(gpu) = gpu() else { return };
    compare_search(
        &tiny_mae(&Device::Cpu),
        &tiny_mae(&gpu),
        &settings(Rows::Patches, 1, true),
        1e-9,
    );
}

#[test]
fn cuda_search_f32_matches_reference_path() {
    let Some(gpu) = gpu() else { return };
    let model = tiny_vit(DType::F32, &gpu);
    let x = input(DType::F32, &gpu);
    let s = settings(Rows::Cls, 1, false);
    let (_, acts) = clean_pass(&model, &x, s.rows).unwrap();
    let r = layer_progressive_search(&model, &x, &[3, 3], &acts, &s).unwrap();
    let g = &json("golden/expected_vit.json")["vit_f32"];
    // golden paths are [layer][image]
    let want: Vec<Vec<usize>> = (0..2)
        .map(|i| {
            g["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l[i].as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    let got: Vec<Vec<usize>> = r
        .sets
        .iter()
        .map(|p| p.iter().map(|l| l[0]).collect())
        .collect();
    assert_eq!(got, want);
    for (l, layer) in g["selection_scores"].as_array().unwrap().iter().enumerate() {
        for (i, w) in vec2(layer).iter().enumerate() {
            assert_close(
                &r.scores[i][l],
                w,
                1e-4,
                &format!("CUDA f32 selection scores layer {l} image {i}"),
            );
        }
    }
}

fn compare_images(g: &[ImageResult], c: &[ImageResult], tol: f64) {
    assert_eq!(g.len(), c.len());
    for (i, (g, c)) in g.iter().zip(c).enumerate() {
        assert_eq!(
            (g.target, g.prediction),
            (c.target, c.prediction),
            "image {i}"
        );
        assert_close(
            &[g.prob_target, g.prob_prediction],
            &[c.prob_target, c.prob_prediction],
            tol,
            "clean probabilities",
        );
        assert_eq!(
            g.methods.keys().collect::<Vec<_>>(),
            c.methods.keys().collect::<Vec<_>>()
        );
        for (name, gm) in &g.methods {
            let cm = &c.methods[name];
            let what = format!("image {i} method {name}");
            assert_eq!(gm.path, cm.path, "{what}: path");
            assert_eq!(gm.sets, cm.sets, "{what}: sets");
            assert_close(
                &[gm.jas.reference, gm.jas.additive, gm.jas.delta],
                &[cm.jas.reference, cm.jas.additive, cm.jas.delta],
                tol,
                &format!("{what}: JAS"),
            );
            assert_close(
                &[gm.prob_removed, gm.prob_enhanced],
                &[cm.prob_removed, cm.prob_enhanced],
                tol,
                &format!("{what}: removed / enhanced F"),
            );
            match (&gm.margins, &cm.margins) {
                (Some(a), Some(b)) => assert_close(a, b, tol, &format!("{what}: margins")),
                (None, None) => {}
                _ => panic!("{what}: margins on one device only"),
            }
        }
    }
}

/// What `discover` computes per batch (all methods), on both devices.
#[test]
fn cuda_discover_batch_equals_cpu_f64() {
    let Some(gpu) = gpu() else { return };
    for top_k in [1, 2] {
        let req = Request {
            settings: settings(Rows::Cls, top_k, false),
            methods: vec![
                Method::Path,
                Method::Activation,
                Method::Influence,
                Method::Ig,
                Method::Random,
            ],
            target: TargetKind::Label,
            seed: 7,
        };
        let labels = [Some(3), Some(5)];
        let keys = [0u64, 1];
        let run = |dev: &Device| {
            let model = tiny_vit(DType::F64, dev);
            let x = input(DType::F64, dev);
            discover_batch(&model, &x, &labels, &keys, &req).unwrap()
        };
        compare_images(&run(&gpu), &run(&Device::Cpu), 1e-9);
    }
}

// The fused element-wise kernels (src/model/cuda_kernels.cu) against the CPU tensor ops of the
// device block, on odd widths and row counts.

/// Deterministic values in about [-scale, scale), shaped `dims`, on the CPU.
fn noise(dims: &[usize], seed: u64, scale: f64, dtype: DType) -> Tensor {
    let n = dims.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f64> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, dims, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// The GPU result `got` against the CPU result `want` (relative to want's largest magnitude).
fn check_kernel(got: &Tensor, want: &Tensor, tol: f64, what: &str) {
    assert!(got.device().is_cuda(), "{what}: not computed on the GPU");
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let flat = |t: &Tensor| -> Vec<f64> {
        t.to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let e = max_rel(&flat(got), &flat(want));
    assert!(e <= tol, "{what}: relative error {e:e} > {tol:e}");
}

fn kernel_tol(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-5
    }
}

#[test]
fn cuda_kernels_layer_norm_match_cpu() {
    use neuronpath::model::test_support::{layer_norm, layer_norm_grad};
    let Some(gpu) = gpu() else { return };
    for dtype in [DType::F64, DType::F32] {
        let tol = kernel_tol(dtype);
        // (rows, tokens, width): hidden widths 12..1024, one odd and one above a block's threads.
        for (i, &(r, n, d)) in [
            (1, 1, 12),
            (3, 5, 37),
            (2, 197, 768),
            (3, 7, 1000),
            (1, 3, 1024),
        ]
        .iter()
        .enumerate()
        {
            let seed = 10 * i as u64;
            // An offset far from zero: the variance must not cancel.
            let x = (noise(&[r, n, d], seed, 2.0, dtype) + 3.0).unwrap();
            let ln = ops::LayerNorm {
                weight: noise(&[d], seed + 1, 1.5, dtype),
                bias: noise(&[d], seed + 2, 0.5, dtype),
                eps: 1e-6,
            };
            let g = noise(&[r, n, d], seed + 3, 1.0, dtype);
            let ln_gpu = ops::LayerNorm {
                weight: ln.weight.to_device(&gpu).unwrap(),
                bias: ln.bias.to_device(&gpu).unwrap(),
                eps: ln.eps,
            };
            let (xg, gg) = (x.to_device(&gpu).unwrap(), g.to_device(&gpu).unwrap());
            let what = format!("{dtype:?} ({r}, {n}, {d})");
            check_kernel(
                &layer_norm(&ln_gpu, &xg).unwrap(),
                &layer_norm(&ln, &x).unwrap(),
                tol,
                &format!("layer norm {what}"),
            );
            check_kernel(
                &layer_norm_grad(&ln_gpu, &xg, &gg).unwrap(),
                &layer_norm_grad(&ln, &x, &g).unwrap(),
                tol,
                &format!("layer norm grad {what}"),
            );
        }
    }
}

#[test]
fn cuda_kernels_gelu_match_cpu() {
    use neuronpath::model::test_support::gelu;
    use neuronpath::model::Gelu;
    let Some(gpu) = gpu() else { return };
    for dtype in [DType::F64, DType::F32] {
        let tol = kernel_tol(dtype);
        for (i, dims) in [
            vec![1, 1, 16],
            vec![3, 5, 37],
            vec![2, 197, 3072],
            vec![1, 7, 4096],
        ]
        .iter()
        .enumerate()
        {
            let z = noise(dims, 100 + i as u64, 5.0, dtype);
            let zg = z.to_device(&gpu).unwrap();
            for kind in [Gelu::Erf, Gelu::Tanh] {
                let what = format!("gelu {kind:?} {dtype:?} {dims:?}");
                let (a, d) = gelu(kind, &z, true).unwrap();
                let (ag, dg) = gelu(kind, &zg, true).unwrap();
                check_kernel(&ag, &a, tol, &what);
                check_kernel(
                    &dg.unwrap(),
                    &d.unwrap(),
                    tol,
                    &format!("{what} derivative"),
                );
                let (ag, dg) = gelu(kind, &zg, false).unwrap();
                assert!(dg.is_none());
                check_kernel(&ag, &a, tol, &format!("{what} value only"));
            }
        }
    }
}

#[test]
fn cuda_kernels_softmax_grad_match_cpu() {
    use neuronpath::model::test_support::softmax_grad;
    let Some(gpu) = gpu() else { return };
    for dtype in [DType::F64, DType::F32] {
        let tol = kernel_tol(dtype);
        // (rows, heads, queries, keys): attention rows of 2..1025 keys.
        for (i, &(r, h, n, k)) in [
            (1, 1, 1, 2),
            (3, 2, 5, 5),
            (2, 3, 197, 197),
            (1, 2, 9, 1025),
        ]
        .iter()
        .enumerate()
        {
            let dims = [r, h, n, k];
            let p = candle_nn::ops::softmax_last_dim(&noise(&dims, 200 + i as u64, 4.0, dtype))
                .unwrap();
            let dp = noise(&dims, 300 + i as u64, 1.0, dtype);
            let scale = 1.0 / 8f64.sqrt();
            let (want, s) = softmax_grad(&p, &dp, scale).unwrap();
            let want = (want * s).unwrap();
            let pg = p.to_device(&gpu).unwrap();
            let (got, s) = softmax_grad(&pg, &dp.to_device(&gpu).unwrap(), scale).unwrap();
            let got = (got * s).unwrap();
            check_kernel(
                &got,
                &want,
                tol,
                &format!("softmax grad {dtype:?} {dims:?}"),
            );
        }
    }
}

/// The GPU precision modes run end to end and are what they say: TF32 and bf16 searches of 40
/// embedded samples give scores that differ from f32's (the mode took effect), mostly the same
/// paths for TF32, and the switch is off again afterwards (f32 twice: identical). The bounds on
/// agreement are loose on purpose; `bench --cuda` prints the measured rates.
#[test]
fn cuda_precision_modes_differ_from_f32_but_mostly_agree() {
    use neuronpath::bench_precision::{agreement, compare, embedded_set, search};
    use neuronpath::io::results::Precision;
    let Some(gpu) = gpu() else { return };
    let (model, x, targets) = embedded_set(&gpu).unwrap().expect("embedded model");
    let n = 40.min(targets.len());
    let (x, targets) = (x.narrow(0, 0, n).unwrap(), &targets[..n]);
    let limit = 1 << 30;
    let rows = agreement(
        "embedded",
        &model,
        &x,
        targets,
        &[Precision::Tf32, Precision::Bf16],
        10,
        limit,
    )
    .unwrap();
    for r in &rows[1..] {
        eprintln!("{r:?}");
        assert!(r.max_score_diff > 0.0, "{r:?}: the mode changed nothing");
        assert!(r.max_score_diff < 0.5 * r.max_score, "{r:?}");
    }
    assert!(rows[1].identical * 2 >= n, "tf32: {:?}", rows[1]);
    let (a, _) = search(&model, Precision::F32, &x, targets, 10, limit).unwrap();
    let (b, _) = search(&model, Precision::F32, &x, targets, 10, limit).unwrap();
    assert_eq!(compare(&a, &b).0, n, "f32 after the TF32 run is f32 again");
}
