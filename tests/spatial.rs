//! Spatial attribution of path neurons (attribution/spatial.rs): against finite differences of
//! the targets as defined (an independent oracle built from plain forward passes), completeness,
//! f32 vs f64, and a planted model whose neuron reads one patch.
mod common;
use candle_core::{DType, Device, Tensor};
use common::fixture;
use neuronpath::attribution::clean_pass;
use neuronpath::attribution::spatial::{spatial_attribution, PathInput, Spatial};
use neuronpath::model::ops::{LayerNorm, Linear};
use neuronpath::model::{load_model, Edit, LayerEdit, LoadOptions, Mode, Rows, Vit};

/// The tiny golden ViT at 64 px (a 4 x 4 grid of 16 px patches, position embedding resized).
fn model(dtype: DType) -> Vit {
    let opts = LoadOptions {
        dtype,
        image_size: Some(64),
        ..Default::default()
    };
    load_model(&fixture("golden/tiny_vit.npz"), &opts)
        .unwrap()
        .model
}

fn image(dtype: DType) -> Tensor {
    let v: Vec<f64> = (0..3 * 64 * 64)
        .map(|i| ((i as f64 * 0.37).sin() + (i as f64 * 0.011).cos()) * 0.8)
        .collect();
    Tensor::from_vec(v, (1, 3, 64, 64), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

const PATH: [usize; 6] = [5, 17, 40, 2, 9, 33];
const TARGET: usize = 3;

fn attribute(m: &Vit, x: &Tensor, steps: usize, chunk: usize) -> Spatial {
    let (probs, acts) = clean_pass(m, x, Rows::Cls).unwrap();
    let path = &PATH[..m.cfg.layers];
    let input = PathInput {
        image: x,
        target: TARGET,
        path,
        acts: &acts,
        clean_prob: probs[0][TARGET],
        rows: Rows::Cls,
    };
    spatial_attribution(m, &input, steps, chunk).unwrap()
}

/// Token embeddings with patch i's embedding scaled by `alpha + eps[i]`, every other by alpha.
fn tokens(m: &Vit, e: &Tensor, alpha: f64, patch: Option<(usize, f64)>) -> Tensor {
    let p = e.dim(1).unwrap();
    let mut f = vec![alpha; p];
    if let Some((i, eps)) = patch {
        f[i] += eps;
    }
    let f = Tensor::from_vec(f, (1, p, 1), &Device::Cpu)
        .unwrap()
        .to_dtype(e.dtype())
        .unwrap();
    m.assemble_tokens(&e.broadcast_mul(&f).unwrap(), Mode::Frozen)
        .unwrap()
}

/// CLS activations [layer][unit] of a forward from tokens.
fn cls_acts(m: &Vit, t: &Tensor) -> Vec<Vec<f64>> {
    let out = m
        .forward_tokens(t, &[], Some(Rows::Cls), Mode::Frozen)
        .unwrap();
    out.hidden
        .iter()
        .map(|h| {
            h.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

/// G: F on the clean image with every CLS hidden row clamped to its clean values, the path
/// units set to their values `v` on the given tokens.
fn g_path(m: &Vit, x: &Tensor, clean: &[Vec<f64>], t: &Tensor) -> f64 {
    let v = cls_acts(m, t);
    let edits: Vec<Option<LayerEdit>> = (0..m.cfg.layers)
        .map(|l| {
            let mut row = clean[l].clone();
            row[PATH[l]] = v[l][PATH[l]];
            let n = row.len();
            let t = Tensor::from_vec(row, (1, n), &Device::Cpu).unwrap();
            Some(LayerEdit {
                rows: Rows::Cls,
                edit: Edit::Clamp(t),
            })
        })
        .collect();
    let p = m.probabilities(x, &edits).unwrap();
    p.to_vec2::<f64>().unwrap()[0][TARGET]
}

#[test]
fn integrated_gradients_match_finite_differences_of_the_targets() {
    let m = model(DType::F64);
    let x = image(DType::F64);
    let steps = 4;
    let s = attribute(&m, &x, steps, 3);
    assert_eq!((s.grid, s.neurons.len()), (4, m.cfg.layers));
    let e = m.patch_embeddings(&x, Mode::Frozen).unwrap();
    let clean = cls_acts(&m, &tokens(&m, &e, 1.0, None));
    let h = 1e-6;
    for i in 0..16 {
        // Patch i's attribution = (1/m) sum_k d/d(eps) target(alpha_k E with patch i scaled by
        // alpha_k + eps): the directional derivative along E_i is sum_d E_id d/de_id.
        let mut neuron = vec![0.0; m.cfg.layers];
        let mut path = 0.0;
        for k in 0..steps {
            let a = k as f64 / steps as f64;
            let (tp, tm) = (
                tokens(&m, &e, a, Some((i, h))),
                tokens(&m, &e, a, Some((i, -h))),
            );
            let (up, down) = (cls_acts(&m, &tp), cls_acts(&m, &tm));
            for l in 0..m.cfg.layers {
                neuron[l] += (up[l][PATH[l]] - down[l][PATH[l]]) / (2.0 * h) / steps as f64;
            }
            path += (g_path(&m, &x, &clean, &tp) - g_path(&m, &x, &clean, &tm))
                / (2.0 * h)
                / steps as f64;
        }
        for (l, want) in neuron.iter().enumerate() {
            let got = s.neurons[l].patches[i];
            assert!(
                (got - want).abs() < 1e-7,
                "layer {l} patch {i}: {got} vs {want}"
            );
        }
        let got = s.path.patches[i];
        assert!((got - path).abs() < 1e-7, "path patch {i}: {got} vs {path}");
    }
    // Values and baselines from plain forwards.
    let zero = cls_acts(&m, &tokens(&m, &e, 0.0, None));
    for (l, n) in s.neurons.iter().enumerate() {
        assert_eq!(n.layer, Some(l));
        assert!((n.value - clean[l][PATH[l]]).abs() < 1e-12);
        assert!((n.baseline - zero[l][PATH[l]]).abs() < 1e-12);
        let sum: f64 = n.patches.iter().sum();
        assert!((n.value - n.baseline - sum - n.delta).abs() < 1e-12);
    }
    let f_clean = m.probabilities(&x, &[]).unwrap().to_vec2::<f64>().unwrap()[0][TARGET];
    assert!((s.path.value - f_clean).abs() < 1e-12);
    let g0 = g_path(&m, &x, &clean, &tokens(&m, &e, 0.0, None));
    assert!(
        (s.path.baseline - g0).abs() < 1e-12,
        "{} vs {g0}",
        s.path.baseline
    );
}

#[test]
fn completeness_delta_shrinks_with_steps_and_chunks_do_not_matter() {
    let m = model(DType::F64);
    let x = image(DType::F64);
    let total = |s: &Spatial| -> f64 {
        s.neurons
            .iter()
            .chain([&s.path])
            .map(|n| n.delta.abs())
            .sum()
    };
    // Left Riemann sums: the error falls like 1/m once the steps resolve the integrand (on this
    // random model the activations change fastest near alpha = 0, where the patch content is
    // still smaller than the position embedding: measured sums of |delta| 3.4, 0.75, 0.10, 0.03
    // for m = 8, 32, 128, 512).
    let coarse = attribute(&m, &x, 8, 64);
    let mid = attribute(&m, &x, 32, 64);
    let fine = attribute(&m, &x, 128, 64);
    assert!(total(&coarse) > 0.0);
    assert!(
        total(&mid) < 0.5 * total(&coarse),
        "{} vs {}",
        total(&mid),
        total(&coarse)
    );
    assert!(
        total(&fine) < 0.25 * total(&mid),
        "{} vs {}",
        total(&fine),
        total(&mid)
    );
    let chunked = attribute(&m, &x, 8, 3);
    for (a, b) in coarse.to_array().iter().zip(chunked.to_array()) {
        assert!((a - b).abs() < 1e-13);
    }
}

#[test]
fn f32_agrees_with_f64() {
    let a = attribute(&model(DType::F64), &image(DType::F64), 8, 16).to_array();
    let b = attribute(&model(DType::F32), &image(DType::F32), 8, 16).to_array();
    let scale = a.iter().fold(0f64, |s, x| s.max(x.abs()));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-4 * scale, "{x} vs {y} (scale {scale})");
    }
}

/// The tiny model with block 0 rewired: the CLS query attends to the one patch whose position
/// embedding carries a marker, values and projection copy tokens, and unit 5 of the CLS row reads
/// the copied content. Nothing else of the image reaches that unit.
fn planted(q: usize) -> Vit {
    let mut m = model(DType::F64);
    let (d, pre) = (m.cfg.hidden, m.cfg.prefix_tokens);
    let (mk, mc) = (d - 1, d - 2);
    let dev = Device::Cpu;
    let mut pos = m.pos.to_vec2::<f64>().unwrap();
    for row in pos.iter_mut() {
        row[mk] = 0.0;
        row[mc] = 0.0;
    }
    pos[pre + q][mk] = 40.0;
    pos[0][mc] = 40.0;
    m.pos = Tensor::new(pos, &dev).unwrap();
    let hd = m.cfg.head_dim();
    let mut qkv = vec![vec![0.0; d]; 3 * d];
    for h in 0..m.cfg.heads {
        qkv[h * hd][mc] = 3.0; // query
        qkv[d + h * hd][mk] = 3.0; // key
    }
    for (i, row) in qkv[2 * d..].iter_mut().enumerate() {
        row[i] = 1.0; // value = LN_att(x)
    }
    let eye: Vec<Vec<f64>> = (0..d)
        .map(|i| (0..d).map(|j| f64::from(u8::from(i == j))).collect())
        .collect();
    let b0 = &mut m.blocks[0];
    let ones = Tensor::ones(d, DType::F64, &dev).unwrap();
    let zeros = Tensor::zeros(d, DType::F64, &dev).unwrap();
    b0.ln_att = LayerNorm {
        weight: ones.clone(),
        bias: zeros.clone(),
        eps: 1e-6,
    };
    b0.qkv = Linear::new(Tensor::new(qkv, &dev).unwrap(), None);
    b0.proj = Linear::new(Tensor::new(eye, &dev).unwrap(), None);
    let mut fc1 = b0.fc1.weight.to_vec2::<f64>().unwrap();
    fc1[5] = (0..d)
        .map(|j| {
            if j < d - 2 {
                (j as f64 * 1.7).sin()
            } else {
                0.0
            }
        })
        .collect();
    b0.fc1 = Linear::new(Tensor::new(fc1, &dev).unwrap(), None);
    m
}

#[test]
fn a_neuron_that_reads_one_patch_gets_a_map_peaked_there() {
    let x = image(DType::F64);
    for q in [0, 6, 13] {
        let m = planted(q);
        let s = attribute(&m, &x, 16, 64);
        let map = &s.neurons[0].patches;
        let total: f64 = map.iter().map(|v| v.abs()).sum();
        let peak = (0..16)
            .max_by(|&a, &b| map[a].abs().total_cmp(&map[b].abs()))
            .unwrap();
        assert_eq!(peak, q, "{map:?}");
        assert!(map[q].abs() > 0.95 * total, "{map:?}");
    }
}
