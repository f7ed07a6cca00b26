//! `merge`'s flags resolved.
use crate::cli::args::MergeArgs;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// `neuronpath merge`, resolved.
#[derive(Clone, Debug)]
pub struct MergePlan {
    /// Shard outputs, at least one.
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// `--force`: replace existing files of other kinds (never inputs).
    pub force: bool,
}

impl MergePlan {
    /// Checks `merge`'s flags.
    pub fn resolve(a: MergeArgs) -> Result<Self> {
        if a.inputs.is_empty() {
            bail!("merge: name at least one shard output");
        }
        Ok(MergePlan {
            inputs: a.inputs,
            out: a.out,
            force: a.force,
        })
    }
}
