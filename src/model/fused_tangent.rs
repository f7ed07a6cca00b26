//! Forward mode through one fused CPU block (the prefix search's tangent): the derivative of the
//! block's output along an input direction, with the edited rows of the hidden units held fixed
//! (a clamp is a constant), from what the block's forward saved.
//!
//! Per (image, head): S = scale q k^T, P = softmax(S), O = P v, so
//! dS = scale (dq k^T + q dk^T), dP = P * (dS - rowsum(P * dS)), dO = dP v + P dv;
//! the linears, LayerNorms and GELU differentiate as in the backward, in the other direction.
use super::{
    bias, head_probs, host_opt, scale_rows, set_rows, tensor, Dims, EditKind, Host, Saved,
};
use crate::model::block::Block;
use crate::model::kernels::{self, Acc, Dst, Mat};
use crate::model::real::Real;
use crate::model::rows::for_rows;
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

impl Saved {
    /// The tangent (R, N, D) of the block's output for the input tangent `dx` (R, N, D), with the
    /// edited hidden-unit rows held fixed (a clamp is a constant; see [`add_fc2_columns`] for
    /// the derivative along the clamp's own entries).
    pub(crate) fn tangent(&self, dx: &Tensor) -> Result<Tensor> {
        match dx.dtype() {
            DType::F32 => self.tangent_t::<f32>(dx),
            DType::F64 => self.tangent_t::<f64>(dx),
            d => candle_core::bail!("fused block tangent: unsupported dtype {d:?}"),
        }
    }

    fn tangent_t<T: Real>(&self, dx: &Tensor) -> Result<Tensor> {
        let b = &self.block;
        let (r, n, d) = self.x.dims3()?;
        let (m, keep) = (b.fc1.weight.dim(0)?, self.h.dim(1)?);
        if keep != n || dx.dims3()? != (r, n, d) {
            candle_core::bail!("fused block tangent: needs every token row")
        }
        let dm = Dims {
            r,
            n,
            d,
            m,
            heads: self.heads,
            keep,
        };
        let rows = r * n;
        let w_t = |l: &crate::model::ops::Linear| l.weight_t()?.contiguous();
        let dx = dx.contiguous()?;
        let dxh = Host::<T>::new(&dx)?;
        let dxs = dxh.get();
        let dln1 = b.ln_att.op()?.jvp(Host::<T>::new(&self.x)?.get(), dxs);
        let dqkv = kernels::linear(&dln1, rows, Host::new(&w_t(&b.qkv)?)?.get(), None, None);
        drop(dln1);
        let p = host_opt::<T>(&self.p)?;
        let d_o = attention_tangent(Host::<T>::new(&self.qkv)?.get(), bias(&p), &dqkv, dm);
        drop((dqkv, p));
        let dh = kernels::linear(
            &d_o,
            rows,
            Host::new(&w_t(&b.proj)?)?.get(),
            None,
            Some(dxs),
        );
        drop(d_o);
        let dln2 = b.ln_ffn.op()?.jvp(Host::<T>::new(&self.h)?.get(), &dh);
        let mut da = kernels::linear(&dln2, rows, Host::new(&w_t(&b.fc1)?)?.get(), None, None);
        drop(dln2);
        let gg = Host::<T>::new(&self.gelu_grad)?;
        let gg = gg.get();
        for_rows(&mut da, m, |i, row| {
            let gr = &gg[i * m..(i + 1) * m];
            row.iter_mut().zip(gr).for_each(|(v, &k)| *v *= k);
        });
        if let Some(mask) = &b.cls_mask {
            let mask = mask.contiguous()?;
            let f: Vec<T> = Host::<T>::new(&mask)?.get().repeat(r);
            scale_rows(&mut da, dm, (0, 1), &f);
        }
        if let Some((sel, kind)) = &self.edit {
            let span = sel.span(n, self.prefix);
            match kind {
                EditKind::Clamp(_) => {
                    let zero = vec![T::zero(); r * span.1 * m];
                    set_rows(&mut da, dm, span, &zero, |_, b| b);
                }
                // A probe adds a constant: its rows move with the block's own units.
                EditKind::Probe(_) => {}
                EditKind::Scale(f) => scale_rows(&mut da, dm, span, Host::<T>::new(f)?.get()),
            }
        }
        let fc2_t = w_t(&b.fc2)?;
        let dout = kernels::linear(&da, rows, Host::<T>::new(&fc2_t)?.get(), None, Some(&dh));
        tensor(dout, (r, n, d))
    }
}

/// `t` (R, N, D) plus, on token row `tok` of every image `r`, the columns `seeds[r]` of
/// `block`'s fc2: the derivative of the block's output along those entries of a clamp of that row.
pub(crate) fn add_fc2_columns(
    block: &Block,
    t: &Tensor,
    tok: usize,
    seeds: &[&[usize]],
) -> Result<Tensor> {
    fn add<T: Real>(block: &Block, t: &Tensor, tok: usize, seeds: &[&[usize]]) -> Result<Tensor> {
        let (r, n, d) = t.dims3()?;
        if seeds.len() != r || tok >= n {
            candle_core::bail!("fused block tangent: one seed list per row, a token row below {n}")
        }
        let fc2_t = block.fc2.weight_t()?.contiguous()?;
        let fc2_t = Host::<T>::new(&fc2_t)?;
        let fc2_t = fc2_t.get();
        let mut out = t.flatten_all()?.to_vec1::<T>()?;
        for (row, units) in seeds.iter().enumerate() {
            let at = (row * n + tok) * d;
            let o = &mut out[at..at + d];
            for &p in units.iter() {
                // Column p of fc2's weight (D, M) = row p of its transpose (M, D).
                let col = &fc2_t[p * d..(p + 1) * d];
                o.iter_mut().zip(col).for_each(|(o, &w)| *o += w);
            }
        }
        tensor(out, (r, n, d))
    }
    match t.dtype() {
        DType::F32 => add::<f32>(block, t, tok, seeds),
        DType::F64 => add::<f64>(block, t, tok, seeds),
        d => candle_core::bail!("fused block tangent: unsupported dtype {d:?}"),
    }
}

/// dO (R, N, D) of the attention of all (image, head) pairs for the tangent `dqkv` (R, N, 3D).
fn attention_tangent<T: Real>(qkv: &[T], p: Option<&[T]>, dqkv: &[T], dm: Dims) -> Vec<T> {
    let Dims { r, n, d, heads, .. } = dm;
    let hd = dm.hd();
    let scale = T::from_f64(dm.scale());
    let mut o = kernels::uninit::<T>(r * n * d);
    let o_all = Dst::new(&mut o, 0, (0, 0), d);
    let len = r * n * d;
    (0..r * heads).into_par_iter().for_each(|i| {
        let (img, head) = (i / heads, i % heads);
        let base = img * n * 3 * d;
        let at = |col: usize| (base + col + head * hd, (n, hd), (3 * d, 1));
        let part = |src, col| {
            let (off, shape, strides) = at(col);
            Mat::new(src, off, shape, strides)
        };
        let (q, k, v) = (part(qkv, 0), part(qkv, d), part(qkv, 2 * d));
        let (dq, dk, dv) = (part(dqkv, 0), part(dqkv, d), part(dqkv, 2 * d));
        let pi = head_probs(qkv, p, dm, (img, head));
        let pi = &pi[..];
        let mut ds = kernels::uninit::<T>(n * n);
        let ds_dst = Dst::new(&mut ds, 0, (n, n), n);
        // SAFETY: `ds` is this task's own; each task writes only its own head's columns of its
        // own image's rows of `o`, which outlives the parallel loop.
        unsafe {
            kernels::matmul(ds_dst, dq, k.t(), Acc::Overwrite, scale, false);
            kernels::matmul(ds_dst, q, dk.t(), Acc::Add, scale, false);
            let mut ds = kernels::assume_init(ds);
            // dP = P * (dS - rowsum(P * dS)): the softmax's Jacobian is symmetric.
            kernels::softmax_rows_backward(pi, &mut ds, n);
            let oi = o_all.at(img * n * d + head * hd, (n, hd), len);
            let pm = Mat::rows(pi, n, n);
            kernels::matmul(oi, Mat::rows(&ds, n, n), v, Acc::Overwrite, T::one(), false);
            kernels::matmul(oi, pm, dv, Acc::Add, T::one(), false);
        }
    });
    // SAFETY: every (image, head) wrote its own columns of its image's rows: all of `o`.
    unsafe { kernels::assume_init(o) }
}
