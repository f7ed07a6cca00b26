//! `discover`'s flags resolved: methods sorted and de-duplicated, the objective and target
//! defaulted, the memory limit in bytes, the shard from Slurm when not given.
use super::{memory_limit, model_spec, positive, steps};
use crate::attribution::discover::{Method, TargetKind};
use crate::attribution::run::DiscoveryJob;
use crate::cli::args::{DiscoverArgs, ObjectiveArg};
use crate::io::results::{os_path, Resume};
use crate::io::shard::Shard;
use crate::model::Objective;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// A `--direction` vector: one row of floats from a .npy file.
fn read_direction(path: &std::path::Path) -> Result<Vec<f64>> {
    let what = || format!("--direction {}", path.display());
    let t = candle_core::Tensor::read_npy(path)
        .map_err(|e| anyhow::anyhow!("{}: unreadable .npy: {e}", what()))?;
    let dims = t.dims().to_vec();
    if !(dims.len() == 1 || (dims.len() == 2 && dims[0] == 1)) {
        bail!(
            "{}: shape {dims:?}, expected one row (D,) or (1, D)",
            what()
        );
    }
    t.flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F64))
        .and_then(|t| t.to_vec1())
        .map_err(|e| anyhow::anyhow!("{}: {e}", what()))
}

/// `neuronpath discover`, resolved.
#[derive(Clone, Debug)]
pub struct DiscoverPlan {
    /// The run itself.
    pub job: DiscoveryJob,
    /// Where the report goes when done (`None`: no report).
    pub report: Option<PathBuf>,
    /// Riemann steps of the report's patch heat maps.
    pub map_steps: usize,
    /// `--force`: replace existing files of other kinds (never inputs).
    pub force: bool,
}

impl DiscoverPlan {
    /// Checks `discover`'s flags and fills in what they leave open.
    pub fn resolve(a: DiscoverArgs) -> Result<Self> {
        steps("--steps", a.steps)?;
        steps("--map-steps", a.map_steps)?;
        positive("--top-k", a.top_k)?;
        if let Some(b) = a.batch {
            positive("--batch", b)?;
        }
        if let Some(n) = a.per_class {
            positive("--per-class", n)?;
        }
        let memory_limit = memory_limit(a.memory_limit_mb)?;
        let mut methods = a.methods.clone();
        methods.sort();
        methods.dedup();
        if methods.is_empty() {
            bail!("--methods: name at least one method");
        }
        let both = [Method::Path, Method::Activation];
        if a.reference_layout.is_some() && !both.iter().all(|m| methods.contains(m)) {
            bail!(
                "--reference-layout: the authors' layout pairs each path with the activation baseline (its `base` entry); run --methods with both path and activation"
            );
        }
        let objective = match (&a.direction, a.objective) {
            (Some(path), ObjectiveArg::Prob) => Objective::Direction {
                source: path.display().to_string(),
                source_hex: path.to_str().is_none().then(|| os_path::to_hex(path)),
                vector: read_direction(path)?,
            },
            (Some(_), _) => bail!("--direction: F is then the dot product; drop --objective"),
            (None, ObjectiveArg::Prob) => Objective::Prob,
            (None, ObjectiveArg::Logit) => Objective::Logit,
            (None, ObjectiveArg::LogitDiff(a)) => Objective::LogitDiff { against: a },
        };
        let target = match (a.target, &objective) {
            (Some(TargetKind::Label), Objective::Direction { .. }) => {
                bail!("--target label: with --direction F has one score; use --target predicted")
            }
            (Some(t), _) => t,
            (None, Objective::Direction { .. }) => TargetKind::Predicted,
            (None, _) => TargetKind::Label,
        };
        let report = match (&a.report, a.no_report, a.input.inputs.is_empty()) {
            (_, true, _) => None,
            (Some(p), false, _) => Some(p.clone()),
            (None, false, true) => Some(a.out.with_file_name("report.html")),
            (None, false, false) => None,
        };
        Ok(DiscoverPlan {
            job: DiscoveryJob {
                model: model_spec(&a.model)?,
                inputs: a.input.inputs,
                labels: a.input.labels,
                out: a.out,
                steps: a.steps,
                top_k: a.top_k,
                methods,
                target,
                objective,
                neuron_token: a.neuron_token,
                compat: a.compat,
                seed: a.seed,
                batch: a.batch,
                memory_limit,
                engine: a.engine,
                shard: match a.shard {
                    Some(s) => Some(s),
                    None => Shard::from_env().map_err(anyhow::Error::msg)?,
                },
                per_class: a.per_class,
                reference_layout: a.reference_layout,
                stop_after: a
                    .stop_after
                    .map(|n| positive("--stop-after", n))
                    .transpose()?,
                resume: Resume {
                    retry_errors: !a.no_retry,
                    replace_foreign: a.force,
                },
            },
            report,
            map_steps: a.map_steps,
            force: a.force,
        })
    }
}
