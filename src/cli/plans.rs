//! The second stage of the command line: each command's clap arguments resolved into a
//! validated plan. Every default that is not a plain flag value and every check of a flag lives
//! here, one `resolve` function per plan, each error one line naming the flag.
use super::{ablate, atlas, discover, prune, report};
use crate::attribution::discover::{Method, TargetKind};
use crate::experiments::full_report::ReportOptions;
use crate::experiments::manipulation;
use crate::experiments::pruning::{self, Grid};
use crate::io::shard::Shard;
use crate::model::Objective;
use crate::setup::ModelSpec;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// `neuronpath discover`, resolved.
#[derive(Clone, Debug)]
pub struct DiscoverPlan {
    pub model: ModelSpec,
    /// Input paths; empty: the embedded samples.
    pub inputs: Vec<PathBuf>,
    pub labels: Option<PathBuf>,
    pub out: PathBuf,
    pub steps: usize,
    pub top_k: usize,
    /// Sorted, without duplicates.
    pub methods: Vec<Method>,
    /// `--target`, defaulted: the label, or the single score of a direction.
    pub target: TargetKind,
    /// What F is; checked against the model once it is loaded (its output width).
    pub objective: Objective,
    /// `None`: the CLS row (all patch rows for mean-pooled models).
    pub neuron_token: Option<discover::NeuronToken>,
    pub compat: bool,
    pub seed: u64,
    /// Images per batch.
    pub batch: usize,
    /// Peak memory of one clamped pass in bytes (`None`: the device's default).
    pub memory_limit: Option<usize>,
    /// From `--shard`, else from a Slurm job array.
    pub shard: Option<Shard>,
    pub per_class: Option<usize>,
    pub reference_layout: Option<PathBuf>,
    /// Where the report goes when done (`None`: no report).
    pub report: Option<PathBuf>,
    pub stop_after: Option<usize>,
}

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

/// At least one, or the flag's name in the error.
fn positive(flag: &str, v: usize) -> Result<usize> {
    if v == 0 {
        bail!("{flag}: must be at least 1");
    }
    Ok(v)
}

/// Checks `discover`'s flags and fills in what they leave open.
pub fn discover(a: discover::Args) -> Result<DiscoverPlan> {
    positive("--steps", a.steps)?;
    positive("--top-k", a.top_k)?;
    positive("--batch", a.batch)?;
    if let Some(n) = a.per_class {
        positive("--per-class", n)?;
    }
    let memory_limit = match a.memory_limit_mb {
        Some(mb) => Some(
            positive("--memory-limit-mb", mb)?
                .checked_mul(1 << 20)
                .ok_or_else(|| anyhow::anyhow!("--memory-limit-mb: {mb} MiB is too large"))?,
        ),
        None => None,
    };
    let mut methods = a.methods.clone();
    methods.sort();
    methods.dedup();
    if methods.is_empty() {
        bail!("--methods: name at least one method");
    }
    let objective = match (&a.direction, a.objective) {
        (Some(path), discover::ObjectiveArg::Prob) => Objective::Direction {
            source: path.display().to_string(),
            vector: read_direction(path)?,
        },
        (Some(_), _) => bail!("--direction: F is then the dot product; drop --objective"),
        (None, discover::ObjectiveArg::Prob) => Objective::Prob,
        (None, discover::ObjectiveArg::Logit) => Objective::Logit,
        (None, discover::ObjectiveArg::LogitDiff(a)) => Objective::LogitDiff { against: a },
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
        model: a.model.spec(),
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
        shard: match a.shard {
            Some(s) => Some(s),
            None => Shard::from_env().map_err(anyhow::Error::msg)?,
        },
        per_class: a.per_class,
        reference_layout: a.reference_layout,
        report,
        stop_after: a.stop_after,
    })
}

/// `neuronpath ablate`, resolved.
#[derive(Clone, Debug)]
pub struct AblatePlan {
    pub results: PathBuf,
    pub model: ModelSpec,
    pub out: PathBuf,
    /// Its seed is `--seed`, else the run's (set when the results are read).
    pub settings: manipulation::ManipulationSettings,
    pub seed: Option<u64>,
}

/// Checks `ablate`'s flags.
pub fn ablate(a: ablate::Args) -> Result<AblatePlan> {
    if let Some(f) = a.factors.iter().find(|f| !f.is_finite()) {
        bail!("--factors: {f} is not a finite number");
    }
    if a.factors.is_empty() {
        bail!("--factors: give at least one factor");
    }
    positive("--batch", a.batch)?;
    Ok(AblatePlan {
        results: a.results,
        model: a.model.spec(),
        out: a.out,
        settings: manipulation::ManipulationSettings {
            factors: a.factors,
            all_k: a.all_k,
            seed: a.seed.unwrap_or(0),
            bootstrap: a.bootstrap,
            batch: a.batch,
        },
        seed: a.seed,
    })
}

/// `neuronpath atlas`, resolved.
#[derive(Clone, Debug)]
pub struct AtlasPlan {
    pub results: PathBuf,
    pub method: Method,
    pub out: PathBuf,
    pub max_classes: usize,
}

/// Checks `atlas`'s flags.
pub fn atlas(a: atlas::Args) -> Result<AtlasPlan> {
    Ok(AtlasPlan {
        results: a.results,
        method: a.method,
        out: a.out,
        max_classes: positive("--max-classes", a.max_classes)?,
    })
}

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
}

fn fraction(flag: &str, p: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&p) {
        bail!("{flag}: {p} is not a fraction in [0, 1] (0.3 = 30%)");
    }
    Ok(p)
}

/// Checks `prune`'s flags; the grid defaults to the authors'.
pub fn prune(a: prune::Args) -> Result<PrunePlan> {
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
    if let Some(p) = a.save_p {
        fraction("--save-p", p)?;
    }
    let settings = pruning::PruningSettings {
        grid,
        seed: a.seed,
        batch: positive("--batch", a.batch)?,
        control: !a.no_control,
        bootstrap: a.bootstrap,
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
        model: a.model.spec(),
        out: a.out,
        settings,
        holdout: a.holdout,
        eval: a.eval,
        eval_labels: a.eval_labels,
        save,
    })
}

/// `neuronpath report`, resolved.
#[derive(Clone, Debug)]
pub struct ReportPlan {
    pub results: PathBuf,
    pub model: ModelSpec,
    pub out: PathBuf,
    pub options: ReportOptions,
}

/// Checks `report`'s flags.
pub fn report(a: report::Args) -> Result<ReportPlan> {
    let defaults = ReportOptions::default();
    let look_alike = match &a.look_alike {
        Some(s) => parse_groups(s)?,
        None => Vec::new(),
    };
    Ok(ReportPlan {
        results: a.results,
        model: a.model.spec(),
        out: a.out,
        options: ReportOptions {
            ablate: a.ablate,
            prune: a.prune,
            use_model: !a.no_model,
            compute_pruning: !a.no_prune,
            look_alike,
            max_images: a.max_images.unwrap_or(defaults.max_images),
            ..defaults
        },
    })
}

/// `"0,2,4;5,7"`: groups of two or more class indices.
fn parse_groups(s: &str) -> Result<Vec<Vec<usize>>> {
    s.split(';')
        .map(|g| {
            let v = g
                .split(',')
                .map(|c| c.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>();
            match v {
                Ok(v) if v.len() >= 2 => Ok(v),
                _ => bail!("--look-alike: `{g}` is not a group of two or more class indices"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_groups;

    #[test]
    fn look_alike_groups() {
        assert_eq!(
            parse_groups("0, 2,4;5,7").unwrap(),
            vec![vec![0, 2, 4], vec![5, 7]]
        );
        for bad in ["", "1", "1,x", "1,2;3", "1,,2"] {
            let e = parse_groups(bad).unwrap_err().to_string();
            assert!(e.starts_with("--look-alike"), "{e}");
        }
    }
}
