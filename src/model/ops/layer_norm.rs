//! LayerNorm over the last dimension: its parameters, the frozen custom op with its input
//! gradient, and the slice kernel the fused block runs.
use candle_core::{DType, Layout, Result, Tensor, D};

use super::cpu_op::{Kernel1, Kernel2, Op1, Op2};
use crate::model::dispatch::{kernels, Kernels};
use crate::model::mode::Mode;
use crate::model::real::Real;
use crate::model::rows::for_rows;

/// LayerNorm parameters over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale (D).
    pub weight: Tensor,
    /// Shift (D).
    pub bias: Tensor,
    /// Added to the variance before the square root.
    pub eps: f64,
}

pub(crate) struct LayerNormOp {
    weight: Vec<f64>,
    bias: Vec<f64>,
    eps: f64,
}

fn row_stats<T: Real>(xs: &[T], eps: f64) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().map(|v| v.f64()).sum::<f64>() / n;
    let var = xs.iter().map(|v| (v.f64() - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl LayerNormOp {
    pub(crate) fn run<T: Real>(&self, x: &[T]) -> Vec<T> {
        let n = self.weight.len();
        let mut out = vec![T::zero(); x.len()];
        for_rows(&mut out, n, |i, o| {
            let xs = &x[i * n..(i + 1) * n];
            let (mean, inv) = row_stats(xs, self.eps);
            for (j, (o, &v)) in o.iter_mut().zip(xs).enumerate() {
                *o = T::from_f64((v.f64() - mean) * inv * self.weight[j] + self.bias[j]);
            }
        });
        out
    }

    /// dx = inv * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = g * weight.
    pub(crate) fn grad<T: Real>(&self, x: &[T], g: &[T]) -> Vec<T> {
        let n = self.weight.len();
        let mut out = vec![T::zero(); x.len()];
        for_rows(&mut out, n, |i, o| {
            let (xs, gs) = (&x[i * n..(i + 1) * n], &g[i * n..(i + 1) * n]);
            let (mean, inv) = row_stats(xs, self.eps);
            let (mut m1, mut m2) = (0.0, 0.0);
            for j in 0..n {
                let dxh = gs[j].f64() * self.weight[j];
                m1 += dxh;
                m2 += dxh * (xs[j].f64() - mean) * inv;
            }
            let (m1, m2) = (m1 / n as f64, m2 / n as f64);
            for (j, o) in o.iter_mut().enumerate() {
                let xh = (xs[j].f64() - mean) * inv;
                let dxh = gs[j].f64() * self.weight[j];
                *o = T::from_f64(inv * (dxh - m1 - xh * m2));
            }
        });
        out
    }
}

impl LayerNormOp {
    /// Forward-mode derivative (tangent) along `dx`:
    /// dy = weight * inv * (dx - mean(dx) - xh * mean(dx * xh)).
    pub(crate) fn jvp<T: Real>(&self, x: &[T], dx: &[T]) -> Vec<T> {
        let n = self.weight.len();
        let mut out = vec![T::zero(); x.len()];
        for_rows(&mut out, n, |i, o| {
            let (xs, ds) = (&x[i * n..(i + 1) * n], &dx[i * n..(i + 1) * n]);
            let (mean, inv) = row_stats(xs, self.eps);
            let (mut m1, mut m2) = (0.0, 0.0);
            for j in 0..n {
                m1 += ds[j].f64();
                m2 += ds[j].f64() * (xs[j].f64() - mean) * inv;
            }
            let (m1, m2) = (m1 / n as f64, m2 / n as f64);
            for (j, o) in o.iter_mut().enumerate() {
                let xh = (xs[j].f64() - mean) * inv;
                *o = T::from_f64(self.weight[j] * inv * (ds[j].f64() - m1 - xh * m2));
            }
        });
        out
    }
}

impl Kernel1 for LayerNormOp {
    const NAME: &'static str = "np-layernorm";
    fn apply<T: Real>(&self, x: &[T], _: &Layout) -> Vec<T> {
        self.run(x)
    }
    fn backward(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad_op = Op2(LayerNormGradOp(self));
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &grad_op)?))
    }
}

struct LayerNormGradOp<'a>(&'a LayerNormOp);

impl Kernel2 for LayerNormGradOp<'_> {
    const NAME: &'static str = "np-layernorm-grad";
    fn apply<T: Real>(&self, x: &[T], g: &[T], _: &Layout) -> Vec<T> {
        self.0.grad(x, g)
    }
}

impl LayerNorm {
    /// Normalises `x` over its last dimension, then scales and shifts; `mode` picks the implementation.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match (mode, kernels(x)) {
            (Mode::Frozen, Kernels::CpuSlices) => x.contiguous()?.apply_op1(Op1(self.op()?)),
            // Hand-written: candle_nn's fused layer_norm silently stops gradients.
            _ => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                let xh = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                xh.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
            }
        }
    }
}

impl LayerNorm {
    /// The LayerNorm's kernel (forward `run`, input gradient `grad`) with its parameters.
    pub(crate) fn op(&self) -> Result<LayerNormOp> {
        Ok(LayerNormOp {
            weight: self.weight.to_dtype(DType::F64)?.to_vec1()?,
            bias: self.bias.to_dtype(DType::F64)?.to_vec1()?,
            eps: self.eps,
        })
    }
}
