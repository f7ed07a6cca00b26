//! The baselines of SPEC section 8. Each returns one neuron set per layer per image, so that every
//! method's path can be scored with the same JAS. A new baseline is its [`Method`] arm (name,
//! colour, order) and its function here, dispatched by [`method_sets`].
use super::clamped::{clamp_values, run_clamped, Scaled};
use super::{layer_progressive_search, top_k, Activations, AttributionSettings, NeuronSets};
use crate::io::results::Method;
use crate::model::gradients::{clamp_gradients, ClampBatch};
use crate::model::Vit;
use candle_core::{Result, Tensor};
use rand::{Rng, SeedableRng};

/// A batch of images as every method sees it.
pub struct Batch<'a> {
    /// The model every method runs.
    pub model: &'a Vit,
    /// The images (B, C, S, S).
    pub images: &'a Tensor,
    /// The class F is the probability of, per image.
    pub targets: &'a [usize],
    /// The clean pass.
    pub acts: &'a Activations,
    /// Steps, top-K, rows and chunking of every method.
    pub settings: &'a AttributionSettings,
    /// Per image, the key that seeds its random choices (its index in the inputs).
    pub keys: &'a [u64],
    /// The run's seed.
    pub seed: u64,
}

/// The neuron sets of method `m` for every image of `b` (the path by the layer-progressive
/// search, the baselines by their functions below).
pub fn method_sets(m: Method, b: &Batch) -> Result<Vec<NeuronSets>> {
    let (model, s) = (b.model, b.settings);
    let (layers, mlp) = (model.cfg.layers, model.cfg.mlp_dim);
    Ok(match m {
        Method::Path => layer_progressive_search(model, b.images, b.targets, b.acts, s)?.sets,
        Method::Activation => activation_sets(b.acts, s.top_k),
        Method::Influence => influence_sets(model, b.images, b.targets, b.acts, s)?,
        Method::Ig => layer_ig_sets(model, b.images, b.targets, b.acts, s)?,
        Method::Random => b
            .keys
            .iter()
            .map(|&k| random_set(layers, mlp, s.top_k, b.seed, k))
            .collect(),
    })
}

/// Activation: the units with the largest clean activation (summed over tokens for MAE).
pub fn activation_sets(acts: &Activations, k: usize) -> Vec<NeuronSets> {
    (0..acts.layers.len())
        .map(|i| {
            (0..acts.layers[i].len())
                .map(|l| {
                    let sums: Vec<f64> = (0..acts.mlp).map(|j| acts.unit_sum(i, l, j)).collect();
                    top_k(&sums, k)
                })
                .collect()
        })
        .collect()
}

/// Influence pattern (the paper's Algorithm 2 as the code runs it): inputs alpha_k * x, score =
/// mean over k of the total derivative `dF/da_l[j]`. Every layer is independent, so one forward
/// and one backward per step give all layers.
pub fn influence_sets(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
) -> Result<Vec<NeuronSets>> {
    let (b, m, layers) = (targets.len(), s.steps, model.cfg.layers);
    let (tokens, mlp, at) = (acts.tokens, acts.mlp, acts.clamp_layout(m));
    let alphas: Vec<f64> = (0..b).flat_map(|_| (0..m).map(|k| s.alpha(k))).collect();
    let alphas = Tensor::from_vec(alphas, b * m, model.device())?.to_dtype(images.dtype())?;
    let rep: Vec<u32> = (0..at.rows(b)).map(|r| at.image_of(r) as u32).collect();
    let scaled = images
        .index_select(&Tensor::new(rep, model.device())?, 0)?
        .broadcast_mul(&alphas.reshape((at.rows(b), 1, 1, 1))?)?;
    let zero = Tensor::zeros(at.shape(b), model.dtype(), model.device())?;
    let probes: Vec<(usize, Tensor)> = (0..layers).map(|l| (l, zero.clone())).collect();
    let identity: Vec<usize> = (0..at.rows(b)).collect();
    let row_targets: Vec<usize> = identity.iter().map(|&r| targets[at.image_of(r)]).collect();
    let grads = clamp_gradients(
        model,
        &ClampBatch {
            images: &scaled,
            image_of_row: &identity,
            rows: s.rows,
            clamps: &probes,
            targets: &row_targets,
            probe: true,
        },
        s.chunk_rows,
    )?;
    Ok((0..b)
        .map(|i| {
            (0..layers)
                .map(|l| {
                    let mut score = vec![0f64; mlp];
                    for k in 0..m {
                        let row = &grads.grads[l][at.row_range(i, k)];
                        for t in 0..tokens {
                            for j in 0..mlp {
                                score[j] += row[at.unit(t, j)] / m as f64;
                            }
                        }
                    }
                    top_k(&score, s.top_k)
                })
                .collect()
        })
        .collect())
}

/// Per-layer integrated gradients (Knowledge Neurons): layer l alone scaled by alpha_k,
/// score = mean gradient times clean activation, no path.
pub fn layer_ig_sets(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
) -> Result<Vec<NeuronSets>> {
    let (b, m) = (targets.len(), s.steps);
    let (tokens, mlp, at) = (acts.tokens, acts.mlp, acts.clamp_layout(m));
    let mut sets: Vec<NeuronSets> = vec![Vec::new(); b];
    for l in 0..model.cfg.layers {
        let clamp = clamp_values(model, acts, l, s, |_| Scaled::All)?;
        let grads = run_clamped(model, images, targets, &[(l, clamp)], s)?;
        for (i, set) in sets.iter_mut().enumerate() {
            let mut score = vec![0f64; mlp];
            for t in 0..tokens {
                for (j, sc) in score.iter_mut().enumerate() {
                    let g: f64 = (0..m).map(|k| grads.grads[0][at.index(i, k, t, j)]).sum();
                    *sc += g / m as f64 * acts.layers[i][l][at.unit(t, j)];
                }
            }
            set.push(top_k(&score, s.top_k));
        }
    }
    Ok(sets)
}

/// Random: `k` distinct uniform units per layer, from a generator seeded by (seed, image key),
/// so that an image's random path does not depend on batching or order.
pub fn random_set(layers: usize, mlp: usize, k: usize, seed: u64, image_key: u64) -> NeuronSets {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ image_key.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    (0..layers)
        .map(|_| {
            let mut set = Vec::with_capacity(k);
            while set.len() < k.min(mlp) {
                let j = rng.random_range(0..mlp);
                if !set.contains(&j) {
                    set.push(j);
                }
            }
            set
        })
        .collect()
}
