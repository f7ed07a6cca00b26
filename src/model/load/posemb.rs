//! Position-embedding grid resize (SPEC section 1): linear interpolation aligned at the corners,
//! output index o samples input coordinate o*(g_old-1)/(g_new-1), as scipy.ndimage.zoom(order=1).
use candle_core::{DType, Result, Tensor};

/// Resizes a (g_old*g_old, D) grid, row-major, to (g_new*g_new, D).
pub fn resize_grid(grid: &[f64], g_old: usize, g_new: usize, d: usize) -> Vec<f64> {
    let coord = |o: usize| {
        if g_new == 1 {
            0.0
        } else {
            o as f64 * (g_old - 1) as f64 / (g_new - 1) as f64
        }
    };
    // Separable: rows first, then columns (linear interpolation commutes, so order is free).
    let sample = |o: usize| {
        let c = coord(o);
        let i0 = (c.floor() as usize).min(g_old - 1);
        let i1 = (i0 + 1).min(g_old - 1);
        (i0, i1, c - i0 as f64)
    };
    let mut rows = vec![0.0; g_new * g_old * d];
    for y in 0..g_new {
        let (a, b, w) = sample(y);
        for x in 0..g_old {
            for k in 0..d {
                rows[(y * g_old + x) * d + k] =
                    (1.0 - w) * grid[(a * g_old + x) * d + k] + w * grid[(b * g_old + x) * d + k];
            }
        }
    }
    let mut out = vec![0.0; g_new * g_new * d];
    for y in 0..g_new {
        for x in 0..g_new {
            let (a, b, w) = sample(x);
            for k in 0..d {
                out[(y * g_new + x) * d + k] =
                    (1.0 - w) * rows[(y * g_old + a) * d + k] + w * rows[(y * g_old + b) * d + k];
            }
        }
    }
    out
}

/// (P + g_old^2, D) with the P prefix rows first -> (P + g_new^2, D), prefix rows kept.
pub fn resize_pos_embed(
    kind: PosResize,
    pos: &Tensor,
    prefix: usize,
    g_new: usize,
) -> Result<Tensor> {
    let (n, d) = pos.dims2()?;
    let g_old = ((n - prefix) as f64).sqrt().round() as usize;
    let all: Vec<f64> = pos.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let mut out = all[..prefix * d].to_vec();
    out.extend(resize_grid_with(kind, &all[prefix * d..], g_old, g_new, d));
    Tensor::from_vec(out, (prefix + g_new * g_new, d), pos.device())?.to_dtype(pos.dtype())
}

/// How a checkpoint's position grid is resized to another image size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosResize {
    /// SPEC section 1 (the paper's models): [`resize_grid`].
    Linear,
    /// PyTorch `interpolate(mode="bicubic", align_corners=False)`: Keys' cubic with a = -0.75,
    /// border taps clamped (transformers' DINOv2 and CLIP).
    Bicubic,
    /// The same with `antialias=True`: a = -0.5, the kernel widened by the scale when shrinking,
    /// weights renormalised at the borders (transformers' DINOv2 with registers).
    BicubicAntialias,
}

/// Keys' cubic convolution kernel with parameter `a`.
fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The (g_new, g_old) matrix of one axis's interpolation weights, as PyTorch computes them.
fn bicubic_weights(g_old: usize, g_new: usize, antialias: bool) -> Vec<f64> {
    let scale = g_old as f64 / g_new as f64;
    let mut w = vec![0.0; g_new * g_old];
    for o in 0..g_new {
        let row = &mut w[o * g_old..(o + 1) * g_old];
        if antialias {
            // aten/src/ATen/native/cpu/UpSampleKernel.cpp, _compute_weights_aa.
            let support = if scale >= 1.0 { 2.0 * scale } else { 2.0 };
            let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
            let center = scale * (o as f64 + 0.5);
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(g_old as i64).max(0) as usize;
            let mut total = 0.0;
            for (j, r) in row.iter_mut().enumerate().take(hi).skip(lo) {
                *r = cubic((j as f64 - center + 0.5) * invscale, -0.5);
                total += *r;
            }
            if total != 0.0 {
                row.iter_mut().for_each(|r| *r /= total);
            }
        } else {
            // upsample_bicubic2d: source = scale (o + 0.5) - 0.5, four taps clamped to the grid.
            let src = scale * (o as f64 + 0.5) - 0.5;
            let i = src.floor();
            let t = src - i;
            let coeffs = [
                cubic(t + 1.0, -0.75),
                cubic(t, -0.75),
                cubic(1.0 - t, -0.75),
                cubic(2.0 - t, -0.75),
            ];
            for (k, c) in coeffs.iter().enumerate() {
                let j = (i as i64 - 1 + k as i64).clamp(0, g_old as i64 - 1) as usize;
                row[j] += c;
            }
        }
    }
    w
}

/// Resizes a (g_old*g_old, D) grid, row-major, to (g_new*g_new, D) by `kind`.
pub fn resize_grid_with(
    kind: PosResize,
    grid: &[f64],
    g_old: usize,
    g_new: usize,
    d: usize,
) -> Vec<f64> {
    let antialias = match kind {
        PosResize::Linear => return resize_grid(grid, g_old, g_new, d),
        PosResize::Bicubic => false,
        PosResize::BicubicAntialias => true,
    };
    let w = bicubic_weights(g_old, g_new, antialias);
    // Separable: columns (x) first, then rows (y).
    let mut cols = vec![0.0; g_old * g_new * d];
    for y in 0..g_old {
        for x in 0..g_new {
            let out = &mut cols[(y * g_new + x) * d..(y * g_new + x + 1) * d];
            for (j, &wj) in w[x * g_old..(x + 1) * g_old].iter().enumerate() {
                if wj != 0.0 {
                    let src = &grid[(y * g_old + j) * d..(y * g_old + j + 1) * d];
                    out.iter_mut().zip(src).for_each(|(o, s)| *o += wj * s);
                }
            }
        }
    }
    let mut out = vec![0.0; g_new * g_new * d];
    for y in 0..g_new {
        for (i, &wi) in w[y * g_old..(y + 1) * g_old].iter().enumerate() {
            if wi == 0.0 {
                continue;
            }
            for x in 0..g_new {
                let src = &cols[(i * g_new + x) * d..(i * g_new + x + 1) * d];
                let o = &mut out[(y * g_new + x) * d..(y * g_new + x + 1) * d];
                o.iter_mut().zip(src).for_each(|(o, s)| *o += wi * s);
            }
        }
    }
    out
}
