//! The tensor backend's block (`model/block_ops/tensors.rs`, what CUDA runs in Mode::Frozen),
//! forced onto the CPU, against the slice backend's (`slices.rs`): forward probabilities and
//! hidden rows, and the single-backward gradients of clamps, probes, scale edits, patch rows and
//! pruning masks.
mod common;
use candle_core::{DType, Device, Tensor, Var};
use common::*;
use neuronpath::model::gradients::{clamp_gradients, ClampBatch, ClampGrads};
use neuronpath::model::test_support::with_device_block;
use neuronpath::model::{ops, Edit, Gelu, LayerEdit, LoadOptions, Mode, Rows, Vit};

fn tiny_vit(dtype: DType) -> (Vit, Tensor) {
    let model = load("golden/tiny_vit.npz", dtype);
    let x = npy("golden/input_x.npy").to_dtype(dtype).unwrap();
    (model, x)
}

fn tiny_mae() -> (Vit, Tensor) {
    let opts = LoadOptions {
        dtype: DType::F64,
        double_fc_norm: true,
        heads: Some(4),
        ..Default::default()
    };
    let model = load_with("golden/tiny_mae_state_dict.npz", &opts);
    let x = npy("golden/input_x.npy").to_dtype(DType::F64).unwrap();
    (model, x)
}

/// The tiny ViT with a pruning mask (zeros, halves and ones) on every block.
fn with_masks(mut model: Vit) -> Vit {
    let m = model.cfg.mlp_dim;
    for (l, b) in model.blocks.iter_mut().enumerate() {
        let mask: Vec<f64> = (0..m).map(|j| ((j + l) % 3) as f64 * 0.5).collect();
        let mask = Tensor::from_vec(mask, m, &Device::Cpu).unwrap();
        b.cls_mask = Some(mask.to_dtype(model.prefix.dtype()).unwrap());
    }
    model
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Probabilities and recorded rows of every block, edits given.
fn forward(model: &Vit, x: &Tensor, edits: &[Option<LayerEdit>], rows: Rows) -> Vec<Vec<f64>> {
    let out = model.forward(x, edits, Some(rows), Mode::Frozen).unwrap();
    let mut all = vec![flat(&ops::softmax(&out.logits, Mode::Frozen).unwrap())];
    all.extend(out.hidden.iter().map(flat));
    all
}

fn compare(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64, what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: count");
    let mut worst: f64 = 0.0;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        worst = worst.max(max_rel(g, w));
        assert_close(g, w, tol, &format!("{what} [{i}]"));
    }
    eprintln!("{what}: worst relative difference {worst:e}");
    worst
}

/// Both blocks' forwards agree: clean, and with every kind of edit (plain tensors, no leaves).
fn check_forward(model: &Vit, x: &Tensor, rows: Rows, tol: f64, what: &str) {
    let clean = forward(model, x, &[], rows);
    let dev = with_device_block(|| forward(model, x, &[], rows));
    compare(&dev, &clean, tol, &format!("{what} clean forward"));
    // Edits built from the clean rows: clamp layer 0 to 0.5 a, scale layer 1, add to layer 2.
    let r = x.dim(0).unwrap();
    let shape = |l: usize| -> Tensor {
        let n = clean[l + 1].len() / r;
        let t = Tensor::from_vec(clean[l + 1].clone(), (r, n), &Device::Cpu).unwrap();
        let t = if rows == Rows::Cls {
            t
        } else {
            t.reshape((r, n / model.cfg.mlp_dim, model.cfg.mlp_dim))
                .unwrap()
        };
        t.to_dtype(model.dtype()).unwrap()
    };
    let m = model.cfg.mlp_dim;
    let factors: Vec<f64> = (0..r * m).map(|j| (j % 5) as f64 * 0.5).collect();
    let factors = Tensor::from_vec(factors, (r, m), &Device::Cpu)
        .unwrap()
        .to_dtype(model.dtype())
        .unwrap();
    let probe = Var::from_tensor(&(shape(2) * 0.25).unwrap()).unwrap();
    let edits = vec![
        Some(LayerEdit {
            rows,
            edit: Edit::Clamp((shape(0) * 0.5).unwrap()),
        }),
        Some(LayerEdit {
            rows,
            edit: Edit::Scale(factors),
        }),
        Some(LayerEdit {
            rows,
            edit: Edit::Probe(probe),
        }),
    ];
    let cpu = forward(model, x, &edits, rows);
    let dev = with_device_block(|| forward(model, x, &edits, rows));
    compare(&dev, &cpu, tol, &format!("{what} edited forward"));
}

/// Clamps of every layer at non-trivial values (the clean rows times 0.3 + 0.2 l).
fn clamps(model: &Vit, x: &Tensor, rows: Rows) -> Vec<(usize, Tensor)> {
    let out = model.forward(x, &[], Some(rows), Mode::Frozen).unwrap();
    out.hidden
        .iter()
        .enumerate()
        .map(|(l, a)| (l, (a * (0.3 + 0.2 * l as f64)).unwrap()))
        .collect()
}

fn clamp_grads(model: &Vit, x: &Tensor, rows: Rows, probe: bool, chunk: usize) -> ClampGrads {
    let c = clamps(model, x, rows);
    let batch = ClampBatch {
        images: x,
        image_of_row: &[0, 1, 1, 0],
        rows,
        clamps: &c
            .iter()
            .map(|(l, t)| {
                let idx = Tensor::new(&[0u32, 1, 1, 0], &Device::Cpu).unwrap();
                (*l, t.index_select(&idx, 0).unwrap())
            })
            .collect::<Vec<_>>(),
        targets: &[3, 3, 1, 7],
        probe,
    };
    clamp_gradients(model, &batch, chunk).unwrap()
}

fn check_clamp_grads(model: &Vit, x: &Tensor, rows: Rows, probe: bool, tol: f64, what: &str) {
    let cpu = clamp_grads(model, x, rows, probe, 100);
    let dev = with_device_block(|| clamp_grads(model, x, rows, probe, 100));
    compare(&[dev.probs], &[cpu.probs], tol, &format!("{what} F"));
    compare(&dev.grads, &cpu.grads, tol, &format!("{what} gradients"));
    assert!(
        cpu.grads.iter().all(|g| g.iter().any(|v| *v != 0.0)),
        "{what}: every layer has a non-zero gradient"
    );
    // Chunked: one row at a time.
    let single = with_device_block(|| clamp_grads(model, x, rows, probe, 1));
    compare(
        &single.grads,
        &cpu.grads,
        tol,
        &format!("{what} chunked gradients"),
    );
}

/// One backward of F through a mix of edits: a scale edit (no leaf) before a clamp leaf, a
/// probe leaf after it, and a constant clamp; gradients of both leaves.
fn mixed_grads(model: &Vit, x: &Tensor, rows: Rows) -> Vec<Vec<f64>> {
    let c = clamps(model, x, rows);
    let r = x.dim(0).unwrap();
    let m = model.cfg.mlp_dim;
    let factors: Vec<f64> = (0..r * m).map(|j| 0.25 + (j % 7) as f64 * 0.3).collect();
    let factors = Tensor::from_vec(factors, (r, m), &Device::Cpu)
        .unwrap()
        .to_dtype(model.dtype())
        .unwrap();
    let clamp = Var::from_tensor(&c[1].1).unwrap();
    let probe = Var::from_tensor(&c[2].1.zeros_like().unwrap()).unwrap();
    let mut edits = vec![None; model.cfg.layers];
    edits[0] = Some(LayerEdit {
        rows,
        edit: Edit::Scale(factors),
    });
    edits[1] = Some(LayerEdit {
        rows,
        edit: Edit::Clamp(clamp.as_tensor().clone()),
    });
    edits[2] = Some(LayerEdit {
        rows,
        edit: Edit::Probe(probe.clone()),
    });
    if model.cfg.layers > 3 {
        edits[3] = Some(LayerEdit {
            rows,
            edit: Edit::Clamp(c[3].1.clone()),
        });
    }
    let logits = model.forward(x, &edits, None, Mode::Frozen).unwrap().logits;
    let f = ops::softmax(&logits, Mode::Frozen)
        .unwrap()
        .narrow(1, 3, 1)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = f.backward().unwrap();
    vec![
        flat(&f),
        flat(g.get(clamp.as_tensor()).unwrap()),
        flat(g.get(probe.as_tensor()).unwrap()),
    ]
}

fn check_mixed(model: &Vit, x: &Tensor, rows: Rows, tol: f64, what: &str) {
    let cpu = mixed_grads(model, x, rows);
    let dev = with_device_block(|| mixed_grads(model, x, rows));
    compare(&dev, &cpu, tol, &format!("{what} scale + clamp + probe"));
}

#[test]
fn forward_equals_cpu_block_f64() {
    let (model, x) = tiny_vit(DType::F64);
    check_forward(&model, &x, Rows::Cls, 1e-12, "vit");
    let (mae, x) = tiny_mae();
    check_forward(&mae, &x, Rows::Patches, 1e-12, "mae");
    let (model, x) = tiny_vit(DType::F64);
    check_forward(&with_masks(model), &x, Rows::Cls, 1e-12, "masked vit");
}

#[test]
fn forward_tanh_gelu_equals_cpu_block_f64() {
    let (mut model, x) = tiny_vit(DType::F64);
    model.cfg.gelu = Gelu::Tanh;
    check_forward(&model, &x, Rows::Cls, 1e-12, "tanh vit");
}

#[test]
fn clamp_gradients_equal_cpu_block_f64() {
    let (model, x) = tiny_vit(DType::F64);
    check_clamp_grads(&model, &x, Rows::Cls, false, 1e-10, "vit clamp");
}

#[test]
fn probe_gradients_equal_cpu_block_f64() {
    let (model, x) = tiny_vit(DType::F64);
    check_clamp_grads(&model, &x, Rows::Cls, true, 1e-10, "vit probe");
}

#[test]
fn tanh_gelu_gradients_equal_cpu_block_f64() {
    let (mut model, x) = tiny_vit(DType::F64);
    model.cfg.gelu = Gelu::Tanh;
    check_clamp_grads(&model, &x, Rows::Cls, true, 1e-10, "tanh vit probe");
}

#[test]
fn patch_rows_gradients_equal_cpu_block_f64() {
    let (mae, x) = tiny_mae();
    check_clamp_grads(&mae, &x, Rows::Patches, false, 1e-10, "mae clamp");
    check_clamp_grads(&mae, &x, Rows::Patches, true, 1e-10, "mae probe");
    check_mixed(&mae, &x, Rows::Patches, 1e-10, "mae");
}

#[test]
fn cls_mask_gradients_equal_cpu_block_f64() {
    let (model, x) = tiny_vit(DType::F64);
    let model = with_masks(model);
    check_clamp_grads(&model, &x, Rows::Cls, false, 1e-10, "masked clamp");
    check_clamp_grads(&model, &x, Rows::Cls, true, 1e-10, "masked probe");
    check_mixed(&model, &x, Rows::Cls, 1e-10, "masked");
}

#[test]
fn scale_edit_gradients_equal_cpu_block_f64() {
    let (model, x) = tiny_vit(DType::F64);
    check_mixed(&model, &x, Rows::Cls, 1e-10, "vit");
}

#[test]
fn f32_close_to_cpu_block() {
    let (model, x) = tiny_vit(DType::F32);
    check_forward(&model, &x, Rows::Cls, 1e-5, "f32 vit");
    check_clamp_grads(&model, &x, Rows::Cls, false, 1e-4, "f32 vit clamp");
}
