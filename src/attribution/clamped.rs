//! Clamped passes, shared by the search engines, the JAS, the baselines and `explain`: the
//! values a layer's clamp holds at each Riemann step, and one run of B*m clamped rows.
use super::{Activations, AttributionSettings};
use crate::model::gradients::{clamp_gradients, ClampBatch, ClampGrads};
use crate::model::Vit;
use candle_core::{Result, Tensor};

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
