//! Properties of the method that no golden file pins: independence from batching, chunking,
//! order and threads; convergence of the additive JAS; one backward per step equals the authors'
//! separate per-layer backward passes.
mod common;
use candle_core::{DType, Device, Tensor, Var};
use common::*;
use neuronpath::attribution::discover::{discover_batch, ImageResult, Method, Request, TargetKind};
use neuronpath::attribution::{
    clean_pass, joint_attribution, layer_progressive_search, AttributionSettings,
};
use neuronpath::model::{ops, Edit, LayerEdit, Mode, Rows, Vit};

fn settings(steps: usize, chunk: usize) -> AttributionSettings {
    AttributionSettings {
        steps,
        top_k: 1,
        compat: false,
        rows: Rows::Cls,
        chunk_rows: chunk,
        engine: Default::default(),
    }
}

/// Four images: the two golden inputs and two seeded random ones.
fn images() -> Tensor {
    let x = npy("golden/input_x.npy").to_dtype(DType::F64).unwrap();
    let y = Tensor::randn(0f64, 1.0, (2, 3, 32, 32), &Device::Cpu).unwrap();
    Tensor::cat(&[&x, &y.affine(0.7, 0.1).unwrap()], 0).unwrap()
}

fn request(chunk: usize) -> Request {
    Request {
        settings: settings(20, chunk),
        methods: vec![
            Method::Path,
            Method::Activation,
            Method::Influence,
            Method::Ig,
            Method::Random,
        ],
        target: TargetKind::Label,
        seed: 7,
    }
}

/// Same neurons, and every score equal up to rounding. The scores are sums of probability
/// changes (order 1), so the bound is absolute: a different batch shape may pick a different GEMM
/// kernel (AVX2 vs AVX-512 machines differ here) and reorder sums at the 1e-16 level, which a
/// relative bound on a near-zero JAS (a random path's is ~1e-4) would magnify.
fn same_results(a: &ImageResult, b: &ImageResult, what: &str) {
    assert_eq!(a.methods.len(), b.methods.len(), "{what}");
    for (m, r) in &a.methods {
        let o = &b.methods[m];
        assert_eq!(r.path, o.path, "{m}, {what}");
        assert_eq!(r.sets, o.sets, "{m}, {what}");
        let pairs = [
            ("JAS", r.jas.reference, o.jas.reference),
            ("additive JAS", r.jas.additive, o.jas.additive),
            ("delta", r.jas.delta, o.jas.delta),
            ("removed", r.prob_removed, o.prob_removed),
            ("enhanced", r.prob_enhanced, o.prob_enhanced),
        ];
        for (name, x, y) in pairs {
            assert!((x - y).abs() <= 1e-12, "{m} {name}, {what}: {x:e} vs {y:e}");
        }
        let (ma, mb) = (
            r.margins.clone().unwrap_or_default(),
            o.margins.clone().unwrap_or_default(),
        );
        assert_eq!(ma.len(), mb.len(), "{m} margins, {what}");
        for (x, y) in ma.iter().zip(&mb) {
            assert!((x - y).abs() <= 1e-12, "{m} margin, {what}: {x:e} vs {y:e}");
        }
    }
}

#[test]
fn results_do_not_depend_on_batch_chunk_order_or_threads() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = images();
    let labels = vec![Some(3), Some(1), Some(4), Some(9)];
    let keys = vec![0u64, 1, 2, 3];
    let all = discover_batch(&model, &x, &labels, &keys, &request(10_000)).unwrap();
    // One image at a time, tiny chunks.
    for i in 0..4 {
        let one = discover_batch(
            &model,
            &x.narrow(0, i, 1).unwrap(),
            &labels[i..=i],
            &keys[i..=i],
            &request(3),
        )
        .unwrap();
        same_results(&all[i], &one[0], &format!("image {i} alone, chunks of 3"));
    }
    // Reversed order.
    let rev = Tensor::new(&[3u32, 2, 1, 0], &Device::Cpu).unwrap();
    let xr = x.index_select(&rev, 0).unwrap();
    let lr: Vec<_> = labels.iter().rev().cloned().collect();
    let kr: Vec<_> = keys.iter().rev().cloned().collect();
    let back = discover_batch(&model, &xr, &lr, &kr, &request(10_000)).unwrap();
    for i in 0..4 {
        same_results(&all[i], &back[3 - i], &format!("image {i} reversed"));
    }
    // A single-thread pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let single =
        pool.install(|| discover_batch(&model, &x, &labels, &keys, &request(10_000)).unwrap());
    for (i, (a, b)) in all.iter().zip(&single).enumerate() {
        same_results(a, b, &format!("image {i} on one thread"));
    }
}

#[test]
fn additive_jas_convergence_delta_shrinks_with_steps() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = images();
    let targets = vec![3, 1, 4, 9];
    let (probs, acts) = clean_pass(&model, &x, Rows::Cls).unwrap();
    let clean: Vec<f64> = probs.iter().zip(&targets).map(|(p, &t)| p[t]).collect();
    let sets = layer_progressive_search(&model, &x, &targets, &acts, &settings(20, 1000))
        .unwrap()
        .sets;
    let delta = |m: usize| -> f64 {
        let j = joint_attribution(
            &model,
            &x,
            &targets,
            &acts,
            &sets,
            &clean,
            &settings(m, 1000),
        )
        .unwrap();
        j.iter().map(|j| j.delta.abs()).sum::<f64>()
    };
    let (d5, d20, d80, d320) = (delta(5), delta(20), delta(80), delta(320));
    eprintln!("convergence delta: m=5 {d5:e}, 20 {d20:e}, 80 {d80:e}, 320 {d320:e}");
    assert!(
        d5 > d20 && d20 > d80 && d80 > d320,
        "{d5} {d20} {d80} {d320}"
    );
    // Left Riemann sum: error ~ 1/m.
    assert!(d320 < d20 / 8.0);
}

/// The authors' way: at step T, T+1 separate backward passes, each with one leaf, plain ops;
/// top-K sets with all K scaled, and all K (or with `compat` the K-th only) in the sums.
fn authors_scores(
    model: &Vit,
    x: &Tensor,
    target: usize,
    m: usize,
    k_top: usize,
    compat: bool,
) -> Vec<Vec<f64>> {
    let (_, acts) = clean_pass(model, x, Rows::Cls).unwrap();
    let a = &acts.layers[0];
    let mlp = model.cfg.mlp_dim;
    let mut path: Vec<Vec<usize>> = Vec::new();
    let mut all = Vec::new();
    for t in 0..model.cfg.layers {
        let clamp = |l: usize| -> Tensor {
            let v: Vec<f64> = (0..m)
                .flat_map(|k| {
                    let alpha = k as f64 / m as f64;
                    let mut row = a[l].clone();
                    if l < t {
                        for &p in &path[l] {
                            row[p] *= alpha;
                        }
                    } else {
                        row.iter_mut().for_each(|v| *v *= alpha);
                    }
                    row
                })
                .collect();
            Tensor::from_vec(v, (m, mlp), &Device::Cpu).unwrap()
        };
        let xs = x
            .broadcast_as((m, 3, 32, 32))
            .unwrap()
            .contiguous()
            .unwrap();
        let mut grads = Vec::new();
        for leaf in 0..=t {
            let var = Var::from_tensor(&clamp(leaf)).unwrap();
            let edits: Vec<_> = (0..=t)
                .map(|l| {
                    Some(LayerEdit {
                        rows: Rows::Cls,
                        edit: Edit::Clamp(if l == leaf {
                            var.as_tensor().clone()
                        } else {
                            clamp(l)
                        }),
                    })
                })
                .collect();
            let logits = model
                .forward(&xs, &edits, None, Mode::Train)
                .unwrap()
                .logits;
            let f = ops::softmax_plain(&logits)
                .unwrap()
                .narrow(1, target, 1)
                .unwrap()
                .sum_all()
                .unwrap();
            let g = f.backward().unwrap();
            grads.push(to_vec2(g.get(var.as_tensor()).unwrap()));
        }
        let entering = |l: usize| -> Vec<usize> {
            if compat {
                vec![path[l][k_top - 1]]
            } else {
                path[l].clone()
            }
        };
        let prev_g: f64 = (0..t)
            .flat_map(|l| entering(l).into_iter().map(move |p| (l, p)))
            .map(|(l, p)| (0..m).map(|k| grads[l][k][p]).sum::<f64>())
            .sum();
        let prev_a: f64 = (0..t)
            .flat_map(|l| entering(l).into_iter().map(move |p| a[l][p]))
            .sum();
        let score: Vec<f64> = (0..mlp)
            .map(|j| {
                let g: f64 = (0..m).map(|k| grads[t][k][j]).sum();
                (g + prev_g) / m as f64 * (a[t][j] + prev_a)
            })
            .collect();
        path.push(neuronpath::attribution::top_k(&score, k_top));
        all.push(score);
    }
    all
}

#[test]
fn one_backward_per_step_equals_separate_per_layer_backwards() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = images();
    for i in [0usize, 2] {
        let xi = x.narrow(0, i, 1).unwrap();
        let (_, acts) = clean_pass(&model, &xi, Rows::Cls).unwrap();
        let ours = layer_progressive_search(&model, &xi, &[3], &acts, &settings(10, 1000)).unwrap();
        let theirs = authors_scores(&model, &xi, 3, 10, 1, false);
        for (l, w) in theirs.iter().enumerate() {
            assert_close(
                &ours.scores[0][l],
                w,
                1e-11,
                &format!("image {i} layer {l}"),
            );
        }
    }
}

#[test]
fn top_k_search_corrected_and_compat_match_the_naive_oracle() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let xi = images().narrow(0, 1, 1).unwrap();
    let (_, acts) = clean_pass(&model, &xi, Rows::Cls).unwrap();
    let mut outs = Vec::new();
    for compat in [false, true] {
        let mut s = settings(10, 1000);
        s.top_k = 5;
        s.compat = compat;
        let ours = layer_progressive_search(&model, &xi, &[3], &acts, &s).unwrap();
        let theirs = authors_scores(&model, &xi, 3, 10, 5, compat);
        for (l, w) in theirs.iter().enumerate() {
            assert_close(
                &ours.scores[0][l],
                w,
                1e-11,
                &format!("top-5 compat={compat} layer {l}"),
            );
            assert_eq!(ours.sets[0][l], neuronpath::attribution::top_k(w, 5));
        }
        outs.push(ours.scores[0][1].clone());
    }
    // The authors' K-th-only sums are a different score from layer 1 on.
    assert!(max_rel(&outs[0], &outs[1]) > 1e-6);
}

#[test]
fn per_layer_ig_at_layer_zero_is_the_first_search_step() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = images();
    let targets = [3, 1, 4, 9];
    let (_, acts) = clean_pass(&model, &x, Rows::Cls).unwrap();
    let s = settings(20, 1000);
    let ig =
        neuronpath::attribution::baselines::layer_ig_sets(&model, &x, &targets, &acts, &s).unwrap();
    let path = layer_progressive_search(&model, &x, &targets, &acts, &s).unwrap();
    for (ig, path) in ig.iter().zip(&path.sets) {
        assert_eq!(ig[0], path[0]);
    }
}

#[test]
fn influence_pattern_matches_per_layer_total_derivatives() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = images().narrow(0, 0, 2).unwrap();
    let (_, acts) = clean_pass(&model, &x, Rows::Cls).unwrap();
    let mut s = settings(6, 1000);
    s.top_k = 64;
    let ranked =
        neuronpath::attribution::baselines::influence_sets(&model, &x, &[3, 3], &acts, &s).unwrap();
    // Oracle: for each layer alone, dF(alpha x)/da_CLS through plain ops with one zero probe.
    for l in 0..4 {
        let mut score = vec![vec![0f64; 64]; 2];
        for k in 0..6 {
            let xs = x.affine(k as f64 / 6.0, 0.0).unwrap();
            let var = Var::from_tensor(&Tensor::zeros((2, 64), DType::F64, &Device::Cpu).unwrap())
                .unwrap();
            let mut edits = vec![None; 4];
            edits[l] = Some(LayerEdit {
                rows: Rows::Cls,
                edit: Edit::Probe(var.clone()),
            });
            let logits = model
                .forward(&xs, &edits, None, Mode::Train)
                .unwrap()
                .logits;
            let f = ops::softmax_plain(&logits)
                .unwrap()
                .narrow(1, 3, 1)
                .unwrap()
                .sum_all()
                .unwrap();
            let g = to_vec2(f.backward().unwrap().get(var.as_tensor()).unwrap());
            for i in 0..2 {
                for j in 0..64 {
                    score[i][j] += g[i][j] / 6.0;
                }
            }
        }
        for i in 0..2 {
            assert_eq!(
                ranked[i][l],
                neuronpath::attribution::top_k(&score[i], 64),
                "layer {l} image {i}"
            );
        }
    }
}

#[test]
fn an_empty_batch_gives_no_results_and_no_error() {
    let model = load("golden/tiny_vit.npz", DType::F64);
    let x = Tensor::zeros((0, 3, 32, 32), DType::F64, &Device::Cpu).unwrap();
    let out = discover_batch(&model, &x, &[], &[], &request(10_000)).unwrap();
    assert!(out.is_empty());
}
