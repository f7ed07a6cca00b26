//! The prefix search engine (issue 13): the layer-progressive search of SPEC section 4 with the
//! same paths and scores as the one-backward-per-step engine (`search.rs`, its oracle), in
//! L(L+1)/2 block forwards + L(L+1)/2 block backwards + L tangent blocks per row instead of 2L^2.
//!
//! - Every clamp below step T is the same at all later steps, so the residual stream x_T
//!   entering block T under the path clamps (the *prefix*) is kept per row and extended by one
//!   block once p_T is chosen.
//! - The score needs, besides the whole-row gradient at T, only `S_k = sum_{l<T} dF/dc_l[p_l]` per
//!   row. With r_T = dF/dx_T (a backward that stops at block T's input) and the tangent
//!   `t_T = sum_{l<T} dx_T/dc_l[p_l]` (forward mode along the path neurons, every clamp a
//!   constant), S_k = <r_T, t_T>; t_{T+1} = J_T t_T + fc2's column p_T on the neuron row.
//!
//! The MAE variant's score is per patch token (a vector of lower-path gradients per row, which
//! one tangent cannot carry): it runs the reference engine.
use super::clamped::{clamp_values, entering, Scaled};
use super::{top_k, Activations, AttributionSettings, Check, NeuronSets, SearchResult};
use crate::model::fused_prefix::{self, extend, row_dots, suffix_gradients};
use crate::model::{Mode, Vit};
use candle_core::{DType, Result, Tensor};

/// Whether the prefix engine runs this search (else the reference engine does, same results).
pub fn prefix_applies(model: &Vit, s: &AttributionSettings) -> bool {
    s.rows.single() && fused_prefix::available(model)
}

/// Rows per chunk at step `layer`: the reference engine's chunk holds all L blocks' saved state
/// per row, the suffix pass only L - layer of them.
fn chunk_at(s: &AttributionSettings, layers: usize, layer: usize) -> usize {
    let left = (layers - layer).max(1);
    (s.chunk_rows.max(1).saturating_mul(layers) / left).max(1)
}

/// Chunks (start, len) of `total` rows.
fn chunks(total: usize, size: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..total)
        .step_by(size.max(1))
        .map(move |a| (a, size.max(1).min(total - a)))
}

/// The search by the prefix engine; only where it applies ([`prefix_applies`]): the dispatch in
/// `search.rs` runs the reference engine otherwise.
pub(crate) fn prefix_search(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
    check: Check,
) -> Result<SearchResult> {
    let (b, layers, m) = (targets.len(), model.cfg.layers, s.steps);
    let (mlp, at) = (acts.mlp, acts.clamp_layout(m));
    let mut sets: Vec<NeuronSets> = vec![Vec::with_capacity(layers); b];
    let mut scores: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(layers); b];
    let total = at.rows(b);
    if b == 0 {
        return Ok(SearchResult { sets, scores });
    }
    let image_of_row: Vec<u32> = (0..total).map(|r| at.image_of(r) as u32).collect();
    let row_targets: Vec<usize> = (0..total).map(|r| targets[at.image_of(r)]).collect();
    let idx = Tensor::new(image_of_row, model.device())?;
    let embedded = model.embed(images, Mode::Frozen)?;
    // The prefix x_T and its tangent t_T, every row (image-major, as the clamp layout).
    let mut x = embedded.index_select(&idx, 0)?.contiguous()?;
    let mut t = x.zeros_like()?;
    for layer in 0..layers {
        check()?;
        let lc = clamp_values(model, acts, layer, s, |_| Scaled::All)?;
        let mut grads = Vec::with_capacity(at.len(b));
        let mut lower = vec![0f64; total];
        for (start, len) in chunks(total, chunk_at(s, layers, layer)) {
            let part = suffix_gradients(
                model,
                &x.narrow(0, start, len)?,
                layer,
                s.rows,
                &lc.narrow(0, start, len)?,
                &row_targets[start..start + len],
                layer > 0,
            )?;
            grads.extend(
                part.clamp
                    .to_dtype(DType::F64)?
                    .flatten_all()?
                    .to_vec1::<f64>()?,
            );
            if let Some(dx) = &part.dx {
                let dots = row_dots(dx, &t.narrow(0, start, len)?)?;
                lower[start..start + len].copy_from_slice(&dots);
            }
        }
        for i in 0..b {
            let acts_i = &acts.layers[i];
            let prev_a: f64 = (0..layer)
                .flat_map(|l| entering(&sets[i][l], s.compat).iter().map(move |&p| (l, p)))
                .map(|(l, p)| acts_i[l][at.unit(0, p)])
                .sum();
            let prev_g: f64 = (0..m).map(|k| lower[at.row(i, k)]).sum();
            let score: Vec<f64> = (0..mlp)
                .map(|j| {
                    let g: f64 = (0..m).map(|k| grads[at.index(i, k, 0, j)]).sum();
                    (g + prev_g) / m as f64 * (acts_i[layer][at.unit(0, j)] + prev_a)
                })
                .collect();
            sets[i].push(top_k(&score, s.top_k));
            scores[i].push(score);
        }
        if layer + 1 == layers {
            break;
        }
        let pc = clamp_values(model, acts, layer, s, |i| Scaled::Units(&sets[i][layer]))?;
        let seeds: Vec<&[usize]> = (0..total)
            .map(|r| entering(&sets[at.image_of(r)][layer], s.compat))
            .collect();
        let (mut xs, mut ts) = (Vec::new(), Vec::new());
        // One block's saved state per row: the last step's chunk size.
        for (start, len) in chunks(total, chunk_at(s, layers, layers - 1)) {
            let (nx, nt) = extend(
                model,
                &x.narrow(0, start, len)?,
                &t.narrow(0, start, len)?,
                layer,
                s.rows,
                &pc.narrow(0, start, len)?,
                &seeds[start..start + len],
            )?;
            xs.push(nx);
            ts.push(nt);
        }
        x = Tensor::cat(&xs, 0)?;
        t = Tensor::cat(&ts, 0)?;
    }
    Ok(SearchResult { sets, scores })
}
