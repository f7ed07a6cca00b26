//! What can go wrong in attribution besides the tensor computations themselves.

/// An attribution error: a request that cannot be met for its inputs, or a failed tensor
/// computation.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// The target is the label, but this image (its index in the batch) has none.
    #[error("image {image} of the batch has no label, and the target is the label")]
    MissingLabel {
        /// Index of the image in the batch.
        image: usize,
    },
    /// The target (a label or `--target class:N`) is not one of the model's scores.
    #[error("target {target}, but the model has {outputs} outputs")]
    TargetOutOfRange {
        /// The asked-for class.
        target: usize,
        /// Score columns of the model's objective.
        outputs: usize,
    },
    /// A tensor operation failed (shapes, dtypes, device memory).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}
