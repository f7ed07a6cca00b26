//! What can go wrong in an experiment: the run's setup, the results file, the tensors, the
//! files read and written, and results that do not allow the experiment.
use crate::attribution::AttributionError;
use crate::io::file_error::FileError;
use crate::io::inputs::InputError;
use crate::io::results::ResultsError;
use crate::setup::SetupError;
use std::path::{Path, PathBuf};

/// An experiment's error.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    /// The run's model or inputs could not be set up again.
    Setup(#[from] SetupError),
    #[error(transparent)]
    /// The results file cannot be read.
    Results(#[from] ResultsError),
    #[error(transparent)]
    /// An input image cannot be read.
    Inputs(#[from] InputError),
    #[error(transparent)]
    /// An attribution (heat maps, explained images) failed.
    Attribution(#[from] AttributionError),
    #[error(transparent)]
    /// A tensor operation failed.
    Tensor(#[from] candle_core::Error),
    /// A file that cannot be read, created or written.
    #[error(transparent)]
    File(#[from] FileError),
    /// A file that is not the output it should be.
    #[error("{}: not the expected output", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        #[source]
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// A checkpoint that cannot be written.
    #[error("{}: cannot write", path.display())]
    Checkpoint {
        /// The checkpoint.
        path: PathBuf,
        #[source]
        /// What failed.
        source: safetensors::SafeTensorError,
    },
    /// A refused or failed atomic write.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error(transparent)]
    /// A result cannot be serialised.
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    /// An image cannot be encoded.
    Image(#[from] image::ImageError),
    /// Results, options or a model that do not allow the experiment (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// A figure that cannot be rasterised.
    #[error("{0}")]
    Render(String),
}

impl ExperimentError {
    /// An I/O failure on `path`.
    pub fn file(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        FileError::new(path, action, source).into()
    }
}

/// What the experiments return.
pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;

/// `return Err(ExperimentError::Invalid(format!(...)))`.
macro_rules! invalid {
    ($($t:tt)*) => {
        return Err($crate::experiments::error::ExperimentError::Invalid(format!($($t)*)))
    };
}
pub(crate) use invalid;
