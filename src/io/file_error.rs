//! A file or folder that cannot be read, created, listed or written: one error for every layer
//! that touches files by path, naming the path and the action.
use std::path::{Path, PathBuf};

/// An I/O failure on a path.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {action}", path.display())]
pub struct FileError {
    /// The file or folder.
    pub path: PathBuf,
    /// What failed: "read", "write", "create", "list".
    pub action: &'static str,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// `action` on `path` failed with `source`.
    pub fn new(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        FileError {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}
