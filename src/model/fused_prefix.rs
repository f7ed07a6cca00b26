//! The passes of the prefix search engine on the CPU slice blocks (issue 13): from the residual
//! stream `x_T` entering block T (the *path prefix*, kept by the caller per row), run blocks
//! T..L-1 with a clamp at T and the head forward, then backward down to the input of block T
//! only; and extend a prefix (and its tangent) by one block under a clamp.
//!
//! Nothing here is approximate: the values are the same as a full forward + backward with the
//! same clamps, in a different order of summation (tests/prefix_engine.rs).
use crate::model::dispatch::{block_kernels, Kernels};
use crate::model::fused::{forward_saved, Run, Saved};
use crate::model::gradients::one_hot;
use crate::model::intervene::{Edit, LayerEdit, Rows};
use crate::model::mode::Mode;
use crate::model::real::Real;
use crate::model::vit::Vit;
use crate::model::Pool;
use candle_core::{DType, Result, Tensor, Var};

/// Whether the prefix passes run for this model (CPU tensors with the slice blocks).
pub fn available(model: &Vit) -> bool {
    block_kernels(&model.prefix) == Kernels::CpuSlices
}

/// What [`suffix_gradients`] returns for a chunk of R rows.
pub struct SuffixGrads {
    /// F per row.
    pub probs: Vec<f64>,
    /// dF/dx_T (R, N, D), the gradient at the input of block T (None when not asked for).
    pub dx: Option<Tensor>,
    /// dF/d(clamp at T), the clamp's shape.
    pub clamp: Tensor,
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
    let out = match x.dtype() {
        DType::F32 => forward_saved::<f32>(block, x, edit, run, true, want_dx)?,
        DType::F64 => forward_saved::<f64>(block, x, edit, run, true, want_dx)?,
        d => candle_core::bail!("prefix engine: unsupported dtype {d:?}"),
    };
    match out {
        (y, _, Some(saved)) => Ok((y, saved)),
        // An empty chunk saves nothing.
        (y, _, None) => candle_core::bail!("prefix engine: empty chunk ({:?})", y.shape()),
    }
}

/// Rows `x` (R, N, D) entering block `layer`, with `clamp` ((R, M), or (R, P, M) for patch
/// rows) replacing the hidden units `rows` of that block and no edit above it: F per row for
/// `targets`, dF/d(clamp) and, with `want_dx`, dF/dx. Blocks below `layer` are not touched.
pub fn suffix_gradients(
    model: &Vit,
    x: &Tensor,
    layer: usize,
    rows: Rows,
    clamp: &Tensor,
    targets: &[usize],
    want_dx: bool,
) -> Result<SuffixGrads> {
    let edit = LayerEdit {
        rows,
        edit: Edit::Clamp(clamp.clone()),
    };
    let mut saved = Vec::with_capacity(model.cfg.layers - layer);
    let mut h = x.detach().contiguous()?;
    for l in layer..model.cfg.layers {
        let e = (l == layer).then_some(&edit);
        let (y, s) = forward_one(model, l, h, e, l > layer || want_dx)?;
        saved.push(s);
        h = y;
    }
    let top = Var::from_tensor(&h)?;
    let scores = model
        .objective
        .scores(&model.classify(top.as_tensor(), Mode::Frozen)?)?;
    let picked = (scores * one_hot(targets, model.score_width(), model)?)?.sum(1)?;
    let store = picked.sum_all()?.backward()?;
    let mut g = match store.get(top.as_tensor()) {
        Some(g) => g.clone(),
        None => top.as_tensor().zeros_like()?,
    };
    let mut d_clamp = None;
    while let Some(s) = saved.pop() {
        let (dx, dleaf) = s.grads(&g)?;
        drop(s);
        if saved.is_empty() {
            d_clamp = dleaf;
        }
        match dx {
            Some(dx) => g = dx,
            None => break,
        }
    }
    let Some(clamp_grad) = d_clamp else {
        candle_core::bail!("prefix engine: no gradient reached the clamp")
    };
    Ok(SuffixGrads {
        probs: picked.to_dtype(DType::F64)?.to_vec1()?,
        dx: want_dx.then_some(g),
        clamp: clamp_grad,
    })
}

/// The prefix `x` (R, N, D) entering block `layer` and its tangent `t`, one block on: block
/// `layer` runs with `clamp` (R, M) on the one-token `rows`, and the tangent picks up fc2's
/// columns `seeds[r]` on that row (the path neurons whose clamp entries it differentiates by).
pub fn extend(
    model: &Vit,
    x: &Tensor,
    t: &Tensor,
    layer: usize,
    rows: Rows,
    clamp: &Tensor,
    seeds: &[&[usize]],
) -> Result<(Tensor, Tensor)> {
    if !rows.single() || layer + 1 >= model.cfg.layers {
        candle_core::bail!(
            "prefix engine: a prefix extends by a one-token clamp below the last block"
        )
    }
    let edit = LayerEdit {
        rows,
        edit: Edit::Clamp(clamp.clone()),
    };
    let (y, saved) = forward_one(model, layer, x.detach().contiguous()?, Some(&edit), false)?;
    let ty = saved.tangent(t, seeds)?;
    Ok((y, ty))
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
