//! Softmax over the last dimension as a custom op with its backward.
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType, D,
};
use num_traits::Float;

use crate::model::dispatch::{kernels, Kernels};
use crate::model::mode::Mode;
use crate::model::real::{contiguous, Real};
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

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "np-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l.dims()[l.dims().len() - 1];
        let out = match s.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(Self::run(contiguous::<f32>(s, l)?, n)),
            DType::F64 => f64::to_cpu_storage_owned(Self::run(contiguous::<f64>(s, l)?, n)),
            d => candle_core::bail!("softmax: unsupported dtype {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGradOp)?,
        ))
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

impl CustomOp2 for SoftmaxGradOp {
    fn name(&self) -> &'static str {
        "np-softmax-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = l1.dims()[l1.dims().len() - 1];
        let out = match s1.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(Self::run(
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                n,
            )),
            DType::F64 => f64::to_cpu_storage_owned(Self::run(
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
                n,
            )),
            d => candle_core::bail!("softmax grad: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// Softmax over the last dimension with its backward. No weights, so both modes use the
/// parallel kernel on the CPU.
pub fn softmax(x: &Tensor, _mode: Mode) -> Result<Tensor> {
    if kernels(x) == Kernels::CpuSlices {
        x.contiguous()?.apply_op1(SoftmaxOp)
    } else {
        softmax_plain(x)
    }
}

/// Softmax from candle ops (candle_nn's generic softmax propagates gradients; its
/// softmax_last_dim does not).
pub fn softmax_plain(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}
