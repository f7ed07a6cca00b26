//! Layer-progressive neuron locating (SPEC section 4), with the top-K (section 6) and MAE
//! (section 7) variants, by either engine ([`SearchEngine`]); here the reference engine: one
//! clean forward per image, one full forward + backward per layer step (the prefix engine's
//! oracle, `search_prefix.rs`).
use super::clamped::{clamp_values, entering, run_clamped, Scaled};
use super::search_prefix::{prefix_applies, prefix_search};
use super::{
    top_k, Activations, AttributionSettings, Check, Jas, NeuronSets, SearchEngine, SearchResult,
};
use crate::model::Vit;
use candle_core::{Result, Tensor};

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
    Ok(search_with_jas(model, images, targets, acts, None, s, check)?.0)
}

/// [`layer_progressive_search_checked`], and with `clean` (F of each image on its clean pass),
/// where the engine can give it from what the search kept, the JAS of the found sets, equal to
/// `joint_attribution`'s (the prefix engine, when one image's rows fit a chunk: one backward
/// instead of a forward and a backward). `None` where the caller must compute it.
pub fn search_with_jas(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    clean: Option<&[f64]>,
    s: &AttributionSettings,
    check: Check,
) -> Result<(SearchResult, Option<Vec<Jas>>)> {
    if let Some(c) = clean.filter(|c| c.len() != targets.len()) {
        candle_core::bail!(
            "{} clean probabilities for {} images",
            c.len(),
            targets.len()
        );
    }
    match s.engine {
        SearchEngine::Prefix if prefix_applies(model, s) => {
            prefix_search(model, images, targets, acts, s, clean, check)
        }
        // Where the prefix engine does not apply (bf16 weights; MAE rows when one image's m rows
        // exceed a chunk), the reference engine runs.
        _ => Ok((
            reference_search(model, images, targets, acts, s, check)?,
            None,
        )),
    }
}

/// The reference engine: at step T, all m rows run every block forward with the path clamps
/// below T and the layer clamp at T, then one backward to every clamp.
fn reference_search(
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
                        Scaled::Units(&sets[i][l])
                    } else {
                        Scaled::All
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
