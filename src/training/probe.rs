//! A linear probe on a frozen backbone (`neuronpath train --backbone DIR --head-only`): the
//! backbone's features of Fashion-MNIST images (upsampled to its input size, grey to RGB, the
//! same pipeline `discover` runs on the exported PNGs), cached to a file, then a softmax
//! regression trained on them; the result is the backbone with that head, a classifier the
//! attribution commands can explain.
//!
//! The regression runs on standardised features (f64, AdamW, cosine decay, ChaCha8-seeded
//! shuffles) and the standardisation is folded into the written head, so the model computes
//! `W x + b` on the backbone's raw features.
use super::TrainError;
use crate::io::fashion_mnist::{FashionMnist, CLASS_NAMES, SIDE};
use crate::io::preprocess::{preprocess_rgb, Normalization};
use crate::model::config::Pool;
use crate::model::load::{Family, ModelError};
use crate::model::ops::Linear;
use crate::model::save::{save_hf, Preprocessing};
use crate::model::save_dinov2::save_hf_dinov2;
use crate::model::vit::Vit;
use crate::model::{Mode, Objective};
use candle_core::{DType, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

/// What the head reads from the backbone's final tokens (after its final LayerNorm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeInput {
    /// The CLS token (the "frozen CLS features").
    Cls,
    /// `[CLS, mean of the patch tokens]`, DINOv2's own linear-evaluation input and
    /// `Dinov2ForImageClassification`'s head.
    ClsMeanPatch,
}

impl ProbeInput {
    fn pool(self) -> Pool {
        match self {
            ProbeInput::Cls => Pool::Cls,
            ProbeInput::ClsMeanPatch => Pool::ClsMeanPatch,
        }
    }
    /// Feature width for a backbone of hidden size `d`.
    pub fn width(self, d: usize) -> usize {
        match self {
            ProbeInput::Cls => d,
            ProbeInput::ClsMeanPatch => 2 * d,
        }
    }
}

/// How the head is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecipe {
    pub input: ProbeInput,
    pub epochs: usize,
    pub batch: usize,
    /// Peak AdamW learning rate (cosine decay to zero over the run).
    pub lr: f64,
    /// Decoupled weight decay of the weight matrix.
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for ProbeRecipe {
    fn default() -> Self {
        ProbeRecipe {
            input: ProbeInput::Cls,
            epochs: 100,
            batch: 256,
            lr: 1e-3,
            weight_decay: 1e-4,
            seed: 0,
        }
    }
}

impl ProbeRecipe {
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Recipe(m));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr {} is not a positive number", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "--wd {} is not a non-negative number",
                self.weight_decay
            ));
        }
        Ok(())
    }
}

/// Features (n, dim) row-major with their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub dim: usize,
    pub values: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Features {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

/// The backbone as a feature extractor: its pooled final tokens, unprojected (an identity head).
fn extractor(backbone: &Vit, input: ProbeInput) -> candle_core::Result<Vit> {
    let mut m = backbone.clone();
    let f = input.width(m.cfg.hidden);
    m.cfg.pool = input.pool();
    m.cfg.embedding = true;
    m.cfg.num_classes = f;
    m.head = Linear::new(Tensor::eye(f, backbone.dtype(), backbone.device())?, None);
    m.head_dist = None;
    m.objective = Objective::default();
    Ok(m)
}

/// The preprocessed (3, size, size) pixels of image `i`: grey replicated to RGB, resized with
/// PIL's bilinear filter, normalised, exactly as an exported PNG is read by `discover`.
pub fn pixels(data: &FashionMnist, i: usize, size: usize, norm: Normalization) -> Vec<f32> {
    let rgb: Vec<u8> = data.image(i).iter().flat_map(|&v| [v, v, v]).collect();
    let img = image::RgbImage::from_raw(SIDE as u32, SIDE as u32, rgb).expect("28x28x3 bytes");
    preprocess_rgb(&img, size as u32, norm)
}

/// Images per forward pass while extracting features.
const EXTRACT_BATCH: usize = 16;

/// The backbone's features of every image of `data`, with a progress bar and ETA on stderr.
pub fn extract(
    backbone: &Vit,
    data: &FashionMnist,
    input: ProbeInput,
    norm: Normalization,
    what: &str,
    progress: bool,
) -> Result<Features, TrainError> {
    let m = extractor(backbone, input)?;
    let (size, dim) = (backbone.cfg.image_size, input.width(backbone.cfg.hidden));
    let bar = bar(progress, data.len() as u64, what);
    let mut values = Vec::with_capacity(data.len() * dim);
    let all: Vec<usize> = (0..data.len()).collect();
    // Without a terminal (a log file) the bar is replaced by a line every tenth of the images.
    let lines = progress && !std::io::stderr().is_terminal();
    let (start, every) = (Instant::now(), data.len().div_ceil(10).max(1));
    let mut done = 0usize;
    for idx in all.chunks(EXTRACT_BATCH) {
        let buf: Vec<f32> = idx
            .iter()
            .flat_map(|&i| pixels(data, i, size, norm))
            .collect();
        let x = Tensor::from_vec(buf, (idx.len(), 3, size, size), backbone.device())?
            .to_dtype(backbone.dtype())?;
        let out = m.forward(&x, &[], None, Mode::Frozen)?.logits;
        values.extend(out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        bar.inc(idx.len() as u64);
        let before = done;
        done += idx.len();
        if lines && (done / every > before / every || done == data.len()) {
            let t = start.elapsed().as_secs_f64();
            eprintln!(
                "{what}: {done}/{} images, {t:.0} s, ETA {:.0} s",
                data.len(),
                t / done as f64 * (data.len() - done) as f64
            );
        }
    }
    bar.finish_and_clear();
    Ok(Features {
        dim,
        values,
        labels: data.labels.clone(),
    })
}

fn bar(progress: bool, len: u64, what: &str) -> ProgressBar {
    let bar = if progress && std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} elapsed {elapsed} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// What the features of `data` depend on: the backbone's weights and configuration, the
/// element type, the input pipeline and the images themselves.
pub fn cache_key(
    backbone: &Vit,
    data: &FashionMnist,
    input: ProbeInput,
    norm: Normalization,
) -> Result<String, TrainError> {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&backbone.cfg).expect("config serialises"));
    h.update(format!("{:?} {input:?} {norm}", backbone.dtype()).as_bytes());
    let mut tensors: Vec<&Tensor> = vec![&backbone.patch.weight, &backbone.prefix, &backbone.pos];
    tensors.extend(backbone.patch.bias.as_ref());
    if let Some(n) = &backbone.pre_norm {
        tensors.extend([&n.weight, &n.bias]);
    }
    for b in &backbone.blocks {
        for l in [&b.qkv, &b.proj, &b.fc1, &b.fc2] {
            tensors.push(&l.weight);
            tensors.extend(l.bias.as_ref());
        }
        tensors.extend([
            &b.ln_att.weight,
            &b.ln_att.bias,
            &b.ln_ffn.weight,
            &b.ln_ffn.bias,
        ]);
        tensors.extend(b.cls_mask.as_ref());
    }
    tensors.extend([&backbone.norm.weight, &backbone.norm.bias]);
    for t in tensors {
        let v = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        h.update(format!("{:?}", t.dims()).as_bytes());
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    h.update(&data.images);
    h.update(&data.labels);
    Ok(format!("{:x}", h.finalize()))
}

/// Features from `path` when it holds those of `key` with `n` rows of `dim`, else `None`.
pub fn read_cache(path: &Path, key: &str, n: usize, dim: usize) -> Option<Features> {
    let bytes = std::fs::read(path).ok()?;
    // Larger than what this cache can hold: not ours, do not parse.
    if bytes.len() > n * (dim * 4 + 1) + (1 << 20) {
        return None;
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    if meta.metadata().as_ref()?.get("key")? != key {
        return None;
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let f = st.tensor("features").ok()?;
    let l = st.tensor("labels").ok()?;
    if f.dtype() != safetensors::Dtype::F32
        || f.shape() != [n, dim]
        || l.dtype() != safetensors::Dtype::U8
        || l.shape() != [n]
    {
        return None;
    }
    let values = f
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Some(Features {
        dim,
        values,
        labels: l.data().to_vec(),
    })
}

/// Writes `features` under `key` to `path` (a temporary file in the same folder, renamed).
pub fn write_cache(path: &Path, key: &str, features: &Features) -> Result<(), TrainError> {
    let err = |msg: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    let n = features.len();
    let f = Tensor::from_vec(
        features.values.clone(),
        (n, features.dim),
        &candle_core::Device::Cpu,
    )?;
    let l = Tensor::from_vec(features.labels.clone(), n, &candle_core::Device::Cpu)?;
    let tensors = HashMap::from([("features".to_string(), f), ("labels".to_string(), l)]);
    // The mark lets `train --out` replace its own cache without --force, and nothing else.
    let meta = HashMap::from([
        ("key".to_string(), key.to_string()),
        (crate::output::MARK_KEY.to_string(), "features".to_string()),
    ]);
    let bytes = safetensors::serialize(&tensors, Some(meta))
        .map_err(|e| err(format!("cannot serialise: {e}")))?;
    crate::output::write_atomic(path, &bytes).map_err(|e| err(e.to_string()))
}

/// Cached features of `data`, computed (and cached) when the cache is missing or stale.
pub fn cached_features(
    cache: &Path,
    backbone: &Vit,
    data: &FashionMnist,
    input: ProbeInput,
    norm: Normalization,
    what: &str,
    progress: bool,
) -> Result<Features, TrainError> {
    let key = cache_key(backbone, data, input, norm)?;
    let dim = input.width(backbone.cfg.hidden);
    if let Some(f) = read_cache(cache, &key, data.len(), dim) {
        if progress {
            eprintln!(
                "{what}: {} cached features from {}",
                f.len(),
                cache.display()
            );
        }
        return Ok(f);
    }
    let start = Instant::now();
    let f = extract(backbone, data, input, norm, what, progress)?;
    if progress {
        eprintln!(
            "{what}: features of {} images in {:.0} s ({:.2} s/image), cached in {}",
            f.len(),
            start.elapsed().as_secs_f64(),
            start.elapsed().as_secs_f64() / f.len().max(1) as f64,
            cache.display()
        );
    }
    write_cache(cache, &key, &f)?;
    Ok(f)
}

/// A trained linear head on raw features: logits = weight . x + bias.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub classes: usize,
    pub dim: usize,
    /// (classes, dim) row-major.
    pub weight: Vec<f64>,
    pub bias: Vec<f64>,
}

impl Probe {
    pub fn logits(&self, x: &[f32]) -> Vec<f64> {
        (0..self.classes)
            .map(|c| {
                let w = &self.weight[c * self.dim..(c + 1) * self.dim];
                self.bias[c] + w.iter().zip(x).map(|(w, &x)| w * x as f64).sum::<f64>()
            })
            .collect()
    }
    pub fn predict(&self, x: &[f32]) -> usize {
        argmax(&self.logits(x))
    }
    /// Fraction of `features` classified correctly.
    pub fn accuracy(&self, features: &Features) -> f64 {
        let hits = (0..features.len())
            .filter(|&i| self.predict(features.row(i)) == features.labels[i] as usize)
            .count();
        hits as f64 / features.len().max(1) as f64
    }
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// One epoch's training loss and accuracy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeEpoch {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
}

/// Softmax regression of `classes` classes on `train` (see the module doc).
pub fn fit(
    train: &Features,
    classes: usize,
    recipe: &ProbeRecipe,
    progress: bool,
) -> Result<(Probe, Vec<ProbeEpoch>), TrainError> {
    recipe.check()?;
    let (n, f) = (train.len(), train.dim);
    if n == 0 {
        return Err(TrainError::Recipe("no training images".into()));
    }
    if let Some(&bad) = train.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(TrainError::Recipe(format!(
            "label {bad} outside the {classes} classes"
        )));
    }
    if train.values.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::Recipe(
            "the backbone gave non-finite features".into(),
        ));
    }
    // Standardise each feature (a constant one is left unscaled).
    let mut mean = vec![0f64; f];
    let mut std = vec![0f64; f];
    for i in 0..n {
        for (m, &x) in mean.iter_mut().zip(train.row(i)) {
            *m += x as f64 / n as f64;
        }
    }
    for i in 0..n {
        for ((s, &x), m) in std.iter_mut().zip(train.row(i)).zip(&mean) {
            *s += (x as f64 - m).powi(2) / n as f64;
        }
    }
    for s in &mut std {
        *s = if *s > 0.0 { s.sqrt() } else { 1.0 };
    }
    let zs: Vec<f64> = (0..n * f)
        .map(|k| (train.values[k] as f64 - mean[k % f]) / std[k % f])
        .collect();

    let p = classes * f + classes;
    let mut theta = vec![0f64; p];
    let (mut m1, mut m2) = (vec![0f64; p], vec![0f64; p]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    let steps_per_epoch = n.div_ceil(recipe.batch);
    let total = recipe.epochs * steps_per_epoch;
    let mut step = 0usize;
    let mut history = Vec::new();
    let mut order: Vec<usize> = (0..n).collect();
    let mut grad = vec![0f64; p];
    let mut logits = vec![0f64; classes];
    let start = Instant::now();
    for epoch in 0..recipe.epochs {
        order.shuffle(&mut super::rng(recipe.seed, 1 + epoch as u64));
        let (mut loss_sum, mut hits) = (0f64, 0usize);
        for idx in order.chunks(recipe.batch) {
            grad.iter_mut().for_each(|g| *g = 0.0);
            for &i in idx {
                let zi = &zs[i * f..(i + 1) * f];
                for (c, l) in logits.iter_mut().enumerate() {
                    let w = &theta[c * f..(c + 1) * f];
                    *l = theta[classes * f + c] + w.iter().zip(zi).map(|(w, z)| w * z).sum::<f64>();
                }
                let y = train.labels[i] as usize;
                hits += usize::from(argmax(&logits) == y);
                let mx = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|l| (l - mx).exp()).sum();
                loss_sum += mx + sum.ln() - logits[y];
                for (c, l) in logits.iter().enumerate() {
                    let d = ((l - mx).exp() / sum - f64::from(u8::from(c == y))) / idx.len() as f64;
                    for (g, z) in grad[c * f..(c + 1) * f].iter_mut().zip(zi) {
                        *g += d * z;
                    }
                    grad[classes * f + c] += d;
                }
            }
            step += 1;
            let lr = 0.5
                * recipe.lr
                * (1.0 + (std::f64::consts::PI * (step - 1) as f64 / total as f64).cos());
            let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
            for k in 0..p {
                m1[k] = b1 * m1[k] + (1.0 - b1) * grad[k];
                m2[k] = b2 * m2[k] + (1.0 - b2) * grad[k] * grad[k];
                if k < classes * f {
                    theta[k] -= lr * recipe.weight_decay * theta[k];
                }
                theta[k] -= lr * (m1[k] / c1) / ((m2[k] / c2).sqrt() + eps);
            }
        }
        let e = ProbeEpoch {
            epoch: epoch + 1,
            loss: loss_sum / n as f64,
            accuracy: hits as f64 / n as f64,
        };
        if !e.loss.is_finite() {
            return Err(TrainError::Recipe(format!(
                "probe loss diverged at epoch {}; lower --lr",
                e.epoch
            )));
        }
        let every = recipe.epochs.div_ceil(10);
        if progress && ((epoch + 1) % every == 0 || epoch + 1 == recipe.epochs) {
            let done = start.elapsed().as_secs_f64();
            eprintln!(
                "probe epoch {}/{}: loss {:.4}, train accuracy {:.2}%, {:.1} s, ETA {:.0} s",
                e.epoch,
                recipe.epochs,
                e.loss,
                100.0 * e.accuracy,
                done,
                done / (epoch + 1) as f64 * (recipe.epochs - epoch - 1) as f64
            );
        }
        history.push(e);
    }
    // Fold the standardisation into the head: w.(x - mean)/std + b.
    let mut weight = vec![0f64; classes * f];
    let mut bias = theta[classes * f..].to_vec();
    for c in 0..classes {
        for j in 0..f {
            let w = theta[c * f + j] / std[j];
            weight[c * f + j] = w;
            bias[c] -= w * mean[j];
        }
    }
    Ok((
        Probe {
            classes,
            dim: f,
            weight,
            bias,
        },
        history,
    ))
}

/// The backbone with `probe` as its classifier (reading what the probe was trained on).
pub fn probe_model(backbone: &Vit, probe: &Probe, input: ProbeInput) -> candle_core::Result<Vit> {
    let mut m = backbone.clone();
    let (dt, dev) = (backbone.dtype(), backbone.device());
    m.cfg.pool = input.pool();
    m.cfg.embedding = false;
    m.cfg.num_classes = probe.classes;
    m.head = Linear::new(
        Tensor::from_vec(probe.weight.clone(), (probe.classes, probe.dim), dev)?.to_dtype(dt)?,
        Some(Tensor::from_vec(probe.bias.clone(), probe.classes, dev)?.to_dtype(dt)?),
    );
    m.head_dist = None;
    m.objective = Objective::default();
    Ok(m)
}

/// Checks that a classifier on `backbone` (of `family`) reading `input` has a folder layout.
pub fn check_writable(backbone: &Vit, family: Family, input: ProbeInput) -> Result<(), TrainError> {
    let c = &backbone.cfg;
    let ok = match family {
        Family::Dinov2 | Family::Dinov2Registers => true,
        // ViTForImageClassification: one CLS token, a CLS head, no LayerScale or pre-norm.
        Family::Vit | Family::Deit => {
            input == ProbeInput::Cls
                && c.prefix_tokens == 1
                && !c.layer_scale
                && !c.pre_norm
                && !c.double_fc_norm
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(TrainError::Recipe(format!(
        "--head-only: a {family:?} backbone with a {input:?} head has no Hugging Face classifier layout \
         to write (supported: DINOv2 with either input, ViT/DeiT with one CLS token and --probe-input cls)"
    )))
}

/// Writes `model` (a backbone with its probe) as a Hugging Face folder at `dest`, atomically,
/// with `card` as its README.md; an existing `dest` is replaced only when `force`.
pub fn write_probe_model(
    dest: &Path,
    model: &Vit,
    family: Family,
    pre: &Preprocessing,
    card: &str,
    force: bool,
) -> Result<(), TrainError> {
    let names: Vec<String> = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    super::atomic::write_dir(dest, force, |dir| -> Result<(), TrainError> {
        match family {
            Family::Dinov2 | Family::Dinov2Registers => {
                save_hf_dinov2(model, dir, Some(&names), pre)?
            }
            _ => save_hf(model, dir, Some(&names), pre)?,
        }
        let path = dir.join("README.md");
        std::fs::write(&path, card).map_err(|cause| ModelError::Io { path, cause })?;
        Ok(())
    })
}
