//! dF/d(clamp) from one backward pass against independent oracles: central finite differences,
//! and separate per-layer backward passes through plain candle ops (Mode::Train).
mod common;
use candle_core::{DType, Tensor, Var};
use common::*;
use neuronpath::attribution::clean_pass;
use neuronpath::model::gradients::{clamp_gradients, ClampBatch};
use neuronpath::model::{ops, Edit, LayerEdit, Mode, Rows, Vit};

fn setup() -> (Vit, Tensor, Vec<(usize, Tensor)>) {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = npy("golden/input_x.npy").to_dtype(DType::F64).unwrap();
    let (_, acts) = clean_pass(&model, &x, Rows::Cls).unwrap();
    // Clamp every layer at a non-trivial point: clean values scaled per layer.
    let clamps = (0..model.cfg.layers)
        .map(|l| {
            let rows: Vec<f64> = (0..2)
                .flat_map(|i| {
                    acts.layers[i][l]
                        .iter()
                        .map(move |v| v * (0.3 + 0.2 * l as f64))
                })
                .collect();
            (
                l,
                Tensor::from_vec(rows, (2, 64), &candle_core::Device::Cpu).unwrap(),
            )
        })
        .collect();
    (model, x, clamps)
}

fn f_with(model: &Vit, x: &Tensor, clamps: &[(usize, Tensor)], target: usize) -> Vec<f64> {
    let mut edits = vec![None; model.cfg.layers];
    for (l, t) in clamps {
        edits[*l] = Some(LayerEdit {
            rows: Rows::Cls,
            edit: Edit::Clamp(t.clone()),
        });
    }
    let p = to_vec2(&model.probabilities(x, &edits).unwrap());
    p.iter().map(|r| r[target]).collect()
}

fn one_backward(
    model: &Vit,
    x: &Tensor,
    clamps: &[(usize, Tensor)],
    chunk: usize,
) -> Vec<Vec<f64>> {
    let batch = ClampBatch {
        images: x,
        image_of_row: &[0, 1],
        rows: Rows::Cls,
        clamps,
        targets: &[3, 3],
        probe: false,
    };
    clamp_gradients(model, &batch, chunk).unwrap().grads
}

#[test]
fn single_backward_equals_central_finite_differences() {
    let (model, x, clamps) = setup();
    let grads = one_backward(&model, &x, &clamps, 100);
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    for (ci, (_, t)) in clamps.iter().enumerate() {
        for j in [0usize, 7, 31, 63] {
            let bump = |d: f64| {
                let mut v: Vec<f64> = t.flatten_all().unwrap().to_vec1().unwrap();
                for i in 0..2 {
                    v[i * 64 + j] += d;
                }
                let mut c = clamps.clone();
                c[ci].1 = Tensor::from_vec(v, (2, 64), &candle_core::Device::Cpu).unwrap();
                f_with(&model, &x, &c, 3)
            };
            let (up, down) = (bump(h), bump(-h));
            for i in 0..2 {
                let fd = (up[i] - down[i]) / (2.0 * h);
                let g = grads[ci][i * 64 + j];
                let err = (g - fd).abs() / fd.abs().max(1e-8);
                worst = worst.max(err);
                assert!(
                    err < 1e-6,
                    "layer {ci} unit {j} image {i}: backward {g:e}, fd {fd:e}"
                );
            }
        }
    }
    eprintln!("worst relative error vs finite differences: {worst:e}");
}

#[test]
fn single_backward_equals_per_layer_plain_backwards() {
    let (model, x, clamps) = setup();
    let grads = one_backward(&model, &x, &clamps, 100);
    for (ci, (layer, _)) in clamps.iter().enumerate() {
        // Only this layer's clamp is a Var; the others are constants; plain candle ops.
        let var = Var::from_tensor(&clamps[ci].1).unwrap();
        let edits: Vec<_> = clamps
            .iter()
            .map(|(l, t)| {
                let value = if l == layer {
                    var.as_tensor().clone()
                } else {
                    t.clone()
                };
                Some(LayerEdit {
                    rows: Rows::Cls,
                    edit: Edit::Clamp(value),
                })
            })
            .collect();
        let logits = model.forward(&x, &edits, None, Mode::Train).unwrap().logits;
        let f = ops::softmax_plain(&logits)
            .unwrap()
            .narrow(1, 3, 1)
            .unwrap()
            .sum_all()
            .unwrap();
        let g = f.backward().unwrap();
        let want: Vec<f64> = g
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_close(&grads[ci], &want, 1e-12, &format!("layer {layer}"));
    }
}

#[test]
fn chunking_never_changes_gradients() {
    let (model, x, clamps) = setup();
    let whole = one_backward(&model, &x, &clamps, 100);
    let single = one_backward(&model, &x, &clamps, 1);
    for (a, b) in whole.iter().zip(&single) {
        assert_close(a, b, 1e-13, "chunked gradients");
    }
}

#[test]
fn gelu_and_softmax_kernels_match_plain_ops() {
    let x = Tensor::arange(-400i64, 400, &candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .affine(0.01, 0.0)
        .unwrap()
        .reshape((8, 100))
        .unwrap();
    for kind in [neuronpath::model::Gelu::Erf, neuronpath::model::Gelu::Tanh] {
        let v = Var::from_tensor(&x).unwrap();
        let a = ops::gelu(v.as_tensor(), kind, Mode::Frozen).unwrap();
        let b = ops::gelu_plain(v.as_tensor(), kind).unwrap();
        let ga = a.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gb = b.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| -> Vec<f64> { t.flatten_all().unwrap().to_vec1().unwrap() };
        assert_close(&flat(&a), &flat(&b), 1e-14, "gelu value");
        assert_close(
            &flat(ga.get(&v).unwrap()),
            &flat(gb.get(&v).unwrap()),
            1e-12,
            "gelu grad",
        );
        let sa = ops::softmax(&b, Mode::Frozen).unwrap();
        let sb = ops::softmax_plain(&b).unwrap();
        assert_close(&flat(&sa), &flat(&sb), 1e-14, "softmax value");
    }
}
