//! The candle glue every CPU custom op shares: a kernel is written once over [`Real`] and
//! [`Op1`] / [`Op2`] run it on the storage's float type (f32 or f64), on contiguous data.
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType,
};

use crate::model::real::{contiguous, Real};

/// A kernel of one input, its output of the same shape.
pub(crate) trait Kernel1 {
    /// The op's name (candle's, and in errors).
    const NAME: &'static str;
    /// The output of `x`, laid out as `l`.
    fn apply<T: Real>(&self, x: &[T], l: &Layout) -> Vec<T>;
    /// The gradient of the op's input from its input `arg`, output `res` and output gradient.
    fn backward(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>>;
}

/// A kernel of two inputs of one shape (a backward: a value and the gradient).
pub(crate) trait Kernel2 {
    /// The op's name (candle's, and in errors).
    const NAME: &'static str;
    /// The output of `a` and `b`, both laid out as `l`.
    fn apply<T: Real>(&self, a: &[T], b: &[T], l: &Layout) -> Vec<T>;
}

/// A [`Kernel1`] as a candle op.
pub(crate) struct Op1<K>(pub K);

/// A [`Kernel2`] as a candle op.
pub(crate) struct Op2<K>(pub K);

impl<K: Kernel1 + Send + Sync> CustomOp1 for Op1<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(self.0.apply(contiguous::<f32>(s, l)?, l)),
            DType::F64 => f64::to_cpu_storage_owned(self.0.apply(contiguous::<f64>(s, l)?, l)),
            d => candle_core::bail!("{}: unsupported dtype {d:?}", K::NAME),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        self.0.backward(arg, res, grad)
    }
}

impl<K: Kernel2 + Send + Sync> CustomOp2 for Op2<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match s1.dtype() {
            DType::F32 => f32::to_cpu_storage_owned(self.0.apply(
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                l1,
            )),
            DType::F64 => f64::to_cpu_storage_owned(self.0.apply(
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
                l1,
            )),
            d => candle_core::bail!("{}: unsupported dtype {d:?}", K::NAME),
        };
        Ok((out, l1.shape().clone()))
    }
}
