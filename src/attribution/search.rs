//! Layer-progressive neuron locating (SPEC section 4), with the top-K (section 6) and MAE
//! (section 7) variants, by either engine ([`SearchEngine`]); here the reference engine: one
//! clean forward per image, one full forward + backward per layer step (the prefix engine's
//! oracle, `search_prefix.rs`).
use super::{top_k, Activations, AttributionSettings, Check, NeuronSets, SearchEngine};
use crate::model::gradients::{clamp_gradients, ClampBatch, ClampGrads};
use crate::model::Vit;
use candle_core::{Result, Tensor};

/// Per image: the chosen neurons `[layer][rank]` and the candidate scores `[layer][unit]`.
#[derive(Clone, Debug)]
pub struct SearchResult {
    /// Per image, the chosen neurons `[layer][rank]`.
    pub sets: Vec<NeuronSets>,
    /// Per image, every unit's selection score `[layer][unit]`.
    pub scores: Vec<Vec<Vec<f64>>>,
}

/// What a layer's clamp holds at step k for one image.
#[derive(Clone, Copy)]
pub(crate) enum Scaled<'a> {
    /// The whole layer times alpha_k.
    All,
    /// Clean values with these units times alpha_k (on every selected token).
    Units(&'a [usize]),
}

/// Clamp values (B*m, tokens, M) of `layer`, row `i*m + k` = image i at step k.
pub(crate) fn clamp_values<'a>(
    model: &Vit,
    acts: &Activations,
    layer: usize,
    s: &AttributionSettings,
    scaled: impl Fn(usize) -> Scaled<'a>,
) -> Result<Tensor> {
    let (b, at) = (acts.layers.len(), acts.clamp_layout(s.steps));
    let mut vals = vec![0f64; at.len(b)];
    for i in 0..b {
        let a = &acts.layers[i][layer];
        for k in 0..at.steps {
            let alpha = s.alpha(k);
            let row = &mut vals[at.row_range(i, k)];
            match scaled(i) {
                Scaled::All => row.iter_mut().zip(a).for_each(|(r, &v)| *r = alpha * v),
                Scaled::Units(units) => {
                    row.copy_from_slice(a);
                    for &j in units {
                        for t in 0..acts.tokens {
                            row[at.unit(t, j)] *= alpha;
                        }
                    }
                }
            }
        }
    }
    Tensor::from_vec(vals, at.shape(b), model.device())?.to_dtype(model.dtype())
}

/// Runs B*m clamped rows (image i at step k is row i*m+k, as in [`ClampLayout::row`]) and
/// returns F and the gradients.
///
/// [`ClampLayout::row`]: crate::model::ClampLayout::row
pub(crate) fn run_clamped(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    clamps: &[(usize, Tensor)],
    s: &AttributionSettings,
) -> Result<ClampGrads> {
    let b = targets.len();
    let image_of_row: Vec<usize> = (0..b * s.steps).map(|r| r / s.steps).collect();
    let row_targets: Vec<usize> = image_of_row.iter().map(|&i| targets[i]).collect();
    let batch = ClampBatch {
        images,
        image_of_row: &image_of_row,
        rows: s.rows,
        clamps,
        targets: &row_targets,
        probe: false,
    };
    clamp_gradients(model, &batch, s.chunk_rows)
}

/// The neurons of an earlier layer that enter the score's sums: all K, or with `compat` only
/// the K-th ranked one (the authors' code).
pub(crate) fn entering(set: &[usize], compat: bool) -> &[usize] {
    if compat && !set.is_empty() {
        &set[set.len() - 1..]
    } else {
        set
    }
}

/// The layer-progressive search for a batch of images with targets (class indices).
pub fn layer_progressive_search(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
) -> Result<SearchResult> {
    layer_progressive_search_checked(model, images, targets, acts, s, &|| Ok(()))
}

/// [`layer_progressive_search`], calling `check` before each layer's pass: an error it returns
/// stops the search and is returned unchanged (cancellation, e.g. Ctrl-C in the Python module).
/// `s.engine` picks the engine; both give the same result (up to rounding).
pub fn layer_progressive_search_checked(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
    check: Check,
) -> Result<SearchResult> {
    match s.engine {
        SearchEngine::Prefix => {
            super::search_prefix::prefix_search(model, images, targets, acts, s, check)
        }
        SearchEngine::Reference => reference_search(model, images, targets, acts, s, check),
    }
}

/// The reference engine: at step T, all m rows run every block forward with the path clamps
/// below T and the layer clamp at T, then one backward to every clamp.
pub(crate) fn reference_search(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
    check: Check,
) -> Result<SearchResult> {
    let (b, layers, m) = (targets.len(), model.cfg.layers, s.steps);
    let (tokens, mlp, at) = (acts.tokens, acts.mlp, acts.clamp_layout(m));
    let mut sets: Vec<NeuronSets> = vec![Vec::with_capacity(layers); b];
    let mut scores: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(layers); b];
    for t_layer in 0..layers {
        check()?;
        let clamps = (0..=t_layer)
            .map(|l| {
                let v = clamp_values(model, acts, l, s, |i| {
                    if l < t_layer {
                        super::search::Scaled::Units(&sets[i][l])
                    } else {
                        super::search::Scaled::All
                    }
                })?;
                Ok((l, v))
            })
            .collect::<Result<Vec<_>>>()?;
        let grads = run_clamped(model, images, targets, &clamps, s)?;
        for i in 0..b {
            let acts_i = &acts.layers[i];
            let mut score = vec![0f64; mlp];
            for t in 0..tokens {
                // Earlier layers' chosen neurons: their summed gradient over steps, summed clean value.
                let (mut prev_g, mut prev_a) = (0.0, 0.0);
                for l in 0..t_layer {
                    for &p in entering(&sets[i][l], s.compat) {
                        prev_a += acts_i[l][at.unit(t, p)];
                        for k in 0..m {
                            prev_g += grads.grads[l][at.index(i, k, t, p)];
                        }
                    }
                }
                let g_t = &grads.grads[t_layer];
                for (j, sc) in score.iter_mut().enumerate() {
                    let g: f64 = (0..m).map(|k| g_t[at.index(i, k, t, j)]).sum();
                    *sc += (g + prev_g) / m as f64 * (acts_i[t_layer][at.unit(t, j)] + prev_a);
                }
            }
            sets[i].push(top_k(&score, s.top_k));
            scores[i].push(score);
        }
    }
    Ok(SearchResult { sets, scores })
}
