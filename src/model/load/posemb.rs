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
pub fn resize_pos_embed(pos: &Tensor, prefix: usize, g_new: usize) -> Result<Tensor> {
    let (n, d) = pos.dims2()?;
    let g_old = ((n - prefix) as f64).sqrt().round() as usize;
    let all: Vec<f64> = pos.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let mut out = all[..prefix * d].to_vec();
    out.extend(resize_grid(&all[prefix * d..], g_old, g_new, d));
    Tensor::from_vec(out, (prefix + g_new * g_new, d), pos.device())?.to_dtype(pos.dtype())
}
