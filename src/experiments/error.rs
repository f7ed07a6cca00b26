//! What can go wrong in an experiment: the run's setup, the results file, the tensors, the
//! files read and written, and results that do not allow the experiment.
use crate::attribution::AttributionError;
use crate::io::inputs::InputError;
use crate::io::results::ResultsError;
use crate::setup::SetupError;
use std::path::{Path, PathBuf};

/// An experiment's error.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Inputs(#[from] InputError),
    #[error(transparent)]
    Attribution(#[from] AttributionError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// A file that cannot be read, created or written.
    #[error("{}: cannot {action}", path.display())]
    File {
        path: PathBuf,
        /// "read", "write", "create".
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not the output it should be.
    #[error("{}: not the expected output", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint that cannot be written.
    #[error("{}: cannot write", path.display())]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A refused or failed atomic write.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
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
        ExperimentError::File {
            path: path.to_path_buf(),
            action,
            source,
        }
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
