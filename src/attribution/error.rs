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
    /// Settings the model cannot meet (zero steps, K above the MLP width).
    #[error("{0}")]
    Settings(String),
    /// An input image holds NaN or infinite values.
    #[error("image {image} of the batch has {count} NaN or infinite values")]
    NonFiniteInput {
        /// Index of the image in the batch.
        image: usize,
        /// How many values are not finite.
        count: usize,
    },
    /// The model's output for an image is NaN or infinite (its weights overflow on it).
    #[error("the model's output for image {image} of the batch is NaN or infinite (the weights overflow on this input)")]
    NonFiniteOutput {
        /// Index of the image in the batch.
        image: usize,
    },
    /// A tensor operation failed (shapes, dtypes, device memory).
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl AttributionError {
    /// The image of the batch this error belongs to, when it is about one image alone (the
    /// others can still be attributed without it); `None` for errors of the whole request.
    pub fn image(&self) -> Option<usize> {
        match self {
            AttributionError::MissingLabel { image }
            | AttributionError::NonFiniteInput { image, .. }
            | AttributionError::NonFiniteOutput { image } => Some(*image),
            AttributionError::TargetOutOfRange { .. }
            | AttributionError::Settings(_)
            | AttributionError::Tensor(_) => None,
        }
    }
}
