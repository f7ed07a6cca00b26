//! `train`'s flags resolved: what to do (export the samples, or train), and the recipe options
//! given on the command line, each checked.
use super::positive;
use crate::cli::args::TrainArgs;
use crate::setup::ModelSpec;
use crate::training::probe::ProbeRecipe;
use crate::training::Recipe;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// `neuronpath train`, resolved.
#[derive(Clone, Debug)]
pub struct TrainPlan {
    /// Folder with the Fashion-MNIST IDX .gz files.
    pub data: PathBuf,
    /// Output folder: `checkpoint/` and `model/`.
    pub out: PathBuf,
    /// Replace files under `out` that are not train's own outputs.
    pub force: bool,
    pub work: TrainWork,
}

/// What `train` does.
#[derive(Clone, Debug)]
pub enum TrainWork {
    /// Write the first `per_class` test images of each class as PNGs, and the class names.
    ExportSamples { dir: PathBuf, per_class: usize },
    /// Train (or continue training) a model.
    Train {
        /// The recipe options given; the rest come from the default recipe or the checkpoint.
        overrides: RecipeOverrides,
        /// Continue from `out/checkpoint` (the options given must match its recipe).
        resume: bool,
        /// Stop after this many epochs (checkpointed).
        stop_after: Option<usize>,
    },
    /// A linear probe on a frozen backbone (`--backbone --head-only`).
    Probe {
        backbone: ModelSpec,
        recipe: ProbeRecipe,
        /// Train on the first N training images.
        limit: Option<usize>,
        /// Measure on the first N test images.
        test_limit: Option<usize>,
        /// Replace an existing `out/model`.
        force: bool,
    },
}

/// The recipe options set on the command line (`None`: the base recipe's).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecipeOverrides {
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    pub lr: Option<f64>,
    pub wd: Option<f64>,
    pub warmup_epochs: Option<f64>,
    pub seed: Option<u64>,
    pub limit: Option<usize>,
    pub patch_size: Option<usize>,
    pub hidden: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub mlp_dim: Option<usize>,
}

impl RecipeOverrides {
    /// `base` with every option given applied.
    pub fn apply(&self, base: Recipe) -> Recipe {
        let mut r = base;
        let a = &mut r.arch;
        a.patch_size = self.patch_size.unwrap_or(a.patch_size);
        a.hidden = self.hidden.unwrap_or(a.hidden);
        a.layers = self.layers.unwrap_or(a.layers);
        a.heads = self.heads.unwrap_or(a.heads);
        a.mlp_dim = self.mlp_dim.unwrap_or(a.mlp_dim);
        r.epochs = self.epochs.unwrap_or(r.epochs);
        r.batch = self.batch.unwrap_or(r.batch);
        r.lr = self.lr.unwrap_or(r.lr);
        r.weight_decay = self.wd.unwrap_or(r.weight_decay);
        r.warmup_epochs = self.warmup_epochs.unwrap_or(r.warmup_epochs);
        r.seed = self.seed.unwrap_or(r.seed);
        r.limit = self.limit.or(r.limit);
        r
    }
}

/// A flag that must be a finite number, at least 0 (or above 0 when `strict`).
fn non_negative(flag: &str, v: Option<f64>, strict: bool) -> Result<Option<f64>> {
    if let Some(x) = v {
        if !x.is_finite() || x < 0.0 || (strict && x == 0.0) {
            let want = if strict { "above 0" } else { "at least 0" };
            bail!("{flag}: {x} is not a finite number {want}");
        }
    }
    Ok(v)
}

impl TrainPlan {
    /// Checks `train`'s flags.
    pub fn resolve(a: TrainArgs) -> Result<Self> {
        let some_positive = |flag: &str, v: Option<usize>| -> Result<Option<usize>> {
            v.map(|n| positive(flag, n)).transpose()
        };
        if a.head_only {
            let defaults = ProbeRecipe::default();
            let Some(path) = a.backbone else {
                bail!("--head-only needs --backbone");
            };
            let recipe = ProbeRecipe {
                input: a.probe_input,
                epochs: some_positive("--epochs", a.epochs)?.unwrap_or(defaults.epochs),
                batch: some_positive("--batch", a.batch)?.unwrap_or(defaults.batch),
                lr: non_negative("--lr", a.lr, true)?.unwrap_or(defaults.lr),
                weight_decay: non_negative("--wd", a.wd, false)?.unwrap_or(defaults.weight_decay),
                seed: a.seed.unwrap_or(defaults.seed),
            };
            if a.dtype.reduced() {
                bail!(
                    "--dtype: {} needs a GPU; train runs on the CPU in f32 or f64",
                    a.dtype
                );
            }
            let backbone = ModelSpec {
                path: Some(path),
                normalize: a.normalize,
                dtype: a.dtype,
                image_size: some_positive("--image-size", a.image_size)?,
                limits: super::limits()?,
                ..ModelSpec::default()
            };
            return Ok(TrainPlan {
                data: a.data,
                out: a.out,
                force: a.force,
                work: TrainWork::Probe {
                    backbone,
                    recipe,
                    limit: some_positive("--limit", a.limit)?,
                    test_limit: some_positive("--test-limit", a.test_limit)?,
                    force: a.force,
                },
            });
        }
        let work = match a.export_samples {
            Some(dir) => TrainWork::ExportSamples {
                dir,
                per_class: positive("--per-class", a.per_class)?,
            },
            None => TrainWork::Train {
                overrides: RecipeOverrides {
                    epochs: some_positive("--epochs", a.epochs)?,
                    batch: some_positive("--batch", a.batch)?,
                    lr: non_negative("--lr", a.lr, true)?,
                    wd: non_negative("--wd", a.wd, false)?,
                    warmup_epochs: non_negative("--warmup-epochs", a.warmup_epochs, false)?,
                    seed: a.seed,
                    limit: some_positive("--limit", a.limit)?,
                    patch_size: some_positive("--patch-size", a.patch_size)?,
                    hidden: some_positive("--hidden", a.hidden)?,
                    layers: some_positive("--layers", a.layers)?,
                    heads: some_positive("--heads", a.heads)?,
                    mlp_dim: some_positive("--mlp-dim", a.mlp_dim)?,
                },
                resume: a.resume,
                stop_after: some_positive("--stop-after", a.stop_after)?,
            },
        };
        Ok(TrainPlan {
            data: a.data,
            out: a.out,
            force: a.force,
            work,
        })
    }
}
