//! What can go wrong with a results file, each in one line naming the file.
use super::schema::SchemaVersion;
use std::path::PathBuf;

/// An error reading, writing or combining results files.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The file system refused.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The first line is not a results header.
    #[error("{}: no header line (not a neuronpath results file)", .0.display())]
    NoHeader(PathBuf),
    /// A line that is neither the header nor an image record.
    #[error("{}: line {line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A major version this neuronpath cannot read.
    #[error(
        "{}: results schema {found}, but this neuronpath reads schema {}.x (it writes {}); use the neuronpath that wrote it",
        path.display(), SchemaVersion::CURRENT.major, SchemaVersion::CURRENT
    )]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: SchemaVersion,
    },
    /// Appending to a file of another run.
    #[error("{}: holds results of another configuration (differs in {difference}); use another output file", path.display())]
    OtherRun {
        /// The file.
        path: PathBuf,
        /// The first differing header field and both values.
        difference: String,
    },
    /// Merging files of different runs.
    #[error("{}: another configuration than {} (differs in {difference}); refusing to merge", path.display(), first.display())]
    Mismatch {
        /// The refused file.
        path: PathBuf,
        /// The first input.
        first: PathBuf,
        /// The first differing header field and both values.
        difference: String,
    },
    /// A refused or failed write (an input, a foreign file, a file in use).
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// `merge` without inputs.
    #[error("nothing to merge")]
    NothingToMerge,
    /// The file is readable but does not describe a usable run.
    #[error("{}: not a discover results file: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is inconsistent.
        message: String,
    },
}
