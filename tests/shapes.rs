//! The attribution kernels on architectures unlike the golden ones: odd token counts, one head,
//! head widths of 4 and 8, two prefix tokens, mean-pooled heads, tanh GELU, MLP widths that are
//! not 4x. Random weights (biases and LayerNorm parameters too), checked against the op-by-op
//! oracle (Mode::Train: plain candle ops and candle's autograd).
mod common;
use candle_core::{DType, Device, Tensor, Var};
use common::*;
use neuronpath::model::gradients::{clamp_gradients, ClampBatch};
use neuronpath::model::test_support::with_device_block;
use neuronpath::model::{ops, Edit, Gelu, LayerEdit, Mode, Pool, Rows, Vit, VitConfig};
use neuronpath::training::Params;
use rand::SeedableRng;

struct Shape {
    image: usize,
    patch: usize,
    hidden: usize,
    heads: usize,
    mlp: usize,
    prefix: usize,
    pool: Pool,
    gelu: Gelu,
    /// The neurons' rows.
    rows: Rows,
    /// A LayerNorm before the first block (CLIP).
    pre_norm: bool,
}

const SHAPES: [Shape; 7] = [
    // 10 tokens, head width 8.
    Shape {
        image: 12,
        patch: 4,
        hidden: 24,
        heads: 3,
        mlp: 40,
        prefix: 1,
        pool: Pool::Cls,
        gelu: Gelu::Erf,
        rows: Rows::Cls,
        pre_norm: false,
    },
    // DeiT-like: CLS + distillation token, head width 4, tanh GELU.
    Shape {
        image: 9,
        patch: 3,
        hidden: 20,
        heads: 5,
        mlp: 52,
        prefix: 2,
        pool: Pool::Cls,
        gelu: Gelu::Tanh,
        rows: Rows::Cls,
        pre_norm: false,
    },
    // MAE-like mean-pooled head, one head.
    Shape {
        image: 10,
        patch: 5,
        hidden: 16,
        heads: 1,
        mlp: 16,
        prefix: 1,
        pool: Pool::MeanPatch,
        gelu: Gelu::Erf,
        rows: Rows::Patches,
        pre_norm: false,
    },
    // One patch: two tokens.
    Shape {
        image: 8,
        patch: 8,
        hidden: 12,
        heads: 2,
        mlp: 30,
        prefix: 1,
        pool: Pool::Cls,
        gelu: Gelu::Erf,
        rows: Rows::Cls,
        pre_norm: false,
    },
    // DeiT distilled, CLIP-style: quick-GELU, pre-LayerNorm, the mean of the CLS and
    // distillation heads, neurons on the distillation row.
    Shape {
        image: 12,
        patch: 4,
        hidden: 16,
        heads: 2,
        mlp: 36,
        prefix: 2,
        pool: Pool::ClsDist,
        gelu: Gelu::Quick,
        rows: Rows::Dist,
        pre_norm: true,
    },
    // The same head with the CLS neurons.
    Shape {
        image: 12,
        patch: 4,
        hidden: 16,
        heads: 2,
        mlp: 36,
        prefix: 2,
        pool: Pool::ClsDist,
        gelu: Gelu::Quick,
        rows: Rows::Cls,
        pre_norm: true,
    },
    // DINOv2 with registers: CLS + 2 register tokens, the [CLS, mean patches] classifier.
    Shape {
        image: 15,
        patch: 5,
        hidden: 12,
        heads: 3,
        mlp: 28,
        prefix: 3,
        pool: Pool::ClsMeanPatch,
        gelu: Gelu::Erf,
        rows: Rows::Cls,
        pre_norm: false,
    },
];

fn model(s: &Shape, dtype: DType, seed: u64) -> Vit {
    // Training code builds single-CLS, CLS-pooled models; the other layouts are made from one.
    let cfg = VitConfig {
        image_size: s.image,
        patch_size: s.patch,
        channels: 3,
        hidden: s.hidden,
        mlp_dim: s.mlp,
        heads: s.heads,
        layers: 3,
        num_classes: 6,
        prefix_tokens: 1,
        ln_eps: 1e-6,
        gelu: s.gelu,
        pool: Pool::Cls,
        double_fc_norm: false,
        registers: 0,
        embedding: false,
        pre_norm: false,
        layer_scale: false,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let params = Params::init(&cfg, &mut rng, &Device::Cpu).unwrap();
    let noise = |shape: &[usize]| Tensor::randn(0f64, 0.3, shape, &Device::Cpu);
    // Initial biases are zero and LayerNorm weights one: perturb everything so that every
    // parameter's role shows in the result.
    let mut m = params
        .frozen_vit_with(|t| (t.to_dtype(DType::F64)? + noise(t.dims())?)?.to_dtype(dtype))
        .unwrap();
    if s.prefix > 1 {
        let extra = s.prefix - 1;
        let d = s.hidden;
        let more = || noise(&[extra, d]).unwrap().to_dtype(dtype).unwrap();
        m.prefix = Tensor::cat(&[&m.prefix, &more()], 0).unwrap();
        m.pos = Tensor::cat(
            &[
                &m.pos.narrow(0, 0, 1).unwrap(),
                &more(),
                &m.pos.narrow(0, 1, m.pos.dim(0).unwrap() - 1).unwrap(),
            ],
            0,
        )
        .unwrap();
        m.cfg.prefix_tokens = s.prefix;
    }
    m.cfg.pool = s.pool;
    let d = s.hidden;
    let linear = |out: usize, inp: usize| {
        let w = noise(&[out, inp]).unwrap().to_dtype(dtype).unwrap();
        let b = noise(&[out]).unwrap().to_dtype(dtype).unwrap();
        ops::Linear::new(w, Some(b))
    };
    match s.pool {
        Pool::ClsDist => m.head_dist = Some(linear(cfg.num_classes, d)),
        Pool::ClsMeanPatch => {
            m.head = linear(cfg.num_classes, 2 * d);
            m.cfg.registers = s.prefix - 1;
        }
        _ => {}
    }
    if s.pre_norm {
        let ones = Tensor::ones(d, DType::F64, &Device::Cpu).unwrap();
        m.pre_norm = Some(ops::LayerNorm {
            weight: (ones + noise(&[d]).unwrap())
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
            bias: noise(&[d]).unwrap().to_dtype(dtype).unwrap(),
            eps: 1e-5,
        });
        m.cfg.pre_norm = true;
    }
    m
}

fn images(s: &Shape, n: usize, dtype: DType) -> Tensor {
    Tensor::randn(0f64, 1.0, (n, 3, s.image, s.image), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn frozen_forward_equals_the_op_by_op_oracle_on_every_shape() {
    for (i, s) in SHAPES.iter().enumerate() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
            let m = model(s, dtype, i as u64);
            let x = images(s, 3, dtype);
            let rows = s.rows;
            let a = m.forward(&x, &[], Some(rows), Mode::Frozen).unwrap();
            let b = m.forward(&x, &[], Some(rows), Mode::Train).unwrap();
            // The device block (what CUDA runs), here on the CPU.
            let c = with_device_block(|| m.forward(&x, &[], Some(rows), Mode::Frozen).unwrap());
            let pb = flat(&ops::softmax_plain(&b.logits).unwrap());
            for (name, got) in [("slice", &a), ("device", &c)] {
                let pa = flat(&ops::softmax_plain(&got.logits).unwrap());
                let what = format!("shape {i} {dtype:?} {name} block");
                assert_close(&pa, &pb, tol, &format!("{what} probabilities"));
                assert_eq!(got.hidden.len(), b.hidden.len());
                for (l, (ha, hb)) in got.hidden.iter().zip(&b.hidden).enumerate() {
                    assert_close(&flat(ha), &flat(hb), tol, &format!("{what} layer {l}"));
                }
            }
        }
    }
}

#[test]
fn one_backward_equals_per_layer_oracle_backwards_on_every_shape() {
    for (i, s) in SHAPES.iter().enumerate() {
        let m = model(s, DType::F64, 10 + i as u64);
        let c = &m.cfg;
        let x = images(s, 2, DType::F64);
        let rows = s.rows;
        let per_row = if rows.single() { 1 } else { c.patches() };
        // Three rows (images 0, 1, 0), clamps at layers 0 and 2 at arbitrary values.
        let image_of_row = [0usize, 1, 0];
        let clamps: Vec<(usize, Tensor)> = [0usize, 2]
            .iter()
            .map(|&l| {
                let dims: Vec<usize> = if rows.single() {
                    vec![3, c.mlp_dim]
                } else {
                    vec![3, per_row, c.mlp_dim]
                };
                (l, Tensor::randn(0f64, 0.5, dims, &Device::Cpu).unwrap())
            })
            .collect();
        let targets = [1usize, 4, 2];
        for probe in [false, true] {
            let batch = ClampBatch {
                images: &x,
                image_of_row: &image_of_row,
                rows,
                clamps: &clamps,
                targets: &targets,
                probe,
            };
            let got = clamp_gradients(&m, &batch, 2).unwrap();
            let on_device = with_device_block(|| clamp_gradients(&m, &batch, 3).unwrap());
            let idx = Tensor::new(&[0u32, 1, 0], &Device::Cpu).unwrap();
            let xr = x.index_select(&idx, 0).unwrap();
            for (ci, (layer, _)) in clamps.iter().enumerate() {
                // The oracle: only this clamp is a leaf; plain ops; sum of the rows' targets.
                let var = Var::from_tensor(&clamps[ci].1).unwrap();
                let edits: Vec<Option<LayerEdit>> = (0..c.layers)
                    .map(|l| {
                        let (_, t) = clamps.iter().find(|(cl, _)| *cl == l)?;
                        let value = if l == *layer {
                            var.as_tensor().clone()
                        } else {
                            t.clone()
                        };
                        let edit = if probe {
                            // A probe adds; a non-leaf probe value is a constant offset.
                            let v = if l == *layer {
                                var.clone()
                            } else {
                                Var::from_tensor(t).unwrap()
                            };
                            Edit::Probe(v)
                        } else {
                            Edit::Clamp(value)
                        };
                        Some(LayerEdit { rows, edit })
                    })
                    .collect();
                let logits = m.forward(&xr, &edits, None, Mode::Train).unwrap().logits;
                let p = ops::softmax_plain(&logits).unwrap();
                let mask: Vec<f64> = (0..3)
                    .flat_map(|r| (0..c.num_classes).map(move |k| (k == targets[r]) as u8 as f64))
                    .collect();
                let mask = Tensor::from_vec(mask, (3, c.num_classes), &Device::Cpu).unwrap();
                let f = (p * mask).unwrap().sum_all().unwrap();
                let want = flat(f.backward().unwrap().get(var.as_tensor()).unwrap());
                assert_close(
                    &got.grads[ci],
                    &want,
                    1e-11,
                    &format!("shape {i} layer {layer} probe {probe}"),
                );
                assert_close(
                    &on_device.grads[ci],
                    &want,
                    1e-11,
                    &format!("shape {i} layer {layer} probe {probe} (device block)"),
                );
            }
        }
    }
}
