//! `prune`'s flags resolved: the grid defaulted to the authors', every value checked.
use super::{bootstrap, fraction, model_spec, positive};
use crate::cli::args::PruneArgs;
use crate::experiments::pruning::{self, Grid};
use crate::io::results::Results;
use crate::setup::ModelSpec;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Which pruned model `prune --save-model` writes; `None` fields: the largest of the grid, the
/// first evaluated class.
#[derive(Clone, Debug)]
pub struct SavePlan {
    pub path: PathBuf,
    pub class: Option<usize>,
    pub k: Option<usize>,
    pub p: Option<f64>,
    pub d: Option<usize>,
}

impl SavePlan {
    /// `--save-k`, `--save-d` and `--save-class` against the run, before the grid is computed.
    pub fn check(&self, run: &Results) -> Result<()> {
        if let Some(k) = self.k.filter(|&k| k > run.top_k) {
            bail!(
                "--save-k {k}: the run kept {} neuron(s) per layer (discover --top-k)",
                run.top_k
            );
        }
        if let Some(d) = self.d.filter(|&d| d > run.config.layers) {
            bail!("--save-d {d}: the model has {} layers", run.config.layers);
        }
        if let Some(c) = self.class.filter(|&c| c >= run.config.num_classes) {
            bail!(
                "--save-class {c}: the model has {} classes",
                run.config.num_classes
            );
        }
        Ok(())
    }
}

/// `neuronpath prune`, resolved.
#[derive(Clone, Debug)]
pub struct PrunePlan {
    pub results: PathBuf,
    pub model: ModelSpec,
    pub out: PathBuf,
    /// The grid as asked (clamped to the run's K and the model's layers when run).
    pub settings: pruning::PruningSettings,
    pub holdout: f64,
    /// Evaluate on these images instead of held-out run images.
    pub eval: Vec<PathBuf>,
    pub eval_labels: Option<PathBuf>,
    pub save: Option<SavePlan>,
    /// `--force`: replace existing files of other kinds (never inputs).
    pub force: bool,
}

impl PrunePlan {
    /// Checks `prune`'s flags; the grid defaults to the authors'.
    pub fn resolve(a: PruneArgs) -> Result<Self> {
        let authors = Grid::authors();
        let grid = Grid {
            ks: a.ks.unwrap_or(authors.ks),
            ps: a.ps.unwrap_or(authors.ps),
            ds: a.ds.unwrap_or(authors.ds),
        };
        for &k in &grid.ks {
            positive("--k", k)?;
        }
        for &d in &grid.ds {
            positive("--d", d)?;
        }
        for &p in &grid.ps {
            fraction("--p", p)?;
        }
        if !(a.holdout > 0.0 && a.holdout < 1.0) {
            bail!(
                "--holdout: {} is not a fraction strictly between 0 and 1",
                a.holdout
            );
        }
        for (flag, v) in [("--save-k", a.save_k), ("--save-d", a.save_d)] {
            if let Some(v) = v {
                positive(flag, v)?;
            }
        }
        if let Some(p) = a.save_p {
            fraction("--save-p", p)?;
        }
        let settings = pruning::PruningSettings {
            grid,
            seed: a.seed,
            batch: positive("--batch", a.batch)?,
            control: !a.no_control,
            bootstrap: bootstrap("--bootstrap", a.bootstrap)?,
        };
        let save = a.save_model.map(|path| SavePlan {
            path,
            class: a.save_class,
            k: a.save_k,
            p: a.save_p,
            d: a.save_d,
        });
        Ok(PrunePlan {
            results: a.results,
            model: model_spec(&a.model)?,
            out: a.out,
            settings,
            holdout: a.holdout,
            eval: a.eval,
            eval_labels: a.eval_labels,
            save,
            force: a.force,
        })
    }
}
