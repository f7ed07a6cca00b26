//! Writing outputs without destroying data.
//!
//! Every output is written to a temporary file in its own folder, flushed to disk and renamed
//! into place ([`AtomicFile`], [`write_atomic`]): a kill, a full disk or an error leaves either
//! the old file or the new one, never half of either. Before a command writes anything, an
//! [`Outputs`] guard refuses an output that is one of the command's inputs (the same file by
//! device and inode, or by canonical path) or lies inside an input folder, that the command
//! would write twice, or that exists and is not neuronpath's own kind of output ([`Kind`])
//! unless `--force`.
//!
//! This module sits below every other: it knows files, not models or results.
mod atomic;
mod error;
mod guard;
mod kind;

pub use atomic::{write_atomic, AtomicFile};
pub use error::OutputError;
pub use guard::{same_file, Outputs};
pub use kind::{mark_html, mark_json, Kind, HTML_MARK, MARK_KEY};
