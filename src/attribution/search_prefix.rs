//! The prefix search engine (issue 13): the layer-progressive search of SPEC section 4 with the
//! same paths and scores as the one-backward-per-step engine (`search.rs`, its oracle), in
//! L(L+1)/2 block forwards + L(L-1)/2 block backwards + L-2 tangent blocks per row (and the last
//! step's backward through the last block, CLS-only in a CLS-pooled model) instead of 2L^2
//! forwards and backwards.
//!
//! - Every clamp below step T is the same at all later steps, so the residual stream x_T
//!   entering block T under the path clamps (the *prefix*) is kept per row and extended by one
//!   block once p_T is chosen, from block T's pass at step T (`fused_prefix`).
//! - The score needs, besides the whole-row gradient at T, only `S_k = sum_{l<T} dF/dc_l[p_l]` per
//!   row. With the tangent `t_T = sum_{l<T} dx_T/dc_l[p_l]` (forward mode along the path
//!   neurons, every clamp a constant), S_k = <dF/dx_T, t_T> = <dF/dx_{T+1}, J_T t_T>, and
//!   t_{T+1} = J_T t_T + fc2's column p_T on the neuron row; dF/dc_T is dF/dx_{T+1} on the
//!   neuron row times fc2's weight. So the backward stops at block T's output: block T runs
//!   forward and tangent only.
//!
//! The MAE variant's score is per patch token (a vector of lower-path gradients per row, which
//! one tangent cannot carry): it keeps the prefix reuse (blocks T..L-1 forward) and the backward
//! runs on down through the saved states of the blocks below T, kept from earlier steps. Those
//! are all L blocks' states for every row at once, so images search in groups whose rows fit
//! one chunk; where one image's m rows do not, the reference engine runs.
//!
//! The path's JAS (both forms, SPEC section 5) comes from the search too when asked
//! (`discover`): every block's saved state under its path clamp is kept as the prefix grows
//! (the clamp is a constant, so the state from block T's step serves), the last step extends
//! the prefix through the last block, and one backward from F down through the kept states
//! gives every layer's clamp gradient at the path: L block backwards per row instead of the L
//! forwards + L backwards of a separate clamped pass. Kept states need all L blocks of a
//! group's rows at once, so the groups are those of the MAE variant.
use super::clamped::{clamp_values, entering, Scaled};
use super::jas::{combine, Jas};
use super::{top_k, Activations, AttributionSettings, Check, NeuronSets, SearchResult};
use crate::model::fused_prefix::{self, path_gradients, step, PrefixBlock, StepRequest};
use crate::model::gradients::{bytes_per_row, prefix_step_bytes_per_row};
use crate::model::{ClampLayout, Mode, Vit};
use candle_core::{DType, Result, Tensor};

/// Whether the prefix engine runs this search (else the reference engine does, same results):
/// f32 or f64 weights (any device), and for the MAE variant one image's rows within one chunk.
pub fn prefix_applies(model: &Vit, s: &AttributionSettings) -> bool {
    fused_prefix::available(model) && (s.rows.single() || s.chunk_rows >= s.steps)
}

/// Rows per chunk at step `layer`: the memory of the reference engine's chunk (`chunk_rows`
/// rows of all L blocks' saved state with attention probabilities) holds more rows of the
/// prefix step's (blocks `layer`..L-1, no probabilities).
fn chunk_at(model: &Vit, s: &AttributionSettings, layer: usize) -> usize {
    let budget = s.chunk_rows.max(1).saturating_mul(bytes_per_row(model));
    (budget / prefix_step_bytes_per_row(model, layer).max(1)).max(1)
}

/// Chunks (start, len) of `total` rows.
fn chunks(total: usize, size: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..total)
        .step_by(size.max(1))
        .map(move |a| (a, size.max(1).min(total - a)))
}

/// Whether the prefix engine can also give the JAS of the paths it finds
/// ([`search_with_jas`](super::search::search_with_jas)): it keeps every block's saved state of
/// an image's m rows, so they must fit a chunk.
pub fn prefix_gives_jas(model: &Vit, s: &AttributionSettings) -> bool {
    prefix_applies(model, s) && s.chunk_rows >= s.steps
}

/// The search by the prefix engine; only where it applies ([`prefix_applies`]): the dispatch in
/// `search.rs` runs the reference engine otherwise. With `clean` (F of every image on its clean
/// pass) and where [`prefix_gives_jas`], also the JAS of the found sets, as
/// `joint_attribution` gives it, by one backward through the block states the search kept
/// under the path clamps (no forward).
pub(crate) fn prefix_search(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
    clean: Option<&[f64]>,
    check: Check,
) -> Result<(SearchResult, Option<Vec<Jas>>)> {
    let clean = clean.filter(|_| prefix_gives_jas(model, s));
    // Images search in groups, so that what lives through all steps stays within the memory
    // limit: where block states are kept (patch rows, or the path's JAS) every block's saved
    // state of the group's rows (one chunk); else the group's prefixes and tangents, about
    // 6 (N, D) per row, within half the chunk budget of L blocks' state (each ~12 (N, D)) for
    // L chunks' rows.
    let b = targets.len();
    let group_rows = if s.rows.single() && clean.is_none() {
        s.chunk_rows.saturating_mul(model.cfg.layers)
    } else {
        s.chunk_rows
    };
    let per = (group_rows / s.steps.max(1)).max(1);
    let mut out = SearchResult {
        sets: Vec::with_capacity(b),
        scores: Vec::with_capacity(b),
    };
    let mut jas = clean.map(|_| Vec::with_capacity(b));
    for start in (0..b).step_by(per) {
        let len = per.min(b - start);
        let group = Activations {
            tokens: acts.tokens,
            mlp: acts.mlp,
            layers: acts.layers[start..start + len].to_vec(),
        };
        let (part, part_jas) = search_group(
            model,
            &images.narrow(0, start, len)?,
            &targets[start..start + len],
            &group,
            s,
            clean.map(|c| &c[start..start + len]),
            check,
        )?;
        out.sets.extend(part.sets);
        out.scores.extend(part.scores);
        if let (Some(all), Some(part)) = (jas.as_mut(), part_jas) {
            all.extend(part);
        }
    }
    Ok((out, jas))
}

/// The search of a group of images; where block states are kept, all of them in one chunk.
#[allow(clippy::too_many_arguments)]
fn search_group(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    s: &AttributionSettings,
    clean: Option<&[f64]>,
    check: Check,
) -> Result<(SearchResult, Option<Vec<Jas>>)> {
    let (b, layers, m) = (targets.len(), model.cfg.layers, s.steps);
    let (mlp, tokens, at) = (acts.mlp, acts.tokens, acts.clamp_layout(m));
    let mut sets: Vec<NeuronSets> = vec![Vec::with_capacity(layers); b];
    let mut scores: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(layers); b];
    let total = at.rows(b);
    if b == 0 {
        return Ok((SearchResult { sets, scores }, clean.map(|_| Vec::new())));
    }
    // Patch rows keep every block's saved state below the step for each step's backward (one
    // chunk of all rows); the path's JAS keeps them for one backward at the end.
    let mae = !s.rows.single();
    let keep_blocks = mae || clean.is_some();
    let image_of_row: Vec<u32> = (0..total).map(|r| at.image_of(r) as u32).collect();
    let row_targets: Vec<usize> = (0..total).map(|r| targets[at.image_of(r)]).collect();
    let idx = Tensor::new(image_of_row, model.device())?;
    let embedded = model.embed(images, Mode::Frozen)?;
    // The prefix x_T, its tangent t_T (none at step 0, where it is zero) and, with patch rows,
    // the saved states of blocks 0..T; every row, image-major as the clamp layout.
    let mut x = embedded.index_select(&idx, 0)?.contiguous()?;
    let mut t: Option<Tensor> = None;
    let mut below: Vec<PrefixBlock> = Vec::new();
    for layer in 0..layers {
        check()?;
        let last = layer + 1 == layers;
        let lc = clamp_values(model, acts, layer, s, |_| Scaled::All)?;
        let below_units: Vec<Vec<&[usize]>> = if mae {
            (0..layer)
                .map(|l| row_units(&sets, &at, total, l, s))
                .collect()
        } else {
            Vec::new()
        };
        let size = if keep_blocks {
            total
        } else {
            chunk_at(model, s, layer)
        };
        let mut grads = Vec::with_capacity(at.len(b));
        // Per row and token: the gradient summed over the earlier layers' entering neurons.
        let mut lower = vec![0f64; total * tokens];
        let mut nexts = Vec::new();
        for (start, len) in chunks(total, size) {
            let tn = t.as_ref().map(|t| t.narrow(0, start, len)).transpose()?;
            let units: Vec<Vec<&[usize]>> = below_units
                .iter()
                .map(|u| u[start..start + len].to_vec())
                .collect();
            let part = step(
                model,
                &StepRequest {
                    x: &x.narrow(0, start, len)?,
                    layer,
                    rows: s.rows,
                    clamp: &lc.narrow(0, start, len)?,
                    targets: &row_targets[start..start + len],
                    tangent: tn.as_ref(),
                    below: if mae { &below } else { &[] },
                    below_units: &units,
                    extend: !last || clean.is_some(),
                    keep_block: keep_blocks,
                },
            )?;
            grads.extend(
                part.clamp
                    .to_dtype(DType::F64)?
                    .flatten_all()?
                    .to_vec1::<f64>()?,
            );
            if let Some(v) = part.lower.or(part.below) {
                lower[start * tokens..(start + len) * tokens].copy_from_slice(&v);
            }
            nexts.extend(part.next);
        }
        for i in 0..b {
            let acts_i = &acts.layers[i];
            let mut score = vec![0f64; mlp];
            for tok in 0..tokens {
                let prev_a: f64 = (0..layer)
                    .flat_map(|l| entering(&sets[i][l], s.compat).iter().map(move |&p| (l, p)))
                    .map(|(l, p)| acts_i[l][at.unit(tok, p)])
                    .sum();
                let prev_g: f64 = (0..m).map(|k| lower[at.row(i, k) * tokens + tok]).sum();
                for (j, sc) in score.iter_mut().enumerate() {
                    let g: f64 = (0..m).map(|k| grads[at.index(i, k, tok, j)]).sum();
                    *sc += (g + prev_g) / m as f64 * (acts_i[layer][at.unit(tok, j)] + prev_a);
                }
            }
            sets[i].push(top_k(&score, s.top_k));
            scores[i].push(score);
        }
        if last && clean.is_none() {
            break;
        }
        let pc = clamp_values(model, acts, layer, s, |i| Scaled::Units(&sets[i][layer]))?;
        let seeds = row_units(&sets, &at, total, layer, s);
        let (mut xs, mut ts) = (Vec::new(), Vec::new());
        for ((start, len), next) in chunks(total, size).zip(nexts) {
            let (nx, nt, block) = next.extend(
                model,
                layer,
                &pc.narrow(0, start, len)?,
                (!mae && !last).then(|| &seeds[start..start + len]),
            )?;
            xs.push(nx);
            ts.extend(nt);
            below.extend(block);
        }
        x = Tensor::cat(&xs, 0)?;
        t = if ts.is_empty() {
            None
        } else {
            Some(Tensor::cat(&ts, 0)?)
        };
    }
    let jas = match clean {
        // x is now the last block's output under every path clamp.
        Some(clean) => Some(path_jas(
            model,
            &x,
            &row_targets,
            &below,
            acts,
            &sets,
            clean,
            s,
        )?),
        None => None,
    };
    Ok((SearchResult { sets, scores }, jas))
}

/// Per row of the clamp layout, the units of its image's set at `layer` that enter the sums.
fn row_units<'a>(
    sets: &'a [NeuronSets],
    at: &ClampLayout,
    total: usize,
    layer: usize,
    s: &AttributionSettings,
) -> Vec<&'a [usize]> {
    (0..total)
        .map(|r| entering(&sets[at.image_of(r)][layer], s.compat))
        .collect()
}

/// The JAS of each image's `sets` from the finished prefix `x` and the saved states of every
/// block under the path clamps (`fused_prefix::path_gradients`).
#[allow(clippy::too_many_arguments)]
fn path_jas(
    model: &Vit,
    x: &Tensor,
    row_targets: &[usize],
    blocks: &[PrefixBlock],
    acts: &Activations,
    sets: &[NeuronSets],
    clean: &[f64],
    s: &AttributionSettings,
) -> Result<Vec<Jas>> {
    let (m, tokens, at) = (s.steps, acts.tokens, acts.clamp_layout(s.steps));
    let total = row_targets.len();
    let units: Vec<Vec<&[usize]>> = (0..model.cfg.layers)
        .map(|l| row_units(sets, &at, total, l, s))
        .collect();
    let (probs, picked) = path_gradients(model, x, row_targets, blocks, &units)?;
    // Row k = 0 is alpha = 0: the set zeroed.
    let zeroed: Vec<f64> = (0..sets.len()).map(|i| probs[at.row(i, 0)]).collect();
    Ok(combine(acts, sets, s, clean, &zeroed, |i, l, t, u, _| {
        let n = entering(&sets[i][l], s.compat).len();
        (0..m)
            .map(|k| picked[l][(at.row(i, k) * tokens + t) * n + u])
            .sum()
    }))
}
