//! `predict`'s flags resolved.
use super::{model_spec, positive};
use crate::cli::args::PredictArgs;
use crate::setup::ModelSpec;
use anyhow::Result;
use std::path::PathBuf;

/// `neuronpath predict`, resolved.
#[derive(Clone, Debug)]
pub struct PredictPlan {
    pub model: ModelSpec,
    /// Input paths; empty: the embedded samples.
    pub inputs: Vec<PathBuf>,
    pub labels: Option<PathBuf>,
    /// Every class's probability (or the embedding) per input as JSON, instead of a top-5 table.
    pub json: bool,
    /// Images per forward pass.
    pub batch: usize,
}

impl PredictPlan {
    /// Checks `predict`'s flags.
    pub fn resolve(a: PredictArgs) -> Result<Self> {
        Ok(PredictPlan {
            model: model_spec(&a.model)?,
            inputs: a.input.inputs,
            labels: a.input.labels,
            json: a.json,
            batch: positive("--batch", a.batch)?,
        })
    }
}
