//! `eval`'s flags resolved.
use super::positive;
use crate::cli::args::EvalArgs;
use anyhow::Result;
use std::path::PathBuf;

/// `neuronpath eval`, resolved.
#[derive(Clone, Debug)]
pub struct EvalPlan {
    /// The checkpoint measured.
    pub model: PathBuf,
    /// Folder with the Fashion-MNIST IDX .gz files.
    pub data: PathBuf,
    /// Images per forward pass.
    pub batch: usize,
}

impl EvalPlan {
    /// Checks `eval`'s flags.
    pub fn resolve(a: EvalArgs) -> Result<Self> {
        Ok(EvalPlan {
            model: a.model,
            data: a.data,
            batch: positive("--batch", a.batch)?,
        })
    }
}
