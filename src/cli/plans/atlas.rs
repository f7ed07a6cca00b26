//! `atlas`'s flags resolved.
use super::positive;
use crate::attribution::discover::Method;
use crate::cli::args::AtlasArgs;
use anyhow::Result;
use std::path::PathBuf;

/// `neuronpath atlas`, resolved.
#[derive(Clone, Debug)]
pub struct AtlasPlan {
    pub results: PathBuf,
    pub method: Method,
    pub out: PathBuf,
    pub max_classes: usize,
    /// `--force`: replace existing files of other kinds (never inputs).
    pub force: bool,
}

impl AtlasPlan {
    /// Checks `atlas`'s flags.
    pub fn resolve(a: AtlasArgs) -> Result<Self> {
        Ok(AtlasPlan {
            results: a.results,
            method: a.method,
            out: a.out,
            max_classes: positive("--max-classes", a.max_classes)?,
            force: a.force,
        })
    }
}
