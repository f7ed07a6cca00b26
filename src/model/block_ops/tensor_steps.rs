//! The element-wise steps of the tensor backend: LayerNorm (forward, input gradient, tangent),
//! GELU with its derivative, softmax backward. On a CUDA tensor each is one fused kernel of
//! `cuda_kernels`; elsewhere candle tensor ops (tests/cuda.rs compares the two).
use crate::model::config::Gelu;
#[cfg(feature = "cuda")]
use crate::model::dispatch::{kernels, Kernels};
use crate::model::ops::LayerNorm;
use candle_core::{Result, Tensor, D};
use std::f64::consts::{FRAC_1_SQRT_2, PI};

/// (x - mean) / sqrt(var + eps) over the last dimension, and 1 / sqrt(var + eps) (.., 1).
fn normalize(x: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let inv = (xc.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    Ok((xc.broadcast_mul(&inv)?, inv))
}

/// LayerNorm of `x` over its last dimension (a fused kernel on a CUDA device, candle ops elsewhere).
pub fn layer_norm(ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if kernels(x) == Kernels::Cuda {
        return crate::model::cuda_kernels::layer_norm(x, &ln.weight, &ln.bias, ln.eps);
    }
    let (xh, _) = normalize(x, ln.eps)?;
    xh.broadcast_mul(&ln.weight)?.broadcast_add(&ln.bias)
}

/// dx = inv * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = g * weight.
pub fn layer_norm_grad(ln: &LayerNorm, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if kernels(x) == Kernels::Cuda {
        return crate::model::cuda_kernels::layer_norm_grad(x, g, &ln.weight, ln.eps);
    }
    let (xh, inv) = normalize(x, ln.eps)?;
    let dxh = g.broadcast_mul(&ln.weight)?;
    let m1 = dxh.mean_keepdim(D::Minus1)?;
    let m2 = (&dxh * &xh)?.mean_keepdim(D::Minus1)?;
    dxh.broadcast_sub(&m1)?
        .sub(&xh.broadcast_mul(&m2)?)?
        .broadcast_mul(&inv)
}

/// GELU of `z` and, when asked for, its derivative (the exact formulas of `gelu::pair_exact`).
pub fn gelu(kind: Gelu, z: &Tensor, derivative: bool) -> Result<(Tensor, Option<Tensor>)> {
    #[cfg(feature = "cuda")]
    // quick-GELU has no CUDA kernel: candle's ops below run it on the GPU too.
    if kernels(z) == Kernels::Cuda && kind != Gelu::Quick {
        return crate::model::cuda_kernels::gelu(kind, z, derivative);
    }
    match kind {
        Gelu::Erf => {
            let cdf = (((z * FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5)?;
            let a = (z * &cdf)?;
            if !derivative {
                return Ok((a, None));
            }
            let pdf = ((z.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * PI).sqrt()))?;
            Ok((a, Some((cdf + (z * pdf)?)?)))
        }
        Gelu::Tanh => {
            let c = (2.0 / PI).sqrt();
            let z2 = z.sqr()?;
            let t = (((&z2 * 0.044715)? + 1.0)? * z)?.affine(c, 0.0)?.tanh()?;
            let a = ((z * 0.5)? * (&t + 1.0)?)?;
            if !derivative {
                return Ok((a, None));
            }
            // 0.5 (1 + t) + 0.5 z (1 - t^2) c (1 + 3 * 0.044715 z^2)
            let slope = (((z2 * (3.0 * 0.044715))? + 1.0)? * (0.5 * c))?;
            let d = (((&t + 1.0)? * 0.5)? + (z * (t.sqr()?.affine(-1.0, 1.0)? * slope)?)?)?;
            Ok((a, Some(d)))
        }
        Gelu::Quick => {
            // s = sigmoid(1.702 z); a = z s; a' = s + 1.702 z s (1 - s)
            let s = ((z * -1.702)?.exp()? + 1.0)?.recip()?;
            let a = (z * &s)?;
            if !derivative {
                return Ok((a, None));
            }
            let d = (&s + ((z * 1.702)? * (&s * s.affine(-1.0, 1.0)?)?)?)?;
            Ok((a, Some(d)))
        }
    }
}

/// The softmax backward `p * (dp - sum(p * dp))` over the last dimension, times `scale` on a
/// CUDA device (one fused kernel); on the CPU unscaled. Returns it and the factor still to apply.
pub fn softmax_grad(p: &Tensor, dp: &Tensor, scale: f64) -> Result<(Tensor, f64)> {
    #[cfg(feature = "cuda")]
    if kernels(p) == Kernels::Cuda {
        return Ok((crate::model::cuda_kernels::softmax_grad(p, dp, scale)?, 1.0));
    }
    let dot = (dp * p)?.sum_keepdim(D::Minus1)?;
    Ok(((dp.broadcast_sub(&dot)? * p)?, scale))
}

/// The tangent of LayerNorm at `x` along `dx`: weight * inv * (dx - mean(dx) - xh * mean(dx * xh)),
/// the input gradient's formula with a unit weight, then scaled by the weight.
pub fn layer_norm_jvp(ln: &LayerNorm, x: &Tensor, dx: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if kernels(x) == Kernels::Cuda {
        let ones = ln.weight.ones_like()?;
        return crate::model::cuda_kernels::layer_norm_grad(x, dx, &ones, ln.eps)?
            .broadcast_mul(&ln.weight);
    }
    let (xh, inv) = normalize(x, ln.eps)?;
    let m1 = dx.mean_keepdim(D::Minus1)?;
    let m2 = (dx * &xh)?.mean_keepdim(D::Minus1)?;
    dx.broadcast_sub(&m1)?
        .sub(&xh.broadcast_mul(&m2)?)?
        .broadcast_mul(&inv)?
        .broadcast_mul(&ln.weight)
}
