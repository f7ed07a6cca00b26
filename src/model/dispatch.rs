//! Which kernels run on a tensor, decided in this one place: neuronpath's own slice kernels for
//! CPU tensors, candle's tensor ops elsewhere, plus the fused kernels of `cuda_kernels` for the
//! tensor backend's element-wise steps on CUDA (`block_ops`). Tests can make the CPU run the
//! tensor backend's block.
use candle_core::{DType, Tensor};
use std::cell::Cell;

/// The kernels a computation runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernels {
    /// neuronpath's slice kernels (rayon-parallel, exact derivatives): CPU tensors.
    CpuSlices,
    /// candle's tensor ops, with the fused kernels of `cuda_kernels` where it has them.
    Cuda,
    /// candle's tensor ops alone: any other device.
    Candle,
}

/// The kernels for computations on `t`, by its device; tensors of another element type than f32
/// and f64 (bf16) run candle's ops on every device, the only kernels that have them.
pub(crate) fn kernels(t: &Tensor) -> Kernels {
    let device = t.device();
    if !matches!(t.dtype(), DType::F32 | DType::F64) {
        Kernels::Candle
    } else if device.is_cpu() {
        Kernels::CpuSlices
    } else if device.is_cuda() {
        Kernels::Cuda
    } else {
        Kernels::Candle
    }
}

thread_local! {
    static DEVICE_BLOCK_ON_CPU: Cell<bool> = const { Cell::new(false) };
}

/// The kernels of a frozen encoder block on `x`: as [`kernels`], except that inside
/// [`with_device_block`] a CPU block runs the tensor backend (candle ops).
pub(crate) fn block_kernels(x: &Tensor) -> Kernels {
    match kernels(x) {
        Kernels::CpuSlices if DEVICE_BLOCK_ON_CPU.with(Cell::get) => Kernels::Candle,
        k => k,
    }
}

/// Runs `f` with the tensor backend's block (`block_ops/tensors.rs`, what CUDA runs) in place of
/// the slice backend's, on this thread: how the tests check the CUDA path's math on the CPU.
pub fn with_device_block<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEVICE_BLOCK_ON_CPU.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(DEVICE_BLOCK_ON_CPU.with(|c| c.replace(true)));
    f()
}
