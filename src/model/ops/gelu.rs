//! GELU as a custom op with its exact derivative, and the in-place slice kernel the fused block
//! shares with it.
use candle_core::{Layout, Result, Tensor};
use rayon::prelude::*;

use super::cpu_op::{Kernel1, Kernel2, Op1, Op2};
use crate::model::config::Gelu;
use crate::model::dispatch::{kernels, Kernels};
use crate::model::gelu_formulas as gelu;
use crate::model::mode::Mode;
use crate::model::real::{gelu_chunk_exact, Real};
use crate::model::rows::{for_rows, PAR_MIN};

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

impl Kernel1 for GeluOp {
    const NAME: &'static str = "np-gelu";
    fn apply<T: Real>(&self, x: &[T], _: &Layout) -> Vec<T> {
        self.run(x)
    }
    fn backward(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad_op = Op2(GeluGradOp(self.0, self.1));
        Ok(Some(arg.apply_op2_no_bwd(&grad.contiguous()?, &grad_op)?))
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

impl Kernel2 for GeluGradOp {
    const NAME: &'static str = "np-gelu-grad";
    fn apply<T: Real>(&self, z: &[T], g: &[T], _: &Layout) -> Vec<T> {
        self.run(z, g)
    }
}

/// GELU of `x` with its exact derivative, by the parallel kernel on the CPU in both modes (it
/// has no weights); Mode::Train evaluates the libm formulas (see `GeluOp`). [`gelu_plain`] is
/// the candle-ops version (other devices, tests).
pub fn gelu(x: &Tensor, kind: Gelu, mode: Mode) -> Result<Tensor> {
    if kernels(x) == Kernels::CpuSlices {
        x.contiguous()?
            .apply_op1(Op1(GeluOp(kind, mode == Mode::Train)))
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
        Gelu::Quick => x.mul(&((x * -1.702)?.exp()? + 1.0)?.recip()?),
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
