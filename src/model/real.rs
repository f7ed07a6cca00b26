//! The float element types the CPU kernels run on, and typed access to a CPU tensor's storage.
use candle_core::{CpuStorage, Layout, Result, WithDType};
use num_traits::Float;

use crate::model::config::Gelu;
use crate::model::gelu_formulas as gelu;

/// Float element types the kernels run on.
pub trait Real: WithDType + Float {
    fn f64(self) -> f64 {
        WithDType::to_f64(self)
    }

    /// GELU of `vals` in place, with the derivatives at the old values into `ders` when given
    /// (f32 overrides this with the vectorised kernel of `gelu_formulas.rs`).
    fn gelu_chunk(kind: Gelu, vals: &mut [Self], ders: Option<&mut [Self]>) {
        gelu_chunk_exact(kind, vals, ders)
    }
}

/// [`Real::gelu_chunk`] by the exact f64 formulas (libm erf) for any float type.
pub(crate) fn gelu_chunk_exact<T: Real>(kind: Gelu, vals: &mut [T], ders: Option<&mut [T]>) {
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
            Gelu::Tanh | Gelu::Quick => gelu_chunk_exact(kind, vals, ders),
        }
    }
}
impl Real for f64 {}

/// The elements of a contiguous CPU tensor as a `T` slice (the custom ops need no strides).
pub(crate) fn contiguous<'a, T: Real>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("neuronpath kernel needs a contiguous tensor"),
    }
}
