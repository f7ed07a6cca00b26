//! Softmax over the last dimension as a custom op with its backward.
use candle_core::{Layout, Result, Tensor, D};
use num_traits::Float;

use super::cpu_op::{Kernel1, Kernel2, Op1, Op2};
use crate::model::dispatch::{kernels, Kernels};
use crate::model::mode::Mode;
use crate::model::real::Real;
use crate::model::rows::for_rows;

struct SoftmaxOp;

impl SoftmaxOp {
    fn run<T: Real>(x: &[T], n: usize) -> Vec<T> {
        let mut out = vec![T::zero(); x.len()];
        for_rows(&mut out, n, |i, o| {
            let xs = &x[i * n..(i + 1) * n];
            let max = xs.iter().fold(T::neg_infinity(), |m, &v| Float::max(m, v));
            let mut sum = T::zero();
            for (o, &v) in o.iter_mut().zip(xs) {
                *o = (v - max).exp();
                sum += *o;
            }
            o.iter_mut().for_each(|o| *o /= sum);
        });
        out
    }
}

/// The length of the last dimension (the softmax's rows).
fn row_len(l: &Layout) -> usize {
    l.dims()[l.dims().len() - 1]
}

impl Kernel1 for SoftmaxOp {
    const NAME: &'static str = "np-softmax";
    fn apply<T: Real>(&self, x: &[T], l: &Layout) -> Vec<T> {
        Self::run(x, row_len(l))
    }
    fn backward(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(
            &grad.contiguous()?,
            &Op2(SoftmaxGradOp),
        )?))
    }
}

/// (y, g) -> y * (g - sum(y * g)) row-wise.
struct SoftmaxGradOp;

impl SoftmaxGradOp {
    fn run<T: Real>(y: &[T], g: &[T], n: usize) -> Vec<T> {
        let mut out = vec![T::zero(); y.len()];
        for_rows(&mut out, n, |i, o| {
            let (ys, gs) = (&y[i * n..(i + 1) * n], &g[i * n..(i + 1) * n]);
            let dot = ys.iter().zip(gs).fold(T::zero(), |s, (&a, &b)| s + a * b);
            for ((o, &a), &b) in o.iter_mut().zip(ys).zip(gs) {
                *o = a * (b - dot);
            }
        });
        out
    }
}

impl Kernel2 for SoftmaxGradOp {
    const NAME: &'static str = "np-softmax-grad";
    fn apply<T: Real>(&self, y: &[T], g: &[T], l: &Layout) -> Vec<T> {
        Self::run(y, g, row_len(l))
    }
}

/// Softmax over the last dimension with its backward. No weights, so both modes use the
/// parallel kernel on the CPU.
pub fn softmax(x: &Tensor, _mode: Mode) -> Result<Tensor> {
    if kernels(x) == Kernels::CpuSlices {
        x.contiguous()?.apply_op1(Op1(SoftmaxOp))
    } else {
        softmax_plain(x)
    }
}

/// Softmax from candle ops (candle_nn's generic softmax propagates gradients; its
/// softmax_last_dim does not).
pub fn softmax_plain(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}
