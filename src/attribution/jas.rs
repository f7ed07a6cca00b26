//! The Joint Attribution Score of a given neuron set per layer (SPEC section 5).
use super::clamped::{clamp_values, entering, run_clamped, Scaled};
use super::{Activations, AttributionSettings, NeuronSets};
use crate::model::fused_prefix;
use crate::model::{Edit, LayerEdit, Mode, Rows, Vit};
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
    if sets.len() != b || clean_probs.len() != b {
        candle_core::bail!(
            "{} neuron sets and {} clean probabilities for {b} images",
            sets.len(),
            clean_probs.len()
        );
    }
    let at = acts.clamp_layout(m);
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
    Ok(combine(
        acts,
        sets,
        s,
        clean_probs,
        &zeroed,
        |i, l, t, _, p| (0..m).map(|k| grads.grads[l][at.index(i, k, t, p)]).sum(),
    ))
}

/// Both forms of the JAS and the completeness gap of every image from `g_sum(image, layer,
/// token, u, p)`, the sum over the m steps of dF/d(clamp of `layer`) at `token` and unit `p`,
/// the `u`-th of the layer's entering units; `zeroed[image]` is F with the set zeroed (step 0).
pub(crate) fn combine(
    acts: &Activations,
    sets: &[NeuronSets],
    s: &AttributionSettings,
    clean_probs: &[f64],
    zeroed: &[f64],
    g_sum: impl Fn(usize, usize, usize, usize, usize) -> f64,
) -> Vec<Jas> {
    let (tokens, m, at) = (acts.tokens, s.steps, acts.clamp_layout(s.steps));
    let divisor = if s.compat && tokens > 1 {
        REFERENCE_MAE_DIVISOR
    } else {
        1.0
    };
    (0..sets.len())
        .map(|i| {
            let (mut reference, mut additive) = (0.0, 0.0);
            for t in 0..tokens {
                let (mut sum_a, mut sum_g) = (0.0, 0.0);
                for (l, set) in sets[i].iter().enumerate() {
                    for (u, &p) in entering(set, s.compat).iter().enumerate() {
                        let a = acts.layers[i][l][at.unit(t, p)];
                        let g = g_sum(i, l, t, u, p);
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
        .collect()
}

/// The reference-form JAS (as [`joint_attribution`]'s `reference`) of `sets[image]` on one
/// token row (CLS or distillation), by one forward + tangent pass per row instead of a forward
/// and a backward: per row, the sum over the layers' entering neurons of `dF/dc_l[p]` is
/// `<dF/dx_L, t_L>`, with t_L the last block's output tangent along those clamp entries
/// (forward mode, every clamp a constant). One block's state per row at a time, so chunks hold
/// L times the rows of a backward's. The MAE variant's per-token sums need the backward.
pub fn reference_jas_by_tangent(
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    acts: &Activations,
    sets: &[NeuronSets],
    s: &AttributionSettings,
) -> Result<Vec<f64>> {
    let (b, layers, m) = (targets.len(), model.cfg.layers, s.steps);
    super::check_sets(sets, layers, model.cfg.mlp_dim)?;
    if sets.len() != b {
        candle_core::bail!("{} neuron sets for {b} images", sets.len());
    }
    if !s.rows.single() {
        candle_core::bail!("a tangent JAS needs one token row per image (not the MAE variant)");
    }
    if !fused_prefix::available(model) {
        // Other element types: the backward form, which gives the same numbers.
        let zeros = vec![0.0; b];
        let jas = joint_attribution(model, images, targets, acts, sets, &zeros, s)?;
        return Ok(jas.iter().map(|j| j.reference).collect());
    }
    let at = acts.clamp_layout(m);
    let total = at.rows(b);
    let clamps = (0..layers)
        .map(|l| clamp_values(model, acts, l, s, |i| Scaled::Units(&sets[i][l])))
        .collect::<Result<Vec<_>>>()?;
    let image_of_row: Vec<u32> = (0..total).map(|r| at.image_of(r) as u32).collect();
    let row_targets: Vec<usize> = (0..total).map(|r| targets[at.image_of(r)]).collect();
    let x = model
        .embed(images, Mode::Frozen)?
        .index_select(&Tensor::new(image_of_row, model.device())?, 0)?;
    let size = s.chunk_rows.max(1).saturating_mul(layers);
    let mut dots = Vec::with_capacity(total);
    for start in (0..total).step_by(size) {
        let len = size.min(total - start);
        let seeds: Vec<Vec<&[usize]>> = (0..layers)
            .map(|l| {
                (start..start + len)
                    .map(|r| entering(&sets[at.image_of(r)][l], s.compat))
                    .collect()
            })
            .collect();
        let part = clamps
            .iter()
            .map(|c| c.narrow(0, start, len))
            .collect::<Result<Vec<_>>>()?;
        let (_, d) = fused_prefix::path_tangent_dots(
            model,
            &x.narrow(0, start, len)?,
            s.rows,
            &part,
            &seeds,
            &row_targets[start..start + len],
        )?;
        dots.extend(d);
    }
    Ok((0..b)
        .map(|i| {
            let sum_a: f64 = sets[i]
                .iter()
                .enumerate()
                .flat_map(|(l, set)| entering(set, s.compat).iter().map(move |&p| (l, p)))
                .map(|(l, p)| acts.layers[i][l][at.unit(0, p)])
                .sum();
            let sum_g: f64 = (0..m).map(|k| dots[at.row(i, k)]).sum();
            sum_a * sum_g / m as f64
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
