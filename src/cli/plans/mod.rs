//! The second stage of the command line: each command's clap arguments resolved into a
//! validated plan. Every default that is not a plain flag value and every check of a flag lives
//! here, one `resolve` function per plan, each error one line naming the flag.
mod ablate;
mod atlas;
mod bench;
mod discover;
mod eval;
mod explain;
mod inspect;
mod merge;
mod predict;
mod prune;
mod report;
mod train;

pub use ablate::AblatePlan;
pub use atlas::AtlasPlan;
pub use bench::BenchPlan;
pub use discover::DiscoverPlan;
pub use eval::EvalPlan;
pub use explain::ExplainPlan;
pub use inspect::InspectPlan;
pub use merge::MergePlan;
pub use predict::PredictPlan;
pub use prune::{PrunePlan, SavePlan};
pub use report::ReportPlan;
pub use train::{RecipeOverrides, TrainPlan, TrainWork};

use super::args::{GeluArg, ModelArgs};
use crate::model::Gelu;
use crate::setup::ModelSpec;
use anyhow::{bail, Result};

/// The model `--model` and its companion flags name.
fn model_spec(a: &ModelArgs) -> ModelSpec {
    ModelSpec {
        path: a.model.clone(),
        normalize: a.normalize,
        dtype: a.dtype,
        image_size: a.image_size,
        heads: a.heads,
        gelu: a.gelu.map(|g| match g {
            GeluArg::Erf => Gelu::Erf,
            GeluArg::Tanh => Gelu::Tanh,
            GeluArg::Quick => Gelu::Quick,
        }),
        ln_eps: a.ln_eps,
        cuda: a.cuda,
    }
}

/// At least one, or the flag's name in the error.
fn positive(flag: &str, v: usize) -> Result<usize> {
    if v == 0 {
        bail!("{flag}: must be at least 1");
    }
    Ok(v)
}

fn fraction(flag: &str, p: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&p) {
        bail!("{flag}: {p} is not a fraction in [0, 1] (0.3 = 30%)");
    }
    Ok(p)
}

/// `--memory-limit-mb` in bytes (`None`: the device's default, chosen once the model is loaded).
fn memory_limit(mb: Option<usize>) -> Result<Option<usize>> {
    match mb {
        Some(mb) => Ok(Some(
            positive("--memory-limit-mb", mb)?
                .checked_mul(1 << 20)
                .ok_or_else(|| anyhow::anyhow!("--memory-limit-mb: {mb} MiB is too large"))?,
        )),
        None => Ok(None),
    }
}
