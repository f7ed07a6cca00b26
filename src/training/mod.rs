//! Training a ViT on Fashion-MNIST with neuronpath's own forward pass (`Mode::Train`: the same
//! architecture code that runs every checkpoint), how the embedded model was made.
//!
//! Recipe: AdamW with weight decay on matrices only, linear warm-up then cosine decay (the rate is
//! set every step), cross-entropy, random shifts and flips, timm-style initialisation. Every random
//! draw comes from ChaCha8 seeded with the recipe's seed: stream 0 initialises the weights, stream
//! `1 + e` shuffles and augments epoch `e`, so resuming from a checkpoint repeats exactly what an
//! uninterrupted run does.
mod adamw;
mod atomic;
mod augment;
mod card;
mod checkpoint;
mod params;
pub mod probe;

pub use augment::Augment;
pub use card::model_card;
pub use checkpoint::recipe as checkpoint_recipe;
pub use checkpoint::FILES as CHECKPOINT_FILES;
pub use params::Params;

use crate::io::fashion_mnist::{DataError, FashionMnist, CLASS_NAMES, MEAN, SIDE, STD};
use crate::model::config::VitConfig;
use crate::model::load::ModelError;
use crate::model::save::{save_hf, Preprocessing};
use crate::model::vit::Vit;
use crate::model::Mode;
use adamw::AdamW;
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A training problem.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("invalid recipe: {0}")]
    Recipe(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The architecture of a trained model (input 28x28 RGB, 10 classes, CLS token, pre-LN, erf GELU).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    pub patch_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_dim: usize,
}

impl Arch {
    /// The shipped model: 16 patches of 7x7 + CLS, width 64, 6 blocks of 4 heads, MLP 256.
    pub const EMBEDDED: Arch = Arch {
        patch_size: 7,
        hidden: 64,
        layers: 6,
        heads: 4,
        mlp_dim: 256,
    };

    pub fn config(&self) -> VitConfig {
        let sizes = (self.hidden, self.mlp_dim, self.heads, self.layers);
        VitConfig::vit((SIDE, self.patch_size), sizes, CLASS_NAMES.len())
    }
}

/// Everything that determines a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub arch: Arch,
    pub epochs: usize,
    pub batch: usize,
    /// Peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub augment: AugmentRecipe,
    pub seed: u64,
    /// Train on the first `limit` training images only (tests, timing).
    pub limit: Option<usize>,
}

/// Serialisable form of [`Augment`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AugmentRecipe {
    pub max_shift: usize,
    pub flip: bool,
}

impl Default for Recipe {
    /// The recipe of the shipped model.
    fn default() -> Self {
        Recipe {
            arch: Arch::EMBEDDED,
            epochs: 20,
            batch: 128,
            lr: 2e-3,
            min_lr: 1e-5,
            weight_decay: 0.05,
            warmup_epochs: 1.0,
            augment: AugmentRecipe {
                max_shift: 2,
                flip: true,
            },
            seed: 0,
            limit: None,
        }
    }
}

impl Recipe {
    fn check(&self, n: usize) -> Result<(), TrainError> {
        let a = &self.arch;
        let bad = |m: String| Err(TrainError::Recipe(m));
        if a.patch_size == 0 || !SIDE.is_multiple_of(a.patch_size) {
            return bad(format!(
                "patch size {} does not divide {SIDE}",
                a.patch_size
            ));
        }
        if a.heads == 0 || !a.hidden.is_multiple_of(a.heads) {
            return bad(format!(
                "hidden size {} is not a multiple of {} heads",
                a.hidden, a.heads
            ));
        }
        if self.epochs == 0 || self.batch == 0 || n == 0 {
            return bad("epochs, batch size and training images must be positive".into());
        }
        Ok(())
    }

    /// Optimizer steps per epoch (the last batch of an epoch may be smaller).
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch)
    }

    /// Learning rate of step `step` (0-based) out of `total`: linear warm-up from lr/warmup to lr,
    /// then cosine decay to `min_lr`.
    pub fn learning_rate(&self, step: usize, steps_per_epoch: usize) -> f64 {
        let total = self.epochs * steps_per_epoch;
        let warm = ((self.warmup_epochs * steps_per_epoch as f64).round() as usize).min(total);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let span = (total - warm).max(1) as f64;
        let progress = ((step - warm) as f64 / span).min(1.0);
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Statistics of one finished epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss and accuracy over the epoch (augmented images, weights changing).
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
}

/// A trained (or partly trained) model.
pub struct Trained {
    pub params: Params,
    pub history: Vec<EpochStats>,
}

impl Trained {
    /// The trained model, detached from the training graph.
    pub fn vit(&self) -> Vit {
        self.params.frozen_vit()
    }
    /// Training time summed over epochs, including epochs run before a resume.
    pub fn seconds(&self) -> f64 {
        self.history.iter().map(|h| h.seconds).sum()
    }
}

/// A ChaCha8 generator on its own stream of the seed.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// How to run [`train`].
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue from the checkpoint instead of starting afresh.
    pub resume: bool,
    /// Progress bar on stderr (plain lines when stderr is not a terminal), one line per epoch.
    pub progress: bool,
    /// Stop once this many epochs are done (the schedule still spans `recipe.epochs`); resume later.
    pub stop_after: Option<usize>,
}

/// Trains on `data` (already limited to `recipe.limit`), checkpointing into `ckpt_dir` after each
/// epoch.
pub fn train(
    recipe: &Recipe,
    data: &FashionMnist,
    ckpt_dir: &Path,
    opts: &TrainOptions,
) -> Result<Trained, TrainError> {
    let (resume, progress) = (opts.resume, opts.progress);
    recipe.check(data.len())?;
    let device = Device::Cpu;
    let cfg = recipe.arch.config();
    let (params, mut opt, mut history) = if resume {
        let c = checkpoint::load(ckpt_dir, recipe, &device)?;
        (c.params, c.opt, c.history)
    } else {
        let params = Params::init(&cfg, &mut rng(recipe.seed, 0), &device)?;
        let opt = AdamW::new(&params, recipe.lr, recipe.weight_decay)?;
        (params, opt, Vec::new())
    };
    let vit = params.vit();
    let n = data.len();
    let steps = recipe.steps_per_epoch(n);
    let aug = Augment {
        max_shift: recipe.augment.max_shift,
        flip: recipe.augment.flip,
    };
    // Without a terminal (a log file) the bar is replaced by a line every fifth of an epoch.
    let tty = progress && std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::with_draw_target(
            Some((recipe.epochs * steps) as u64),
            ProgressDrawTarget::stderr(),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} elapsed {elapsed} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position((history.len() * steps) as u64);
    bar.reset_eta();
    let say = |line: String| {
        if progress {
            bar.suspend(|| eprintln!("{line}"));
        }
    };
    if resume {
        say(format!(
            "resumed from {} after epoch {}",
            ckpt_dir.display(),
            history.len()
        ));
    }
    let last = opts.stop_after.unwrap_or(recipe.epochs).min(recipe.epochs);
    for epoch in history.len()..last {
        let start = Instant::now();
        let mut r = rng(recipe.seed, 1 + epoch as u64);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut r);
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, recipe.epochs));
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        for (s, idx) in order.chunks(recipe.batch).enumerate() {
            opt.lr = recipe.learning_rate(epoch * steps + s, steps);
            let (x, y) = augment::batch(data, idx, aug, &mut r, &device)?;
            let logits = vit.forward(&x, &[], None, Mode::Train)?.logits;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let grads = loss.backward()?;
            opt.step(&params, &grads)?;
            let hits = logits.argmax(1)?.eq(&y)?.to_dtype(DType::F32)?.sum_all()?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
            correct += hits.to_scalar::<f32>()? as usize;
            seen += idx.len();
            if !loss_sum.is_finite() {
                return Err(TrainError::Recipe(format!(
                    "loss diverged at epoch {} step {s}; lower the learning rate",
                    epoch + 1
                )));
            }
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% lr {:.2e}",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                opt.lr
            ));
            bar.inc(1);
            if progress && !tty && (s + 1) % steps.div_ceil(5) == 0 && s + 1 < steps {
                eprintln!(
                    "epoch {}/{} step {}/{steps}: loss {:.4}, accuracy {:.2}%, {:.0} s",
                    epoch + 1,
                    recipe.epochs,
                    s + 1,
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        let stats = EpochStats {
            epoch: epoch + 1,
            loss: loss_sum / seen as f64,
            accuracy: correct as f64 / seen as f64,
            seconds: start.elapsed().as_secs_f64(),
        };
        say(format!(
            "epoch {}/{}: loss {:.4}, train accuracy {:.2}%, {:.0} s",
            stats.epoch,
            recipe.epochs,
            stats.loss,
            100.0 * stats.accuracy,
            stats.seconds
        ));
        history.push(stats);
        checkpoint::save(ckpt_dir, recipe, &params, &opt, &history)?;
    }
    bar.finish_and_clear();
    Ok(Trained { params, history })
}

/// Per-class results of an evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub correct: Vec<usize>,
    pub total: Vec<usize>,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        self.correct.iter().sum::<usize>() as f64 / self.total.iter().sum::<usize>().max(1) as f64
    }
    pub fn class_accuracy(&self, class: usize) -> f64 {
        self.correct[class] as f64 / self.total[class].max(1) as f64
    }
}

/// Accuracy of `model` on `data` (no augmentation), in batches of `batch` images.
pub fn evaluate(model: &Vit, data: &FashionMnist, batch: usize) -> Result<Evaluation, TrainError> {
    let classes = model.cfg.num_classes;
    let mut ev = Evaluation {
        correct: vec![0; classes],
        total: vec![0; classes],
    };
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch.max(1)) {
        let x = data.batch(idx, model.device())?;
        let logits = model.forward(&x, &[], None, Mode::Frozen)?.logits;
        let pred: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        for (&i, &p) in idx.iter().zip(&pred) {
            let label = data.labels[i] as usize;
            ev.total[label] += 1;
            ev.correct[label] += (p as usize == label) as usize;
        }
    }
    Ok(ev)
}

/// The normalisation the models trained here expect.
pub fn preprocessing() -> Preprocessing {
    Preprocessing {
        image_mean: [MEAN as f64; 3],
        image_std: [STD as f64; 3],
        size: SIDE,
    }
}

/// Writes the Hugging Face folder of a trained model and its model card (`README.md`).
pub fn write_model(
    dir: &Path,
    trained: &Trained,
    recipe: &Recipe,
    test: &Evaluation,
    command: &str,
) -> Result<(), TrainError> {
    let names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    let vit = trained.vit();
    save_hf(&vit, dir, Some(&names), &preprocessing())?;
    let card = model_card(recipe, trained, test, command);
    let path = dir.join("README.md");
    crate::model::save::write(&path, card.as_bytes())?;
    Ok(())
}

/// A fresh, untrained model of `arch` (tests, round trips).
pub fn init_model(arch: &Arch, seed: u64) -> Result<Vit, TrainError> {
    Ok(Params::init(&arch.config(), &mut rng(seed, 0), &Device::Cpu)?.frozen_vit())
}

/// Loss of `model` on images `indices` without augmentation (tests, diagnostics).
pub fn loss(model: &Vit, data: &FashionMnist, indices: &[usize]) -> Result<f64, TrainError> {
    let x = data.batch(indices, model.device())?;
    let y = Tensor::new(
        indices
            .iter()
            .map(|&i| data.labels[i] as u32)
            .collect::<Vec<_>>(),
        model.device(),
    )?;
    let logits = model.forward(&x, &[], None, Mode::Frozen)?.logits;
    Ok(candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()? as f64)
}
