//! Which of the two interchangeable implementations of the ViT's building blocks runs.
//!
//! - [`Mode::Train`]: plain candle ops. Every operand gets a gradient (weights included), so this is
//!   what training uses, and it is the oracle the frozen ops are tested against.
//! - [`Mode::Frozen`]: custom ops whose backward returns only the input gradient (weights are
//!   constants), with exact analytic derivatives and rayon-parallel CPU kernels. Candle's own
//!   `gelu_erf` backward uses a truncated constant (0.398942), and its matmul backward always
//!   builds the weight gradient; both are wrong or wasteful for attribution.

/// Which implementation of the blocks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain candle ops, gradients for every operand (training, oracle).
    Train,
    /// Custom ops, gradients for activations only (attribution).
    Frozen,
}
