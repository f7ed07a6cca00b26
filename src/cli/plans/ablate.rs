//! `ablate`'s flags resolved.
use super::{bootstrap, model_spec, positive};
use crate::cli::args::AblateArgs;
use crate::experiments::manipulation;
use crate::setup::ModelSpec;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// `neuronpath ablate`, resolved.
#[derive(Clone, Debug)]
pub struct AblatePlan {
    pub results: PathBuf,
    pub model: ModelSpec,
    pub out: PathBuf,
    /// Its seed is `--seed`, else the run's (set when the results are read).
    pub settings: manipulation::ManipulationSettings,
    pub seed: Option<u64>,
    /// `--force`: replace existing files of other kinds (never inputs).
    pub force: bool,
}

impl AblatePlan {
    /// Checks `ablate`'s flags.
    pub fn resolve(a: AblateArgs) -> Result<Self> {
        if let Some(f) = a.factors.iter().find(|f| !f.is_finite()) {
            bail!("--factors: {f} is not a finite number");
        }
        if a.factors.is_empty() {
            bail!("--factors: give at least one factor");
        }
        positive("--batch", a.batch)?;
        Ok(AblatePlan {
            results: a.results,
            model: model_spec(&a.model)?,
            out: a.out,
            settings: manipulation::ManipulationSettings {
                factors: a.factors,
                all_k: a.all_k,
                seed: a.seed.unwrap_or(0),
                bootstrap: bootstrap("--bootstrap", a.bootstrap)?,
                batch: a.batch,
            },
            seed: a.seed,
            force: a.force,
        })
    }
}
