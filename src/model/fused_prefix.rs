//! The passes of the prefix search engine on the fused blocks of `block_ops`, on either backend
//! (CPU slices, or candle tensors on any device) (issue 13). At step T, from the
//! residual stream `x_T` entering block T under the path clamps below T (the *path prefix*, kept
//! per row by the caller): blocks T..L-1 forward with the layer clamp at T, the head, and the
//! backward down to the output of block T (to its input only in the last block and the MAE
//! variant). Block T's saved state then gives, without running the block again, the tangent
//! `J_T t_T` (which also gives the lower-path score) and, once p_T is chosen, the prefix one
//! block on: under the path clamp only the MLP output of the clamped rows differs from the layer
//! clamp's (attention, the residual stream `h` and every other row are the same).
//!
//! The MAE variant's lower-path gradient is per token: its backward goes on down through the
//! saved states of the blocks below T, kept from earlier steps ([`PrefixBlock`]).
//!
//! Nothing here is approximate: the values are the same as a full forward + backward with the
//! same clamps, in a different order of summation (tests/prefix_engine.rs). The attention
//! probabilities are not kept but recomputed where needed (a quarter of the saved state).
use crate::model::block_ops::{add_fc2_columns, forward_saved, mlp_rows, Run, Save, Saved};
use crate::model::gradients::one_hot;
use crate::model::intervene::{replace_rows, Edit, LayerEdit, Rows};
use crate::model::mode::Mode;
use crate::model::real::Real;
use crate::model::vit::Vit;
use crate::model::Pool;
use candle_core::{DType, Result, Shape, Tensor, Var};

/// Whether the prefix passes run for this model: f32 or f64 weights, on any device (the block
/// runs on the slice backend for CPU tensors, the tensor backend elsewhere).
pub fn available(model: &Vit) -> bool {
    matches!(model.dtype(), DType::F32 | DType::F64)
}

/// One block's saved state under its path clamp, kept so that a later backward can run down
/// through it: each step's in the MAE variant, the path's JAS at the end ([`path_gradients`]).
pub struct PrefixBlock(Saved);

/// One chunk of R rows at step `layer`.
pub struct StepRequest<'a> {
    /// `x_T` (R, N, D): the rows entering block `layer`.
    pub x: &'a Tensor,
    /// The block T whose step this is.
    pub layer: usize,
    /// Which token rows the clamps replace.
    pub rows: Rows,
    /// The clamp of block `layer` ((R, M), or (R, P, M) for patch rows).
    pub clamp: &'a Tensor,
    /// The class scored on each row.
    pub targets: &'a [usize],
    /// `t_T` (R, N, D), given from step 1 on: `<dF/dx_T, t_T>` per row and `J_T t_T` come back.
    pub tangent: Option<&'a Tensor>,
    /// The saved states of blocks 0..layer of these rows: the backward goes on through them.
    pub below: &'a [PrefixBlock],
    /// Per block below (`[l][row]`): the units whose clamp gradients [`StepResult::below`] sums.
    pub below_units: &'a [Vec<&'a [usize]>],
    /// Keep what extending the prefix past block `layer` needs ([`StepResult::next`]).
    pub extend: bool,
    /// With `extend`, also keep block `layer`'s saved state ([`Next::extend`] returns it).
    pub keep_block: bool,
}

/// What one step returns for a chunk.
pub struct StepResult {
    /// F per row.
    pub probs: Vec<f64>,
    /// dF/d(clamp of block T), the clamp's shape.
    pub clamp: Tensor,
    /// `<dF/dx_T, t_T>` per row, when a tangent was given.
    pub lower: Option<Vec<f64>>,
    /// Per row and clamped token (R x tokens, row-major), the sum over the blocks below and
    /// their `below_units` of dF/d(clamp), when blocks below were given.
    pub below: Option<Vec<f64>>,
    /// What extends the prefix past block T (when `extend` was asked).
    pub next: Option<Next>,
}

/// What extends a chunk's prefix past block T once the path clamp there is known.
pub struct Next {
    /// Block T's output under the layer clamp (R, N, D).
    out: Tensor,
    /// Block T's residual stream `h` on the clamped rows (R, len, D).
    h_rows: Tensor,
    span: (usize, usize),
    /// `J_T t_T` (R, N, D).
    tangent: Option<Tensor>,
    block: Option<PrefixBlock>,
}

fn run_of(model: &Vit, layer: usize, edit: Option<&LayerEdit>) -> Run {
    let c = &model.cfg;
    Run {
        heads: c.heads,
        gelu: c.gelu,
        prefix: c.prefix_tokens,
        // As in Vit::forward_tokens: a CLS-pooled head reads only the last block's CLS row.
        cls_only: layer + 1 == c.layers
            && c.pool == Pool::Cls
            && edit.is_none_or(|e| e.rows == Rows::Cls),
    }
}

fn forward_one(
    model: &Vit,
    layer: usize,
    x: Tensor,
    edit: Option<&LayerEdit>,
    want_dx: bool,
) -> Result<(Tensor, Saved)> {
    let block = &model.blocks[layer];
    let run = run_of(model, layer, edit);
    let save = Save {
        save: true,
        want_dx,
        keep_probs: false,
    };
    let out = match x.dtype() {
        DType::F32 | DType::F64 => forward_saved(block, x, edit, run, save)?,
        d => candle_core::bail!("prefix engine: unsupported dtype {d:?}"),
    };
    match out {
        (y, _, Some(saved)) => Ok((y, saved)),
        // An empty chunk saves nothing.
        (y, _, None) => candle_core::bail!("prefix engine: empty chunk ({:?})", y.shape()),
    }
}

/// F per row for `targets` from the last block's output `x` (R, N or 1, D), and dF/dx.
fn head_gradient(model: &Vit, x: &Tensor, targets: &[usize]) -> Result<(Vec<f64>, Tensor)> {
    let top = Var::from_tensor(x)?;
    let scores = model
        .objective
        .scores(&model.classify(top.as_tensor(), Mode::Frozen)?)?;
    let picked = (scores * one_hot(targets, model.score_width(), model)?)?.sum(1)?;
    let store = picked.sum_all()?.backward()?;
    let g = match store.get(top.as_tensor()) {
        Some(g) => g.clone(),
        None => top.as_tensor().zeros_like()?,
    };
    Ok((to_f64(&picked)?, g))
}

/// F per row and `<dF/dx_L, t_L>` for rows `x` (R, N, D) entering block 0 with `clamps[l]` on
/// the one-token `rows` of every block l, where t_L is the tangent of the last block's output
/// along the clamp entries `seeds[l][r]` of every block: per row, the sum over the blocks and
/// seeds of dF/d(clamp), by one forward + tangent pass (no backward through the blocks).
pub fn path_tangent_dots(
    model: &Vit,
    x: &Tensor,
    rows: Rows,
    clamps: &[Tensor],
    seeds: &[Vec<&[usize]>],
    targets: &[usize],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let layers = model.cfg.layers;
    if !rows.single() || clamps.len() != layers || seeds.len() != layers {
        candle_core::bail!("prefix engine: a tangent pass needs one one-token clamp per block")
    }
    let (mut x, mut t) = (x.detach().contiguous()?, None::<Tensor>);
    for (l, (clamp, seeds)) in clamps.iter().zip(seeds).enumerate() {
        let edit = LayerEdit {
            rows,
            edit: Edit::Clamp(clamp.clone()),
        };
        // Every row of the last block too: the tangent needs the keys and values' tangents.
        let run = Run {
            cls_only: false,
            ..run_of(model, l, Some(&edit))
        };
        let save = Save {
            save: true,
            want_dx: false,
            keep_probs: true,
        };
        let block = &model.blocks[l];
        let (y, _, saved) = match x.dtype() {
            DType::F32 | DType::F64 => forward_saved(block, x, Some(&edit), run, save)?,
            d => candle_core::bail!("prefix engine: unsupported dtype {d:?}"),
        };
        let Some(saved) = saved else {
            candle_core::bail!("prefix engine: empty chunk")
        };
        let jt = match &t {
            Some(t) => saved.tangent(t)?,
            None => y.zeros_like()?,
        };
        let tok = rows.span(y.dim(1)?, model.cfg.prefix_tokens).0;
        t = Some(add_fc2_columns(block, &jt, tok, seeds)?);
        x = y;
    }
    let (probs, g) = head_gradient(model, &x, targets)?;
    let Some(t) = t else {
        candle_core::bail!("prefix engine: a model without blocks")
    };
    Ok((probs, row_dots(&g, &t)?))
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()
}

/// One search step for a chunk of rows: blocks T..L-1 forward from `x_T` with the clamp at T
/// and no edit above it, F per row, and the backward to the clamp, to `x_T` (from step 1 on)
/// and, with blocks below, on down through them. Blocks below T are never run forward.
///
/// Below the last block and with no blocks below to go on through, the backward stops at block
/// T's output, `g = dF/dx_{T+1}`: the clamped rows enter the output as fc2(clamp), so dF/dc_T is
/// those rows of `g` times fc2's weight, and `<dF/dx_T, t_T> = <g, J_T t_T>` with `J_T t_T`
/// the tangent that extends the prefix anyway. Block T's backward is never run.
pub fn step(model: &Vit, q: &StepRequest) -> Result<StepResult> {
    let (layers, layer) = (model.cfg.layers, q.layer);
    if !q.below.is_empty() && q.below.len() != layer {
        candle_core::bail!(
            "prefix engine: {} saved blocks below block {layer}",
            q.below.len()
        )
    }
    let span = q.rows.span(q.x.dim(1)?, model.cfg.prefix_tokens);
    let edit = LayerEdit {
        rows: q.rows,
        edit: Edit::Clamp(q.clamp.clone()),
    };
    let mut saved = Vec::with_capacity(layers - layer);
    let mut h = q.x.detach().contiguous()?;
    let mut out_t = None;
    for l in layer..layers {
        let e = (l == layer).then_some(&edit);
        // Block 0 never passes a gradient on; block T does from step 1 on (to x_T, and for a
        // kept block to the blocks below it at later steps).
        let (y, s) = forward_one(model, l, h, e, l > 0)?;
        if l == layer && q.extend {
            out_t = Some(y.clone());
        }
        saved.push(s);
        h = y;
    }
    let (probs, mut g) = head_gradient(model, &h, q.targets)?;
    drop(h);
    let Some(mut block_t) = (!saved.is_empty()).then(|| saved.remove(0)) else {
        candle_core::bail!("prefix engine: block {layer} is past the model's {layers} blocks")
    };
    // Down to the output of block T, freeing each block's state as soon as it has passed.
    while let Some(s) = saved.pop() {
        match s.grads(&g)?.0 {
            Some(dx) => g = dx,
            None => candle_core::bail!("prefix engine: no gradient below block {layer}"),
        }
    }
    // The last block may keep the CLS row only, which its tangent cannot run on: its
    // (CLS-only) backward runs as before.
    let skip = layer + 1 < layers && q.below.is_empty();
    let (clamp, lower, below, jt) = if skip {
        let clamp = clamp_gradient(model, layer, &g, span, q.clamp.shape())?;
        let jt = q.tangent.map(|t| block_t.tangent(t)).transpose()?;
        let lower = jt.as_ref().map(|jt| row_dots(&g, jt)).transpose()?;
        (clamp, lower, None, jt)
    } else {
        let (dx, d_clamp) = block_t.grads(&g)?;
        let Some(clamp) = d_clamp else {
            candle_core::bail!("prefix engine: no gradient reached the clamp")
        };
        let lower = match (q.tangent, &dx) {
            (Some(t), Some(r)) => Some(row_dots(r, t)?),
            (Some(_), None) => candle_core::bail!("prefix engine: a tangent at block 0"),
            _ => None,
        };
        let below = match (q.below.is_empty(), dx) {
            (true, _) => None,
            (false, Some(dx)) => Some(below_sums(q, dx)?),
            (false, None) => candle_core::bail!("prefix engine: blocks below block 0"),
        };
        (clamp, lower, below, None)
    };
    drop(g);
    let next = match out_t {
        Some(out) => {
            // Past the last block no step needs a tangent (the path's JAS takes the backward).
            let tangent = match jt {
                Some(jt) => Some(jt),
                None if layer + 1 < layers => q.tangent.map(|t| block_t.tangent(t)).transpose()?,
                None => None,
            };
            let h_rows = block_t.residual_rows(span)?;
            block_t.forget_output();
            Some(Next {
                out,
                h_rows,
                span,
                tangent,
                block: q.keep_block.then_some(PrefixBlock(block_t)),
            })
        }
        None => None,
    };
    Ok(StepResult {
        probs,
        clamp,
        lower,
        below,
        next,
    })
}

/// dF/d(clamp of block `layer`) from `g` = dF/d(the block's output) (R, N, D): the clamped
/// token rows `span` of the output are h + fc2(clamp), so it is those rows of `g` times fc2's
/// weight (D, M), in the clamp's `shape`.
fn clamp_gradient(
    model: &Vit,
    layer: usize,
    g: &Tensor,
    (s, len): (usize, usize),
    shape: &Shape,
) -> Result<Tensor> {
    let (r, _, d) = g.dims3()?;
    let w = model.blocks[layer].fc2.weight.detach().contiguous()?;
    g.narrow(1, s, len)?
        .contiguous()?
        .reshape((r * len, d))?
        .matmul(&w)?
        .reshape(shape)
}

/// The backward from `g` = dF/d(output of `blocks[last]`) down through the kept `blocks`: for
/// each block l (top down) `visit(l, tokens, picked)`, where `picked[(row * tokens + tok) *
/// units[l][row].len() + u]` is dF/d(clamp) at token `tok` and unit `units[l][row][u]`.
fn backward_through(
    blocks: &[PrefixBlock],
    units: &[Vec<&[usize]>],
    mut g: Tensor,
    mut visit: impl FnMut(usize, usize, Vec<f64>),
) -> Result<()> {
    let r = g.dim(0)?;
    for l in (0..blocks.len()).rev() {
        let (dx, leaf) = blocks[l].0.grads(&g)?;
        let Some(leaf) = leaf else {
            candle_core::bail!("prefix engine: no gradient reached the clamp of block {l}")
        };
        let vals = to_f64(&leaf)?;
        let per_row = vals.len() / r.max(1);
        let m = leaf.dims().last().copied().unwrap_or(1).max(1);
        let tokens = per_row / m;
        let us = units.get(l).map(Vec::as_slice).unwrap_or(&[]);
        let mut picked = Vec::new();
        for (row, us) in us.iter().enumerate().take(r) {
            for tok in 0..tokens {
                let at = row * per_row + tok * m;
                picked.extend(us.iter().map(|&p| vals[at + p]));
            }
        }
        visit(l, tokens, picked);
        match dx {
            Some(dx) => g = dx,
            None => break,
        }
    }
    Ok(())
}

/// The backward from dF/dx_T down through the kept blocks below T: per row and clamped token,
/// the sum over those blocks of dF/d(clamp) at their `below_units`.
fn below_sums(q: &StepRequest, g: Tensor) -> Result<Vec<f64>> {
    let r = q.x.dim(0)?;
    let mut sums: Vec<f64> = Vec::new();
    backward_through(
        &q.below[..q.layer],
        q.below_units,
        g,
        |l, tokens, picked| {
            sums.resize(r * tokens, 0.0);
            let mut at = 0;
            for (row, us) in q.below_units[l].iter().enumerate().take(r) {
                for tok in 0..tokens {
                    sums[row * tokens + tok] += picked[at..at + us.len()].iter().sum::<f64>();
                    at += us.len();
                }
            }
        },
    )?;
    Ok(sums)
}

/// F per row and the clamp gradients at the path's units, from the finished prefix: `x` is the
/// last block's output (R, N or 1, D) under the path clamps of every block, `blocks` their
/// saved states (every block, kept as the search extended the prefix). Per block l, dF/d(clamp)
/// at token `tok` and unit `units[l][row][u]`, with `n` units per row (the same for every row),
/// is at index `(row * tokens + tok) * n + u`. One backward, no forward: the JAS of the path
/// (SPEC section 5) in both forms.
pub fn path_gradients(
    model: &Vit,
    x: &Tensor,
    targets: &[usize],
    blocks: &[PrefixBlock],
    units: &[Vec<&[usize]>],
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let layers = model.cfg.layers;
    if blocks.len() != layers || units.len() != layers {
        candle_core::bail!(
            "prefix engine: {} saved blocks and {} unit lists for {layers} blocks",
            blocks.len(),
            units.len()
        )
    }
    let (probs, g) = head_gradient(model, x, targets)?;
    let mut per_layer = vec![Vec::new(); layers];
    backward_through(blocks, units, g, |l, _, picked| per_layer[l] = picked)?;
    Ok((probs, per_layer))
}

impl Next {
    /// The chunk's prefix one block on, `x_{T+1}`, with block `layer` (this step's) under
    /// `clamp`; with `seeds`, the tangent `t_{T+1}` = `J_T t_T` plus, on the one clamped row
    /// of each row r, fc2's columns `seeds[r]` (the path neurons it differentiates by); and the
    /// block's saved state if it was kept.
    pub fn extend(
        self,
        model: &Vit,
        layer: usize,
        clamp: &Tensor,
        seeds: Option<&[&[usize]]>,
    ) -> Result<(Tensor, Option<Tensor>, Option<PrefixBlock>)> {
        let block = &model.blocks[layer];
        let (s, len) = self.span;
        let rows = mlp_rows(block, &self.h_rows, clamp)?;
        let x = replace_rows(&self.out, s, len, &rows)?.contiguous()?;
        let t = match (seeds, self.tangent) {
            (None, t) => t,
            (Some(_), _) if len != 1 => {
                candle_core::bail!("prefix engine: a tangent needs a one-token clamp")
            }
            (Some(seeds), Some(t)) => Some(add_fc2_columns(block, &t, s, seeds)?),
            // t_T = 0 (step 0): only the clamp's own entries.
            (Some(seeds), None) => Some(add_fc2_columns(block, &x.zeros_like()?, s, seeds)?),
        };
        Ok((x, t, self.block))
    }
}

/// Sum over each row of `a * b` (both (R, ...)), in f64.
pub fn row_dots(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    fn dots<T: Real>(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
        let r = a.dim(0)?;
        let (a, b) = (
            a.flatten_all()?.to_vec1::<T>()?,
            b.flatten_all()?.to_vec1::<T>()?,
        );
        let w = a.len() / r.max(1);
        Ok((0..r)
            .map(|i| {
                let (x, y) = (&a[i * w..(i + 1) * w], &b[i * w..(i + 1) * w]);
                x.iter().zip(y).map(|(p, q)| p.f64() * q.f64()).sum()
            })
            .collect())
    }
    match a.dtype() {
        DType::F32 => dots::<f32>(a, b),
        DType::F64 => dots::<f64>(a, b),
        d => candle_core::bail!("prefix engine: unsupported dtype {d:?}"),
    }
}
