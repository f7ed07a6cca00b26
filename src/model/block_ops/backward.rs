//! One block's backward, written once for any [`Backend`]: dL/dx and dL/d(edit leaf) from the
//! saved state, never weight gradients (~10 GEMMs and a few element-wise passes).
use super::backend::Backend;
use super::forward::{EditKind, State};
use candle_core::{Result, Tensor};

impl<B: Backend> State<B> {
    /// (dL/dx, dL/d(leaf)) for the output gradient `g` (R, keep, D).
    pub(crate) fn grads(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (s, b, dm) = (self, &self.block, self.dims);
        let (all_d, kept_d, kept_m) = (dm.all(dm.d), dm.kept(dm.d), dm.kept(dm.m));
        let g = B::load(g)?;
        let mut da = B::linear_grad(&g, kept_d, &b.fc2)?;
        let mut d_leaf = None;
        if let Some((sel, kind)) = &s.edit {
            let span = sel.span(dm.n, s.prefix);
            match kind {
                EditKind::Clamp(shape) => {
                    let rows = B::take_rows(&da, kept_m, span)?;
                    d_leaf = Some(B::store(rows, shape.clone(), &s.device)?);
                    da = B::zero_rows(da, kept_m, span)?;
                }
                EditKind::Probe(shape) => {
                    let rows = B::take_rows(&da, kept_m, span)?;
                    d_leaf = Some(B::store(rows, shape.clone(), &s.device)?);
                }
                EditKind::Scale(f) => da = B::scale_rows(da, kept_m, span, f)?,
            }
        }
        if !s.want_dx {
            return Ok((None, d_leaf));
        }
        if let Some(mask) = &b.cls_mask {
            da = B::scale_rows(da, kept_m, (0, 1), &B::load(mask)?)?;
        }
        let dz = B::mul(da, &s.gelu_grad)?;
        let dln2 = B::linear_grad(&dz, kept_m, &b.fc1)?;
        drop(dz);
        let dh = B::layer_norm_grad(&b.ln_ffn, &s.h, &dln2, kept_d)?;
        drop(dln2);
        let dh = B::add(dh, &g)?;
        drop(g);
        let d_o = B::linear_grad(&dh, kept_d, &b.proj)?;
        let dqkv = B::attention_grad(&s.attn, &d_o, dm)?;
        drop(d_o);
        let dln1 = B::linear_grad(&dqkv, all_d.with_w(3 * dm.d), &b.qkv)?;
        drop(dqkv);
        let dx = B::layer_norm_grad(&b.ln_att, &s.x, &dln1, all_d)?;
        drop(dln1);
        // The residual path: the kept rows' gradient goes straight to x.
        let dx = B::add_rows(dx, all_d, (0, dm.keep), &dh)?;
        let dx = B::store(dx, (dm.r, dm.n, dm.d).into(), &s.device)?;
        Ok((Some(dx), d_leaf))
    }
}
