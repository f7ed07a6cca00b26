//! The tensor backend (any device; what CUDA runs): candle tensor ops, cuBLAS GEMMs on CUDA and
//! the fused element-wise kernels of `tensor_steps.rs`. Buffers keep their (R, tokens, width)
//! shape; the attention works on (R, H, tokens, hd) heads.
use super::backend::{Backend, Dims, Grid};
use super::tensor_steps::{gelu, layer_norm, layer_norm_grad, layer_norm_jvp, softmax_grad};
use crate::model::config::Gelu;
use crate::model::intervene::replace_rows;
use crate::model::ops::{LayerNorm, Linear};
use candle_core::{Device, Result, Shape, Tensor};

/// The candle-tensor backend.
pub(crate) struct Tensors;

/// What the attention keeps: q (first `keep` queries), k and v as (R, H, tokens, hd), and the
/// probabilities (R, H, keep, N) unless they are recomputed.
pub(crate) struct TensorAttention {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    p: Option<Tensor>,
}

/// (R, N, 3D) -> q, k, v (R, H, N, hd), q cut to its first `keep` tokens.
fn split_heads(qkv: &Tensor, dm: Dims, keep: usize) -> Result<[Tensor; 3]> {
    let qkv = qkv
        .reshape((dm.r, dm.n, 3, dm.heads, dm.hd()))?
        .permute([2, 0, 3, 1, 4])?;
    Ok([
        qkv.get(0)?.narrow(2, 0, keep)?.contiguous()?,
        qkv.get(1)?.contiguous()?,
        qkv.get(2)?.contiguous()?,
    ])
}

/// (R, H, tokens, hd) -> (R, tokens, D).
fn merge_heads(o: &Tensor) -> Result<Tensor> {
    let (r, h, t, hd) = o.dims4()?;
    o.transpose(1, 2)?.contiguous()?.reshape((r, t, h * hd))
}

fn probs(q: &Tensor, k: &Tensor, dm: Dims) -> Result<Tensor> {
    candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * dm.scale())?)
}

impl TensorAttention {
    fn p(&self, dm: Dims) -> Result<Tensor> {
        match &self.p {
            Some(p) => Ok(p.clone()),
            None => probs(&self.q, &self.k, dm),
        }
    }
}

fn grid3(a: &Tensor, g: Grid) -> Result<Tensor> {
    a.reshape((g.r, g.n, g.w))
}

/// `a` with token rows `s..s+len` replaced by `f` of them.
fn map_rows(
    a: &Tensor,
    g: Grid,
    (s, len): (usize, usize),
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let a = grid3(a, g)?;
    let rows = f(&a.narrow(1, s, len)?)?;
    replace_rows(&a, s, len, &rows)
}

impl Backend for Tensors {
    type Buf = Tensor;
    type Attn = TensorAttention;

    fn load(t: &Tensor) -> Result<Tensor> {
        t.contiguous()
    }

    fn store(b: Tensor, shape: Shape, _: &Device) -> Result<Tensor> {
        b.reshape(shape)
    }

    fn linear(
        x: &Tensor,
        g: Grid,
        l: &Linear,
        bias: bool,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let y = x.reshape((g.rows(), g.w))?.matmul(&l.weight_t()?)?;
        let y = match (&l.bias, bias) {
            (Some(b), true) => y.broadcast_add(b)?,
            _ => y,
        };
        let out = l.weight.dim(0)?;
        let y = y.reshape((g.r, g.n, out))?;
        match residual {
            Some(res) => grid3(res, g.with_w(out))? + y,
            None => Ok(y),
        }
    }

    fn linear_grad(g: &Tensor, grid: Grid, l: &Linear) -> Result<Tensor> {
        let gx = g.reshape((grid.rows(), grid.w))?.matmul(&l.weight)?;
        gx.reshape((grid.r, grid.n, l.weight.dim(1)?))
    }

    fn layer_norm(ln: &LayerNorm, x: &Tensor, g: Grid) -> Result<Tensor> {
        layer_norm(ln, &grid3(x, g)?)
    }

    fn layer_norm_grad(ln: &LayerNorm, x: &Tensor, dy: &Tensor, g: Grid) -> Result<Tensor> {
        layer_norm_grad(ln, &grid3(x, g)?, &grid3(dy, g)?)
    }

    fn layer_norm_jvp(ln: &LayerNorm, x: &Tensor, dx: &Tensor, g: Grid) -> Result<Tensor> {
        layer_norm_jvp(ln, &grid3(x, g)?, &grid3(dx, g)?)
    }

    fn gelu(kind: Gelu, z: Tensor, _: Grid, derivative: bool) -> Result<(Tensor, Option<Tensor>)> {
        gelu(kind, &z, derivative)
    }

    fn attention(qkv: Tensor, dm: Dims, keep_probs: bool) -> Result<(TensorAttention, Tensor)> {
        let [q, k, v] = split_heads(&qkv, dm, dm.keep)?;
        drop(qkv);
        let p = probs(&q, &k, dm)?;
        let o = merge_heads(&p.matmul(&v)?)?;
        let p = keep_probs.then_some(p);
        Ok((TensorAttention { q, k, v, p }, o))
    }

    fn attention_grad(at: &TensorAttention, d_o: &Tensor, dm: Dims) -> Result<Tensor> {
        let (r, n, d, keep, hd) = (dm.r, dm.n, dm.d, dm.keep, dm.hd());
        let d_o = d_o
            .reshape((r, keep, dm.heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let p = at.p(dm)?;
        // dS = softmax_bwd(dO V^T), dQ = dS K scale, dK = dS^T Q scale, dV = P^T dO.
        let dp = d_o.matmul(&at.v.t()?)?;
        let (ds, scale) = softmax_grad(&p, &dp, dm.scale())?;
        drop(dp);
        let scaled = |t: Tensor| if scale == 1.0 { Ok(t) } else { t * scale };
        let mut dq = scaled(ds.matmul(&at.k)?)?;
        let dk = scaled(ds.t()?.matmul(&at.q)?)?;
        drop(ds);
        let dv = p.t()?.matmul(&d_o)?;
        drop(d_o);
        if keep < n {
            // Queries past `keep` get no gradient.
            let rest = Tensor::zeros((r, dm.heads, n - keep, hd), dq.dtype(), dq.device())?;
            dq = Tensor::cat(&[&dq, &rest], 2)?;
        }
        // (3, R, H, N, hd) -> (R, N, 3, H, hd): qkv's column order.
        Tensor::stack(&[dq, dk, dv], 0)?
            .permute([1, 3, 0, 2, 4])?
            .contiguous()?
            .reshape((r, n, 3 * d))
    }

    fn attention_jvp(at: &TensorAttention, dqkv: &Tensor, dm: Dims) -> Result<Tensor> {
        if dm.keep != dm.n {
            candle_core::bail!("fused block tangent: needs every token row")
        }
        let [dq, dk, dv] = split_heads(dqkv, dm, dm.n)?;
        let p = at.p(dm)?;
        // dS = scale (dq k^T + q dk^T), dP = P * (dS - rowsum(P * dS)), dO = dP v + P dv.
        let ds = ((dq.matmul(&at.k.t()?)? + at.q.matmul(&dk.t()?)?)? * dm.scale())?;
        let (dp, f) = softmax_grad(&p, &ds, 1.0)?;
        drop(ds);
        let dp = if f == 1.0 { dp } else { (dp * f)? };
        merge_heads(&(dp.matmul(&at.v)? + p.matmul(&dv)?)?)
    }

    fn take_rows(a: &Tensor, g: Grid, (s, len): (usize, usize)) -> Result<Tensor> {
        grid3(a, g)?.narrow(1, s, len)?.contiguous()
    }

    fn set_rows(a: Tensor, g: Grid, span: (usize, usize), vals: &Tensor) -> Result<Tensor> {
        map_rows(&a, g, span, |_| vals.reshape((g.r, span.1, g.w)))
    }

    fn add_rows(a: Tensor, g: Grid, span: (usize, usize), vals: &Tensor) -> Result<Tensor> {
        map_rows(&a, g, span, |rows| {
            rows + vals.reshape((g.r, span.1, g.w))?
        })
    }

    fn zero_rows(a: Tensor, g: Grid, span: (usize, usize)) -> Result<Tensor> {
        map_rows(&a, g, span, |rows| rows.zeros_like())
    }

    fn scale_rows(a: Tensor, g: Grid, span: (usize, usize), f: &Tensor) -> Result<Tensor> {
        // One factor row per image, or one for all.
        let images = if f.elem_count() == g.w { 1 } else { g.r };
        let f = f.reshape((images, 1, g.w))?;
        map_rows(&a, g, span, |rows| rows.broadcast_mul(&f))
    }

    fn mul(a: Tensor, b: &Tensor) -> Result<Tensor> {
        a * b
    }

    fn add(a: Tensor, b: &Tensor) -> Result<Tensor> {
        a + b
    }

    fn add_columns(
        t: Tensor,
        g: Grid,
        l: &Linear,
        tok: usize,
        seeds: &[&[usize]],
    ) -> Result<Tensor> {
        // Counts (R, M) of each row's seeds times W^T (M, D): the sums of those columns of W.
        let m = l.weight.dim(1)?;
        let mut counts = vec![0f64; g.r * m];
        for (row, units) in seeds.iter().enumerate() {
            for &p in units.iter() {
                match counts.get_mut(row * m + p) {
                    Some(c) => *c += 1.0,
                    None => candle_core::bail!("fused block tangent: unit {p} of {m}"),
                }
            }
        }
        let counts = Tensor::from_vec(counts, (g.r, m), &Device::Cpu)?
            .to_dtype(t.dtype())?
            .to_device(t.device())?;
        let cols = counts.matmul(&l.weight_t()?)?;
        Self::add_rows(t, g, (tok, 1), &cols)
    }
}
