//! Forward mode through one block (the prefix search's tangent), written once for any
//! [`Backend`]: the derivative of the block's output along an input direction, with the edited
//! rows of the hidden units held fixed (a clamp is a constant), from the saved state. The
//! linears, LayerNorms and GELU differentiate as in the backward, in the other direction.
use super::backend::{Backend, Grid};
use super::forward::{EditKind, State};
use crate::model::block::Block;
use candle_core::{Result, Tensor};

impl<B: Backend> State<B> {
    /// The tangent (R, N, D) of the block's output for the input tangent `dx` (R, N, D), with the
    /// edited hidden-unit rows held fixed (see [`add_fc2_columns`] for the derivative along the
    /// clamp's own entries).
    pub(crate) fn tangent(&self, dx: &Tensor) -> Result<Tensor> {
        let (b, dm) = (&self.block, self.dims);
        if dm.keep != dm.n || dx.dims3()? != (dm.r, dm.n, dm.d) {
            candle_core::bail!("fused block tangent: needs every token row")
        }
        let (all_d, all_m) = (dm.all(dm.d), dm.all(dm.m));
        let dx = B::load(dx)?;
        let dln1 = B::layer_norm_jvp(&b.ln_att, &self.x, &dx, all_d)?;
        let dqkv = B::linear(&dln1, all_d, &b.qkv, false, None)?;
        drop(dln1);
        let d_o = B::attention_jvp(&self.attn, &dqkv, dm)?;
        drop(dqkv);
        let dh = B::linear(&d_o, all_d, &b.proj, false, Some(&dx))?;
        drop(d_o);
        let dln2 = B::layer_norm_jvp(&b.ln_ffn, &self.h, &dh, all_d)?;
        let da = B::linear(&dln2, all_d, &b.fc1, false, None)?;
        drop(dln2);
        let mut da = B::mul(da, &self.gelu_grad)?;
        if let Some(mask) = &b.cls_mask {
            da = B::scale_rows(da, all_m, (0, 1), &B::load(mask)?)?;
        }
        if let Some((sel, kind)) = &self.edit {
            let span = sel.span(dm.n, self.prefix);
            match kind {
                EditKind::Clamp(_) => da = B::zero_rows(da, all_m, span)?,
                // A probe adds a constant: its rows move with the block's own units.
                EditKind::Probe(_) => {}
                EditKind::Scale(f) => da = B::scale_rows(da, all_m, span, f)?,
            }
        }
        let dout = B::linear(&da, all_m, &b.fc2, false, Some(&dh))?;
        B::store(dout, (dm.r, dm.n, dm.d).into(), &self.device)
    }
}

/// `t` (R, N, D) plus, on token row `tok` of every image `r`, the columns `seeds[r]` of
/// `block`'s fc2: the derivative of the block's output along those entries of a clamp of that row.
pub(crate) fn add_fc2_columns<B: Backend>(
    block: &Block,
    t: &Tensor,
    tok: usize,
    seeds: &[&[usize]],
) -> Result<Tensor> {
    let (r, n, d) = t.dims3()?;
    let m = block.fc2.weight.dim(1)?;
    if seeds.len() != r || tok >= n || seeds.iter().flat_map(|s| s.iter()).any(|&p| p >= m) {
        candle_core::bail!(
            "fused block tangent: one seed list per row, units below {m}, a token row below {n}"
        )
    }
    let g = Grid { r, n, w: d };
    let out = B::add_columns(B::load(t)?, g, &block.fc2, tok, seeds)?;
    B::store(out, (r, n, d).into(), t.device())
}
