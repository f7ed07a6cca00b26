//! Why an output was refused or could not be written, in one line naming the file.
use std::path::PathBuf;

/// A refused or failed write.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
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
    /// The output is one of the command's inputs.
    #[error("{}: is an input of this command ({}); refusing to write onto it, choose another output", path.display(), input.display())]
    IsInput {
        /// The output asked for.
        path: PathBuf,
        /// The input as given.
        input: PathBuf,
    },
    /// The output would land inside an input folder (a model folder, an image folder).
    #[error("{}: lies inside the input folder {}; refusing to write there, choose another output", path.display(), folder.display())]
    InsideInput {
        /// The output asked for.
        path: PathBuf,
        /// The input folder as given.
        folder: PathBuf,
    },
    /// Two outputs of one command on the same file.
    #[error("{}: this command already writes its {first} there (it would overwrite it); choose another output", path.display())]
    Twice {
        /// The output asked for.
        path: PathBuf,
        /// What else the command writes there.
        first: &'static str,
    },
    /// An existing file that neuronpath did not write.
    #[error("{}: exists and is not a neuronpath {kind}; refusing to replace it (pass --force to replace it)", path.display())]
    Foreign {
        /// The existing file.
        path: PathBuf,
        /// What the command would write there.
        kind: &'static str,
    },
    /// A folder where a file would go.
    #[error("{}: is a folder, not a file", .0.display())]
    Folder(PathBuf),
    /// A path without a file name (`/`, `..`).
    #[error("{}: not a file name", .0.display())]
    NoFileName(PathBuf),
    /// Another process holds the file's lock.
    #[error("{} is in use by another neuronpath run (wait for it to finish, or write elsewhere)", .0.display())]
    InUse(PathBuf),
}
