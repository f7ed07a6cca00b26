//! `explain`'s flags resolved.
use super::{memory_limit, model_spec, steps};
use crate::attribution::SearchEngine;
use crate::cli::args::ExplainArgs;
use crate::setup::ModelSpec;
use anyhow::Result;
use std::path::PathBuf;

/// `neuronpath explain`, resolved.
#[derive(Clone, Debug)]
pub struct ExplainPlan {
    pub model: ModelSpec,
    /// `None`: the embedded samples.
    pub image: Option<PathBuf>,
    /// Which input of `image`, 0-based (checked against the inputs once they are read).
    pub index: usize,
    /// An index or a class name (checked against the model once it is loaded).
    pub class: Option<String>,
    pub labels: Option<PathBuf>,
    /// Riemann steps of the path search and JAS.
    pub steps: usize,
    /// Riemann steps of the patch heat maps.
    pub map_steps: usize,
    /// Output prefix (`None`: `neuronpath-out/explain-INDEX`, named by the input's index).
    pub out: Option<PathBuf>,
    /// Replace files that are not an earlier `explain` output.
    pub force: bool,
    /// Peak memory of one clamped pass in bytes (`None`: the device's default).
    pub memory_limit: Option<usize>,
    /// The search engine (both give the same path).
    pub engine: SearchEngine,
}

impl ExplainPlan {
    /// Checks `explain`'s flags.
    pub fn resolve(a: ExplainArgs) -> Result<Self> {
        Ok(ExplainPlan {
            model: model_spec(&a.model)?,
            image: a.image,
            index: a.index,
            class: a.class,
            labels: a.labels,
            steps: steps("--steps", a.steps)?,
            map_steps: steps("--map-steps", a.map_steps)?,
            out: a.out,
            force: a.force,
            memory_limit: memory_limit(a.memory_limit_mb)?,
            engine: a.engine,
        })
    }
}
