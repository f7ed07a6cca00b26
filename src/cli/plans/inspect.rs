//! `inspect`'s flags resolved.
use super::model_spec;
use crate::cli::args::InspectArgs;
use crate::setup::ModelSpec;
use anyhow::Result;

/// `neuronpath inspect`, resolved.
#[derive(Clone, Debug)]
pub struct InspectPlan {
    pub model: ModelSpec,
    /// Machine-readable output.
    pub json: bool,
}

impl InspectPlan {
    /// Checks `inspect`'s flags.
    pub fn resolve(a: InspectArgs) -> Result<Self> {
        Ok(InspectPlan {
            model: model_spec(&a.model)?,
            json: a.json,
        })
    }
}
