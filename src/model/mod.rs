//! The model layer: ViT architecture, checkpoint loading, interventions and gradients.
//!
//! Where each file sits, from the bottom up (a file imports only files listed before it):
//! - `dispatch`: which kernels run on a tensor (CPU slices, CUDA, candle ops), the one place
//!   that asks a tensor's device.
//! - `config`: hyper-parameters (`VitConfig`, `Pool`, `Gelu`); `mode`: `Mode` (which of the two
//!   implementations of the ops runs); `intervene`: edits of the MLP hidden units;
//!   `clamp_layout`: where (image, step, token, unit) sits in flat clamp values and gradients.
//! - `gelu_formulas`: GELU and its derivative element-wise; `real`: the float types the CPU
//!   kernels run on; `rows`: their chunked, parallel row loop.
//! - `ops/`: the differentiable building blocks as candle custom ops (GELU, softmax, LayerNorm,
//!   Linear), one file each, over one CPU glue (`ops/cpu_op.rs`: a kernel written once for f32
//!   and f64); `kernels`: the strided GEMMs and row loops of the fused CPU block.
//! - `block`: one encoder block's weights and its op-by-op forward (Mode::Train, the oracle).
//! - `block_ops/`: an encoder block as one autograd node with a hand-written backward, and its
//!   tangent, used for attribution (Mode::Frozen): written once over a backend trait, with a
//!   slice backend (CPU) and a candle-tensor backend (GPU); `cuda_kernels` (feature `cuda`):
//!   fused CUDA kernels for the tensor backend's element-wise steps (LayerNorm and its gradient,
//!   GELU with its derivative, softmax backward).
//! - `vit`: the architecture (embedding, blocks, head) and where each block runs.
//! - `gradients`: dF/d(clamp) of every clamped block from one backward, in memory-bounded chunks.
//! - `fused_prefix`: the prefix search engine's passes on the `block_ops` blocks (suffix forward +
//!   backward from a saved residual stream, one-block extension with its tangent).
//! - `load`, `save` (ViT, and what every Hugging Face writer shares), `save_dinov2`: checkpoint
//!   formats.
pub mod block;
mod block_ops;
pub mod clamp_layout;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda_kernels;
mod dispatch;
pub mod fused_prefix;
mod gelu_formulas;
pub mod gradients;
pub mod intervene;
mod kernels;
pub mod load;
pub mod mode;
pub mod objective;
pub mod ops;
mod real;
mod rows;
pub mod save;
pub mod save_dinov2;
pub mod vit;

/// Hooks for the test suite, not part of the API: [`with_device_block`](test_support::with_device_block)
/// runs the device block on the CPU; the element-wise steps of the device block run the kernels
/// of `cuda_kernels` on a CUDA tensor, elsewhere candle tensor ops (tests/cuda.rs compares them).
#[doc(hidden)]
pub mod test_support {
    pub use super::block_ops::tensor_steps::{
        gelu, layer_norm, layer_norm_grad, layer_norm_jvp, softmax_grad,
    };
    pub use super::dispatch::with_device_block;
}

pub use block::Block;
pub use clamp_layout::ClampLayout;
pub use config::{Gelu, Pool, VitConfig};
pub use intervene::{Edit, Edits, LayerEdit, Rows};
pub use load::{load_model, LoadOptions, ModelError};
pub use mode::Mode;
pub use objective::Objective;
pub use vit::Vit;
