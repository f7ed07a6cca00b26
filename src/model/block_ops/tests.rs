//! The two backends against each other, pass by pass, on the golden tiny ViT in f64: the
//! CLS-only last block (forward and backward, also against the every-row block), the tangent,
//! and the helpers the prefix engine extends its prefix with.
use super::{add_fc2_columns, forward_saved, mlp_rows, Run, Save, Saved};
use crate::model::dispatch::with_device_block;
use crate::model::intervene::{Edit, LayerEdit, Rows};
use crate::model::load::{load_model, LoadOptions};
use crate::model::mode::Mode;
use crate::model::vit::Vit;
use candle_core::{DType, Device, IndexOp, Tensor};
use std::path::PathBuf;

fn golden() -> (Vit, Tensor) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let opts = LoadOptions {
        dtype: DType::F64,
        ..Default::default()
    };
    let model = load_model(&root.join("tiny_vit.npz"), &opts).unwrap().model;
    let images = Tensor::read_npy(root.join("input_x.npy"))
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let x = model.embed(&images, Mode::Frozen).unwrap();
    (model, x)
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Largest difference relative to the largest magnitude of `want`.
fn rel(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims(), "shapes");
    let (g, w) = (flat(got), flat(want));
    let scale = w.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-300);
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f64::max)
}

/// A deterministic, non-trivial tensor of `shape`.
fn wave(shape: &[usize], phase: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37 + phase).sin()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn run(model: &Vit, cls_only: bool) -> Run {
    Run {
        heads: model.cfg.heads,
        gelu: model.cfg.gelu,
        prefix: model.cfg.prefix_tokens,
        cls_only,
    }
}

const SAVE: Save = Save {
    save: true,
    want_dx: true,
    keep_probs: false,
};

/// The input of the last block, and a CLS clamp for it (R, M).
fn last_block_input(model: &Vit, x: &Tensor) -> (Tensor, Tensor) {
    let mut h = x.clone();
    let last = model.blocks.len() - 1;
    for b in &model.blocks[..last] {
        h = forward_saved(b, h, None, run(model, false), SAVE)
            .unwrap()
            .0;
    }
    let m = model.cfg.mlp_dim;
    (h, wave(&[x.dim(0).unwrap(), m], 0.5))
}

fn step(model: &Vit, x: &Tensor, clamp: &Tensor, cls_only: bool) -> (Tensor, Tensor, Saved) {
    let block = &model.blocks[model.blocks.len() - 1];
    let edit = LayerEdit {
        rows: Rows::Cls,
        edit: Edit::Clamp(clamp.clone()),
    };
    let (out, a, saved) =
        forward_saved(block, x.clone(), Some(&edit), run(model, cls_only), SAVE).unwrap();
    (out, a, saved.unwrap())
}

#[test]
fn cls_only_last_block_is_the_same_on_both_backends() {
    let (model, x) = golden();
    let (h, clamp) = last_block_input(&model, &x);
    let (out, a, saved) = step(&model, &h, &clamp, true);
    let (dout, da, dsaved) = with_device_block(|| step(&model, &h, &clamp, true));
    let (full, full_a, full_saved) = step(&model, &h, &clamp, false);
    assert_eq!(out.dims()[1], 1, "one kept row");
    assert!(rel(&dout, &out) < 1e-13, "tensor vs slice output");
    assert!(rel(&da, &a) < 1e-13, "tensor vs slice hidden units");
    let full_cls = full.narrow(1, 0, 1).unwrap();
    assert!(rel(&out, &full_cls) < 1e-13, "CLS-only vs every row");
    assert!(rel(&a, &full_a.narrow(1, 0, 1).unwrap()) < 1e-13);

    // Backward from a gradient on the CLS row: the same on both backends and as the full block
    // with zero gradient on the other rows.
    let g = wave(out.dims(), 1.0);
    let (dx, dc) = saved.grads(&g).unwrap();
    let (ddx, ddc) = with_device_block(|| dsaved.grads(&g).unwrap());
    let (r, n, d) = full.dims3().unwrap();
    let padded = Tensor::cat(
        &[
            &g,
            &Tensor::zeros((r, n - 1, d), DType::F64, &Device::Cpu).unwrap(),
        ],
        1,
    )
    .unwrap();
    let (fdx, fdc) = full_saved.grads(&padded).unwrap();
    let (dx, dc, ddx, ddc) = (dx.unwrap(), dc.unwrap(), ddx.unwrap(), ddc.unwrap());
    assert!(rel(&ddx, &dx) < 1e-13, "tensor vs slice dL/dx");
    assert!(rel(&ddc, &dc) < 1e-13, "tensor vs slice dL/d(clamp)");
    assert!(
        rel(&dx, &fdx.unwrap()) < 1e-13,
        "CLS-only vs every row dL/dx"
    );
    assert!(
        rel(&dc, &fdc.unwrap()) < 1e-13,
        "CLS-only vs every row dL/d(clamp)"
    );
    assert!(flat(&dx).iter().any(|v| *v != 0.0));
}

#[test]
fn tangent_and_prefix_helpers_are_the_same_on_both_backends() {
    let (model, x) = golden();
    let (h, clamp) = last_block_input(&model, &x);
    let (out, _, saved) = step(&model, &h, &clamp, false);
    let (_, _, dsaved) = with_device_block(|| step(&model, &h, &clamp, false));
    let t = wave(h.dims(), 2.0);
    let jt = saved.tangent(&t).unwrap();
    let djt = with_device_block(|| dsaved.tangent(&t).unwrap());
    assert!(rel(&djt, &jt) < 1e-13, "tangent");
    // The tangent is the directional derivative: against a central difference.
    let eps = 1e-6;
    let f = |s: f64| step(&model, &(&h + (&t * s).unwrap()).unwrap(), &clamp, false).0;
    let fd = ((f(eps) - f(-eps)).unwrap() / (2.0 * eps)).unwrap();
    assert!(rel(&fd, &jt) < 1e-7, "tangent vs finite difference");

    let block = &model.blocks[model.blocks.len() - 1];
    let seeds: Vec<&[usize]> = vec![&[1, 4], &[4]];
    let with = add_fc2_columns(block, &jt, 0, &seeds).unwrap();
    let dwith = with_device_block(|| add_fc2_columns(block, &jt, 0, &seeds).unwrap());
    assert!(rel(&dwith, &with) < 1e-15, "fc2 columns");
    let n = h.dim(1).unwrap();
    let added = (&with - &jt).unwrap();
    assert!(flat(&added.narrow(1, 1, n - 1).unwrap())
        .iter()
        .all(|v| *v == 0.0));
    let w = block.fc2.weight.i((.., 4)).unwrap();
    let col = |r: usize| added.i((r, 0)).unwrap();
    assert!(rel(&col(1), &w) < 1e-12, "row 1: column 4");
    let w14 = (block.fc2.weight.i((.., 1)).unwrap() + &w).unwrap();
    assert!(rel(&col(0), &w14) < 1e-12, "row 0: columns 1 and 4");

    // The block's output on the clamped row from h and the clamp, as the forward computed it.
    let rows = saved.residual_rows((0, 1)).unwrap();
    let drows = with_device_block(|| dsaved.residual_rows((0, 1)).unwrap());
    assert!(rel(&drows, &rows) < 1e-14, "residual rows");
    let mlp = mlp_rows(block, &rows, &clamp).unwrap();
    let dmlp = with_device_block(|| mlp_rows(block, &drows, &clamp).unwrap());
    assert!(rel(&mlp, &out.narrow(1, 0, 1).unwrap()) < 1e-13, "mlp rows");
    assert!(rel(&dmlp, &mlp) < 1e-13, "mlp rows on both backends");
}
