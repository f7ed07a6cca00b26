//! Differentiable building blocks of the ViT, in two interchangeable implementations.
//!
//! - [`Mode::Train`]: plain candle ops. Every operand gets a gradient (weights included), so this is
//!   what training uses, and it is the oracle the frozen ops are tested against.
//! - [`Mode::Frozen`]: custom ops whose backward returns only the input gradient (weights are
//!   constants), with exact analytic derivatives and rayon-parallel CPU kernels. Candle's own
//!   `gelu_erf` backward uses a truncated constant (0.398942), and its matmul backward always
//!   builds the weight gradient; both are wrong or wasteful for attribution.
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor, WithDType, D,
};
use num_traits::Float;
use rayon::prelude::*;

use crate::model::gelu;

/// Which implementation of the blocks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain candle ops, gradients for every operand (training, oracle).
    Train,
    /// Custom ops, gradients for activations only (attribution).
    Frozen,
}

/// GELU flavour: exact erf (PyTorch default, the paper) or the tanh approximation (original JAX ViT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gelu {
    Erf,
    Tanh,
}

/// Float element types the kernels run on.
pub trait Real: WithDType + Float {
    fn f64(self) -> f64 {
        WithDType::to_f64(self)
    }

    /// GELU of `vals` in place, with the derivatives at the old values into `ders` when given
    /// (f32 overrides this with the vectorised kernel of `gelu.rs`).
    fn gelu_chunk(kind: Gelu, vals: &mut [Self], ders: Option<&mut [Self]>) {
        gelu_chunk_exact(kind, vals, ders)
    }
}

/// [`Real::gelu_chunk`] by the exact f64 formulas (libm erf) for any float type.
fn gelu_chunk_exact<T: Real>(kind: Gelu, vals: &mut [T], ders: Option<&mut [T]>) {
    match ders {
        Some(ders) => {
            for (v, d) in vals.iter_mut().zip(ders.iter_mut()) {
                let (value, derivative) = gelu::pair_exact(kind, v.f64());
                *v = T::from_f64(value);
                *d = T::from_f64(derivative);
            }
        }
        None => vals
            .iter_mut()
            .for_each(|v| *v = T::from_f64(gelu::value_exact(kind, v.f64()))),
    }
}
impl Real for f32 {
    fn gelu_chunk(kind: Gelu, vals: &mut [f32], ders: Option<&mut [f32]>) {
        match kind {
            Gelu::Erf => gelu::erf_f32(vals, ders),
            Gelu::Tanh => gelu_chunk_exact(kind, vals, ders),
        }
    }
}
impl Real for f64 {}

/// Rows shorter than this are processed serially: thread hand-off costs more than the work.
const PAR_MIN: usize = 1 << 14;

fn contiguous<'a, T: Real>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("neuronpath kernel needs a contiguous tensor"),
    }
}

/// Applies `f` to each chunk of `row` elements of `out`, in parallel when the tensor is large.
pub(crate) fn for_rows<T: Send, F>(out: &mut [T], row: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    if out.len() < PAR_MIN {
        out.chunks_mut(row).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.par_chunks_mut(row)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
}

// ---------------------------------------------------------------------------------------------
// GELU

/// GELU with `exact` = the libm formulas in every dtype (training, so that a documented
/// retraining reproduces the shipped weights bit for bit) or the dtype's own kernel (attribution).
struct GeluOp(Gelu, bool);

impl GeluOp {
    fn run<T: Real>(&self, x: &[T]) -> Vec<T> {
        let mut out = x.to_vec();
        gelu_slice(self.0, self.1, &mut out, false);
        out
    }
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "np-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(self.run(contiguous::<f32>(s, l)?)),
            DType::F64 => f64::to_cpu_storage_owned(self.run(contiguous::<f64>(s, l)?)),
            d => candle_core::bail!("gelu: unsupported dtype {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &GeluGradOp(self.0, self.1),
        )?))
    }
}

/// (z, g) -> g * gelu'(z), exact as in [`GeluOp`].
struct GeluGradOp(Gelu, bool);

impl GeluGradOp {
    fn run<T: Real>(&self, z: &[T], g: &[T]) -> Vec<T> {
        if self.1 {
            // Training: the product in f64 before rounding, as the shipped model was trained.
            let mut out = vec![T::zero(); z.len()];
            for_rows(&mut out, 1024, |i, o| {
                let (zs, gs) = (&z[i * 1024..], &g[i * 1024..]);
                for ((o, &z), &g) in o.iter_mut().zip(zs).zip(gs) {
                    let d = gelu::pair_exact(self.0, z.f64()).1;
                    *o = T::from_f64(d * g.f64());
                }
            });
            return out;
        }
        let mut values = z.to_vec();
        let mut out = gelu_slice(self.0, false, &mut values, true).expect("asked for derivatives");
        for_rows(&mut out, 1024, |i, o| {
            let gs = &g[i * 1024..];
            o.iter_mut().zip(gs).for_each(|(o, &g)| *o *= g);
        });
        out
    }
}

impl CustomOp2 for GeluGradOp {
    fn name(&self) -> &'static str {
        "np-gelu-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match s1.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(
                self.run(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?),
            ),
            DType::F64 => f64::to_cpu_storage_owned(
                self.run(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?),
            ),
            d => candle_core::bail!("gelu grad: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

/// GELU of `x` with its exact derivative, by the parallel kernel on the CPU in both modes (it
/// has no weights); Mode::Train evaluates the libm formulas (see `GeluOp`). [`gelu_plain`] is
/// the candle-ops version (other devices, tests).
pub fn gelu(x: &Tensor, kind: Gelu, mode: Mode) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(GeluOp(kind, mode == Mode::Train))
    } else {
        gelu_plain(x, kind)
    }
}

/// GELU from plain candle ops (written out: candle's own gelu backward truncates a constant).
pub fn gelu_plain(x: &Tensor, kind: Gelu) -> Result<Tensor> {
    match kind {
        Gelu::Erf => (x * 0.5)?.mul(&((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)?),
        Gelu::Tanh => {
            let inner = ((x.powf(3.0)? * 0.044715)? + x)? * (2.0 / std::f64::consts::PI).sqrt();
            (x * 0.5)?.mul(&(inner?.tanh()? + 1.0)?)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last dimension

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
    if x.device().is_cpu() {
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

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// LayerNorm parameters over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
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

impl CustomOp1 for LayerNormOp {
    fn name(&self) -> &'static str {
        "np-layernorm"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(self.run(contiguous::<f32>(s, l)?)),
            DType::F64 => f64::to_cpu_storage_owned(self.run(contiguous::<f64>(s, l)?)),
            d => candle_core::bail!("layernorm: unsupported dtype {d:?}"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad_op = LayerNormGradOp(self);
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &grad_op)?))
    }
}

struct LayerNormGradOp<'a>(&'a LayerNormOp);

impl CustomOp2 for LayerNormGradOp<'_> {
    fn name(&self) -> &'static str {
        "np-layernorm-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match s1.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(
                self.0
                    .grad(contiguous::<f32>(s1, l1)?, contiguous::<f32>(s2, l2)?),
            ),
            DType::F64 => f64::to_cpu_storage_owned(
                self.0
                    .grad(contiguous::<f64>(s1, l1)?, contiguous::<f64>(s2, l2)?),
            ),
            d => candle_core::bail!("layernorm grad: unsupported dtype {d:?}"),
        };
        Ok((out, l1.shape().clone()))
    }
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match (mode, x.device().is_cpu()) {
            (Mode::Frozen, true) => x.contiguous()?.apply_op1(self.op()?),
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

// ---------------------------------------------------------------------------------------------
// Linear

/// A dense layer `y = x W^T + b`, `weight` of shape (out, in).
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// `W^T` made contiguous on first use by a frozen forward: gemm multiplies a transposed view
    /// about half as fast (ViT-B fc1: 3.7 s vs 1.3 s for the same-size backward GEMM).
    weight_t: std::sync::OnceLock<Tensor>,
}

/// Carries a precomputed `x W^T + b` forward and only `grad W` backward: the weight is a
/// constant, so no weight-sized gradient is ever built.
struct FrozenLinearOp {
    out: Tensor,
    weight: Tensor,
}

impl CustomOp1 for FrozenLinearOp {
    fn name(&self) -> &'static str {
        "np-frozen-linear"
    }
    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (storage, layout) = self.out.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            candle_core::bail!("frozen linear: expected a cpu tensor")
        };
        let data = match cpu.dtype() {
            DType::F32 => f32::to_cpu_storage(contiguous::<f32>(cpu, layout)?),
            DType::F64 => f64::to_cpu_storage(contiguous::<f64>(cpu, layout)?),
            d => candle_core::bail!("frozen linear: unsupported dtype {d:?}"),
        };
        Ok((data, layout.shape().clone()))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dims = grad.dims().to_vec();
        let rows = grad.elem_count() / dims[dims.len() - 1];
        let gx = grad
            .reshape((rows, dims[dims.len() - 1]))?
            .matmul(&self.weight)?;
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap() = self.weight.dim(1)?;
        Ok(Some(gx.reshape(out_dims)?))
    }
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            bias,
            weight_t: std::sync::OnceLock::new(),
        }
    }

    /// `W^T`: a cached contiguous copy for constant weights, a view for trained ones (whose
    /// values change under the optimizer).
    pub(crate) fn weight_t(&self) -> Result<Tensor> {
        if self.weight.is_variable() || self.weight.track_op() {
            return self.weight.t();
        }
        if let Some(t) = self.weight_t.get() {
            return Ok(t.clone());
        }
        let t = self.weight.t()?.contiguous()?;
        Ok(self.weight_t.get_or_init(|| t).clone())
    }

    fn plain(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (inp, out) = (dims[dims.len() - 1], self.weight.dim(0)?);
        let y = x
            .reshape((x.elem_count() / inp, inp))?
            .matmul(&self.weight_t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap() = out;
        y.reshape(out_dims)
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Train || !x.device().is_cpu() || !x.track_op() {
            return self.plain(x);
        }
        let out = self.plain(&x.detach())?.contiguous()?;
        x.contiguous()?.apply_op1(FrozenLinearOp {
            out,
            weight: self.weight.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Slice kernels of the fused block (`fused.rs`).

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

/// GELU of `z` in place, returning its derivative at the old values when `derivative` (the
/// two share one erf), for the fused block.
pub(crate) fn gelu_in_place<T: Real>(kind: Gelu, z: &mut [T], derivative: bool) -> Option<Vec<T>> {
    gelu_slice(kind, false, z, derivative)
}

/// [`gelu_in_place`], by the exact formulas when `exact`.
fn gelu_slice<T: Real>(kind: Gelu, exact: bool, z: &mut [T], derivative: bool) -> Option<Vec<T>> {
    const CHUNK: usize = 1024;
    let chunk = if exact {
        gelu_chunk_exact::<T>
    } else {
        T::gelu_chunk
    };
    if !derivative {
        for_rows(z, CHUNK, |_, c| chunk(kind, c, None));
        return None;
    }
    let mut der = vec![T::zero(); z.len()];
    let work = |(v, d): (&mut [T], &mut [T])| chunk(kind, v, Some(d));
    if z.len() < PAR_MIN {
        z.chunks_mut(CHUNK)
            .zip(der.chunks_mut(CHUNK))
            .for_each(work);
    } else {
        z.par_chunks_mut(CHUNK)
            .zip(der.par_chunks_mut(CHUNK))
            .for_each(work);
    }
    Some(der)
}
