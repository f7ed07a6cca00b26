//! `explain`'s flags resolved.
use super::{memory_limit, model_spec, steps};
use crate::cli::args::ExplainArgs;
use crate::experiments::explain::ExplainSettings;
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
    /// Steps, memory limit and engine.
    pub settings: ExplainSettings,
    /// Output prefix (`None`: `neuronpath-out/explain-INDEX`, named by the input's index).
    pub out: Option<PathBuf>,
    /// Replace files that are not an earlier `explain` output.
    pub force: bool,
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
            settings: ExplainSettings {
                steps: steps("--steps", a.steps)?,
                map_steps: steps("--map-steps", a.map_steps)?,
                memory_limit: memory_limit(a.memory_limit_mb)?,
                engine: a.engine,
            },
            out: a.out,
            force: a.force,
        })
    }

    /// The four outputs for input `index`: the prefix (default `neuronpath-out/explain-INDEX`)
    /// with `.svg`, `.png`, `.npy` and `.json`.
    pub fn files(&self, index: impl std::fmt::Display) -> [PathBuf; 4] {
        let prefix = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("neuronpath-out/explain-{index}")));
        ["svg", "png", "npy", "json"].map(|ext| {
            let mut s = prefix.as_os_str().to_owned();
            s.push(".");
            s.push(ext);
            PathBuf::from(s)
        })
    }
}
