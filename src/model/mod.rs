//! The model layer: ViT architecture, checkpoint loading, interventions and gradients.
//!
//! - `vit`: the architecture (plain candle ops in Mode::Train, the oracle) and where each block
//!   runs; `config`: hyper-parameters; `intervene`: edits of the MLP hidden units.
//! - `fused` (CPU) and `fused_device` (GPU): an encoder block as one autograd node with a
//!   hand-written backward, used for attribution (Mode::Frozen); `kernels`: the strided GEMMs and
//!   row loops `fused` runs on; `ops`: custom element-wise ops; `gelu`: GELU and its derivative.
//! - `cuda_kernels` (feature `cuda`): fused CUDA kernels for the element-wise steps of
//!   `fused_device` (LayerNorm and its gradient, GELU with its derivative, softmax backward).
//! - `gradients`: dF/d(clamp) of every clamped block from one backward, in memory-bounded chunks.
//! - `load`, `save`: checkpoint formats.
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda_kernels;
mod fused;
mod fused_device;
mod gelu;
pub mod gradients;
pub mod intervene;
mod kernels;
pub mod load;
pub mod ops;
pub mod save;
pub mod vit;

/// The element-wise steps of the device block, public for tests/cuda.rs: on a CUDA tensor they
/// run the kernels of `cuda_kernels`, elsewhere candle tensor ops.
#[doc(hidden)]
pub mod device_steps {
    pub use super::fused_device::{gelu, layer_norm, layer_norm_grad, softmax_grad};
}

pub use config::{Pool, VitConfig};
pub use intervene::{Edit, Edits, LayerEdit, Rows};
pub use load::{load_model, LoadOptions, ModelError};
pub use ops::{Gelu, Mode};
pub use vit::Vit;
