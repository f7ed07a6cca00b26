//! The Joint Attribution Score of a given neuron set per layer (SPEC section 5).
use super::clamped::{clamp_values, entering, run_clamped, Scaled};
use super::{Activations, AttributionSettings, NeuronSets};
use crate::model::{Edit, LayerEdit, Rows, Vit};
use candle_core::{DType, Result, Tensor};

pub use crate::io::results::Jas;

/// Patch tokens of ViT-B/16 at 224: the authors divide every MAE JAS by this.
pub const REFERENCE_MAE_DIVISOR: f64 = 196.0;

/// JAS of `sets[image]` for every image of the batch; `clean_probs[image]` is F on the clean pass.
pub fn joint_attribution(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    sets: &[NeuronSets],
    clean_probs: &[f64],
    s: &AttributionSettings,
) -> Result<Vec<Jas>> {
    let (b, layers, m) = (targets.len(), model.cfg.layers, s.steps);
    super::check_sets(sets, layers, model.cfg.mlp_dim)?;
    if sets.len() != b {
        candle_core::bail!("{} neuron sets for {b} images", sets.len());
    }
    let (tokens, at) = (acts.tokens, acts.clamp_layout(m));
    let clamps = (0..layers)
        .map(|l| {
            Ok((
                l,
                clamp_values(model, acts, l, s, |i| Scaled::Units(&sets[i][l]))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let grads = run_clamped(model, images, targets, &clamps, s)?;
    // Row k = 0 is the clamped pass at alpha = 0 (path zeroed, every other unit of the clamped
    // rows held at its clean value); alpha = 1 reproduces the clean pass.
    let zeroed: Vec<f64> = (0..b).map(|i| grads.probs[at.row(i, 0)]).collect();
    let divisor = if s.compat && tokens > 1 {
        REFERENCE_MAE_DIVISOR
    } else {
        1.0
    };
    Ok((0..b)
        .map(|i| {
            let (mut reference, mut additive) = (0.0, 0.0);
            for t in 0..tokens {
                let (mut sum_a, mut sum_g) = (0.0, 0.0);
                for (l, set) in sets[i].iter().enumerate() {
                    for &p in entering(set, s.compat) {
                        let a = acts.layers[i][l][at.unit(t, p)];
                        let g: f64 = (0..m).map(|k| grads.grads[l][at.index(i, k, t, p)]).sum();
                        sum_a += a;
                        sum_g += g;
                        additive += a * g / m as f64;
                    }
                }
                reference += sum_a * sum_g / m as f64;
            }
            Jas {
                reference: reference / divisor,
                additive: additive / divisor,
                delta: clean_probs[i] - zeroed[i] - additive,
            }
        })
        .collect())
}

/// Full probability vectors `[image][class]` when every neuron of `sets[image]` is multiplied by
/// `factor` (0 removes, 2 enhances; "current value" = after upstream edits, all layers in one
/// forward pass).
pub fn edited_probabilities(
    model: &Vit,
    images: &Tensor,
    sets: &[NeuronSets],
    factor: f64,
    rows: Rows,
) -> Result<Vec<Vec<f64>>> {
    let (b, mlp) = (sets.len(), model.cfg.mlp_dim);
    super::check_sets(sets, model.cfg.layers, mlp)?;
    let edits = (0..model.cfg.layers)
        .map(|l| {
            let mut f = vec![1f64; b * mlp];
            for (i, set) in sets.iter().enumerate() {
                for &p in &set[l] {
                    f[i * mlp + p] = factor;
                }
            }
            let t = Tensor::from_vec(f, (b, mlp), model.device())?.to_dtype(model.dtype())?;
            Ok(Some(LayerEdit {
                rows,
                edit: Edit::Scale(t),
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    model
        .probabilities(images, &edits)?
        .to_dtype(DType::F64)?
        .to_vec2()
}

/// F per image (the target's probability) with the sets edited as in [`edited_probabilities`].
pub fn set_probabilities(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    sets: &[NeuronSets],
    factor: f64,
    s: &AttributionSettings,
) -> Result<Vec<f64>> {
    let probs = edited_probabilities(model, images, sets, factor, s.rows)?;
    Ok(probs.iter().zip(targets).map(|(p, &t)| p[t]).collect())
}
