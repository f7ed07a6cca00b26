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

use super::args::{GeluArg, ModelArgs, Precision};
use crate::limits::Limits;
use crate::model::Gelu;
use crate::setup::ModelSpec;
use anyhow::{bail, Result};

/// The model `--model` and its companion flags name; their ranges that need no model are
/// checked here (the image size against the patch size once the model is loaded).
fn model_spec(a: &ModelArgs) -> Result<ModelSpec> {
    if let Some(s) = a.image_size {
        positive("--image-size", s)?;
    }
    if let Some(h) = a.heads {
        positive("--heads", h)?;
    }
    if let Some(e) = a.ln_eps.filter(|e| !(e.is_finite() && *e > 0.0)) {
        bail!("--ln-eps: {e} is not a positive finite number (LayerNorm epsilon, e.g. 1e-6)");
    }
    precision(a.dtype, a.cuda)?;
    Ok(ModelSpec {
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
        limits: limits()?,
    })
}

/// `--dtype`/`--precision`: the reduced-precision modes are GPU modes. TF32 is a switch of
/// cuBLAS's f32 GEMMs; bf16 would need the device-generic block's matrix products in f32 on the
/// CPU (candle 0.11 has no bf16 matmul there), and this CPU has no AVX512-BF16 to make it pay.
pub(crate) fn precision(p: Precision, cuda: bool) -> Result<Precision> {
    if p.reduced() && !cuda {
        bail!("--precision/--dtype {p}: a GPU mode; add --cuda (on the CPU: f32 or f64)");
    }
    Ok(p)
}

/// The allocation caps: the defaults, or what the `NEURONPATH_MAX_*` variables set. The
/// environment is read here, at the command line's edge, never by the library.
fn limits() -> Result<Limits> {
    Limits::from_env().map_err(anyhow::Error::msg)
}

/// Most Riemann steps: memory of the gradients kept per image grows with m (the paper uses 20,
/// integrated gradients rarely more than 300).
pub const MAX_STEPS: usize = 1024;

/// Riemann steps in 1..=[`MAX_STEPS`], or the flag's name in the error.
fn steps(flag: &str, m: usize) -> Result<usize> {
    if m == 0 || m > MAX_STEPS {
        bail!("{flag}: {m} steps; must be in 1..={MAX_STEPS} (the paper uses 20)");
    }
    Ok(m)
}

/// Fewest bootstrap resamples: a 95% percentile interval from fewer is its sample's extremes.
pub const MIN_BOOTSTRAP: usize = 100;

/// Bootstrap resamples, at least [`MIN_BOOTSTRAP`].
fn bootstrap(flag: &str, n: usize) -> Result<usize> {
    if n < MIN_BOOTSTRAP {
        bail!("{flag}: {n} resamples cannot give a 95% interval; use at least {MIN_BOOTSTRAP} (default 1000)");
    }
    Ok(n)
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
