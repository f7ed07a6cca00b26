//! Everything `neuronpath explain` shows for one image: its path, each path neuron's share of
//! the JAS, and where in the image each neuron (and the path as a whole) looks.
use super::clamped::{clamp_values, run_clamped, Scaled};
use super::spatial::{spatial_attribution, PathInput, Spatial};
use super::{
    clean_pass, joint_attribution, layer_progressive_search, Activations, AttributionSettings, Jas,
};
use crate::model::Vit;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// One image's path, explained.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Explanation {
    /// The class F is the probability of.
    pub target: usize,
    /// F on the clean image.
    pub prob_target: f64,
    /// The model's top-1 class.
    pub prediction: usize,
    /// The probability of `prediction` on the clean image.
    pub prob_prediction: f64,
    /// `path[l]`: the chosen unit of layer l.
    pub path: Vec<usize>,
    /// Clean activation of each path neuron (summed over tokens for the MAE variant).
    pub activations: Vec<f64>,
    /// Each path neuron's term of the additive JAS, `A_l[p_l] (1/m) sum_k g_lk[p_l]`: they sum
    /// to `jas.additive`.
    pub contributions: Vec<f64>,
    /// The path's JAS (both forms) and its completeness delta.
    pub jas: Jas,
    /// Patch maps of every path neuron and of the path as a whole.
    pub spatial: Spatial,
}

/// Each path neuron's term of the additive JAS of `path` for `image` (1, C, S, S) and class
/// `target`, `A_l[p_l] (1/m) sum_k g_lk[p_l]` (summed over the neuron's tokens), from the same
/// clamped passes the JAS runs: the terms sum to the additive JAS.
pub fn path_terms(
    model: &Vit,
    image: &Tensor,
    target: usize,
    acts: &Activations,
    path: &[usize],
    s: &AttributionSettings,
) -> Result<Vec<f64>> {
    let (layers, m, at) = (model.cfg.layers, s.steps, acts.clamp_layout(s.steps));
    let clamps = (0..layers)
        .map(|l| {
            let unit = [path[l]];
            Ok((
                l,
                clamp_values(model, acts, l, s, |_| Scaled::Units(&unit))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let grads = run_clamped(model, image, &[target], &clamps, s)?;
    Ok((0..layers)
        .map(|l| {
            (0..acts.tokens)
                .map(|t| {
                    let a = acts.layers[0][l][at.unit(t, path[l])];
                    let g: f64 = (0..m)
                        .map(|k| grads.grads[l][at.index(0, k, t, path[l])])
                        .sum();
                    a * g / m as f64
                })
                .sum()
        })
        .collect())
}

/// Searches the path of `image` (1, C, S, S) for class `target` and explains it; the spatial
/// maps use `spatial_steps` Riemann steps (the search and JAS use `s.steps`).
pub fn explain(
    model: &Vit,
    image: &Tensor,
    target: usize,
    s: &AttributionSettings,
    spatial_steps: usize,
) -> Result<Explanation> {
    let (probs, acts) = clean_pass(model, image, s.rows)?;
    let probs = &probs[0];
    let prediction = super::top_k(probs, 1)[0];
    let found = layer_progressive_search(model, image, &[target], &acts, s)?;
    let sets = found.sets;
    let path: Vec<usize> = sets[0].iter().map(|set| set[0]).collect();
    let jas = joint_attribution(model, image, &[target], &acts, &sets, &[probs[target]], s)?[0];
    let contributions = path_terms(model, image, target, &acts, &path, s)?;
    let activations: Vec<f64> = (0..model.cfg.layers)
        .map(|l| acts.unit_sum(0, l, path[l]))
        .collect();
    let input = PathInput {
        image,
        target,
        path: &path,
        acts: &acts,
        clean_prob: probs[target],
        rows: s.rows,
    };
    let spatial = spatial_attribution(model, &input, spatial_steps, s.chunk_rows)?;
    Ok(Explanation {
        target,
        prob_target: probs[target],
        prediction,
        prob_prediction: probs[prediction],
        path,
        activations,
        contributions,
        jas,
        spatial,
    })
}
