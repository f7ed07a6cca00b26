//! Differentiable building blocks of the ViT as candle custom ops, each in both [`Mode`]s
//! (`mode.rs`): GELU, softmax, LayerNorm and Linear, one file each.
//!
//! [`Mode`]: crate::model::Mode
mod cpu_op;
mod gelu;
mod layer_norm;
mod linear;
mod softmax;

pub(crate) use gelu::gelu_in_place;
pub use gelu::{gelu, gelu_plain};
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use softmax::{softmax, softmax_plain};
