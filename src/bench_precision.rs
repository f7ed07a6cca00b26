//! How far the precision modes change the answer: the paths each mode finds, compared with
//! f32's on the same images (`bench`'s precision rows). A reduced precision is only worth its
//! speed if it finds the same paths: the search is an argmax per layer over scores that may be
//! close, so rounding can flip a choice and every later layer with it.
//!
//! A path is *identical* when every layer's neuron set equals f32's. The score difference is
//! taken only where both modes scored under the same earlier path (up to and including the first
//! layer whose choice differs), so that a flipped choice is not counted as a score error.
use crate::attribution::{
    clean_pass, layer_progressive_search, AttributionSettings, SearchEngine, SearchResult,
};
use crate::embedded;
use crate::io::inputs::{load_batch, Preprocess};
use crate::io::preprocess::Normalization;
use crate::io::results::Precision;
use crate::model::config::VitConfig;
use crate::model::gradients::chunk_rows;
use crate::model::load::convert;
use crate::model::{LoadOptions, Rows, Vit};
use candle_core::{Device, Result, Tensor};
use std::time::Instant;

/// One precision mode against f32 on one set of images.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Agreement {
    /// The model and images compared on.
    pub set: String,
    /// The mode compared with f32 (f32 itself: the reference row, its own time).
    pub precision: Precision,
    /// Images searched.
    pub images: usize,
    /// Images whose path (every layer's neuron set) equals f32's.
    pub identical: usize,
    /// Largest |score - f32 score| of a selection score, over the layers scored under the same
    /// earlier path (0 for the reference row).
    pub max_score_diff: f64,
    /// Largest |f32 selection score| over the same layers: the scale of `max_score_diff`.
    pub max_score: f64,
    /// Seconds of this mode's search of all the images (clean pass included).
    pub seconds: f64,
}

/// Paths of `other` identical to `reference`'s, and the largest selection-score difference and
/// score over the layers both scored under the same earlier path: (identical, max diff, max score).
pub fn compare(reference: &SearchResult, other: &SearchResult) -> (usize, f64, f64) {
    let (mut identical, mut diff, mut scale) = (0, 0f64, 0f64);
    for (i, (sets_r, sets_o)) in reference.sets.iter().zip(&other.sets).enumerate() {
        identical += usize::from(sets_r == sets_o);
        for (l, (s_r, s_o)) in reference.scores[i].iter().zip(&other.scores[i]).enumerate() {
            for (a, b) in s_r.iter().zip(s_o) {
                diff = diff.max((a - b).abs());
                scale = scale.max(a.abs());
            }
            if sets_r.get(l) != sets_o.get(l) {
                break;
            }
        }
    }
    (identical, diff, scale)
}

/// The layer-progressive search of `images` (targets `targets`) by `model`, m = `steps`, paths
/// (K = 1), with the GEMM mode of `precision` (TF32 on a GPU); returns it and its seconds.
pub fn search(
    model: &Vit,
    precision: Precision,
    images: &Tensor,
    targets: &[usize],
    steps: usize,
    memory_limit: usize,
) -> Result<(SearchResult, f64)> {
    let dev = model.device();
    if dev.is_cuda() {
        candle_core::cuda::set_gemm_reduced_precision_f32(precision.tf32_gemm());
    }
    let settings = AttributionSettings {
        steps,
        top_k: 1,
        compat: false,
        rows: Rows::Cls,
        chunk_rows: chunk_rows(model, memory_limit),
        engine: SearchEngine::default(),
    };
    let start = Instant::now();
    let found = dev.synchronize().and_then(|_| {
        let (_, acts) = clean_pass(model, images, Rows::Cls)?;
        let found = layer_progressive_search(model, images, targets, &acts, &settings)?;
        dev.synchronize()?;
        Ok(found)
    });
    let seconds = start.elapsed().as_secs_f64();
    // The switch is process-wide: back to plain f32 whatever happened.
    if dev.is_cuda() {
        candle_core::cuda::set_gemm_reduced_precision_f32(false);
    }
    Ok((found?, seconds))
}

/// Each of `modes` against f32 on `images` of `model` (an f32 model; each mode gets a converted
/// copy): the f32 reference row first, then one row per mode.
pub fn agreement(
    set: &str,
    model: &Vit,
    images: &Tensor,
    targets: &[usize],
    modes: &[Precision],
    steps: usize,
    memory_limit: usize,
) -> Result<Vec<Agreement>> {
    let (reference, seconds) = search(model, Precision::F32, images, targets, steps, memory_limit)?;
    let n = targets.len();
    let mut rows = vec![Agreement {
        set: set.to_string(),
        precision: Precision::F32,
        images: n,
        identical: n,
        max_score_diff: 0.0,
        max_score: 0.0,
        seconds,
    }];
    for &mode in modes {
        let copy = convert(model, mode.dtype())?;
        let (found, seconds) = search(&copy, mode, images, targets, steps, memory_limit)?;
        let (identical, max_score_diff, max_score) = compare(&reference, &found);
        rows.push(Agreement {
            set: set.to_string(),
            precision: mode,
            images: n,
            identical,
            max_score_diff,
            max_score,
            seconds,
        });
    }
    Ok(rows)
}

/// The modes compared with f32 on `dev`: TF32 and bf16 on a GPU; on the CPU f64 alone (how
/// often f32's own rounding changes a path), since the reduced modes are GPU modes there.
pub fn modes(dev: &Device) -> Vec<Precision> {
    if dev.is_cuda() {
        vec![Precision::Tf32, Precision::Bf16]
    } else {
        vec![Precision::F64]
    }
}

/// The embedded Fashion-MNIST model on `dev` and its sample images with their labels, or `None`
/// when this build has no embedded model.
pub fn embedded_set(dev: &Device) -> Result<Option<(Vit, Tensor, Vec<usize>)>> {
    let opts = LoadOptions {
        device: dev.clone(),
        ..LoadOptions::default()
    };
    let Ok(loaded) = embedded::model(&opts) else {
        return Ok(None);
    };
    let norm = loaded
        .normalization
        .and_then(Normalization::from_mean_std)
        .unwrap_or(Normalization::ImageNet);
    let pre = Preprocess {
        size: loaded.model.cfg.image_size,
        norm,
    };
    let samples = embedded::samples();
    let items: Vec<_> = samples.items.iter().collect();
    let images = load_batch(&items, &pre, dev).map_err(candle_core::Error::wrap)?;
    let targets = items.iter().map(|it| it.label.unwrap_or(0)).collect();
    Ok(Some((loaded.model, images, targets)))
}

/// The precision rows of `bench` on `dev`: the embedded model on its samples, and a random ViT
/// of `cfg` on `images` random images (class 0), each mode of [`modes`] against f32.
pub fn run(
    cfg: &VitConfig,
    images: usize,
    steps: usize,
    memory_limit: usize,
    dev: &Device,
) -> Result<Vec<Agreement>> {
    let modes = modes(dev);
    let mut rows = Vec::new();
    if let Some((model, x, targets)) = embedded_set(dev)? {
        let set = format!("embedded Fashion-MNIST, {} samples", targets.len());
        rows.extend(agreement(
            &set,
            &model,
            &x,
            &targets,
            &modes,
            steps,
            memory_limit,
        )?);
    }
    let model = crate::bench::random_model(cfg, 0, dev)?;
    let x = Tensor::randn(
        0f32,
        1.0,
        (images, 3, cfg.image_size, cfg.image_size),
        &Device::Cpu,
    )?
    .to_device(dev)?;
    let set = format!(
        "random ViT ({} layers, hidden {}), {images} images",
        cfg.layers, cfg.hidden
    );
    rows.extend(agreement(
        &set,
        &model,
        &x,
        &vec![0; images],
        &modes,
        steps,
        memory_limit,
    )?);
    Ok(rows)
}

/// What `bench` runs after its speed rows: [`run`] with the benchmark's own model on a GPU, on
/// the CPU a small ViT (6 layers, hidden 96, 32 pixels in 8x8 patches) that searches in
/// seconds; 16 random images either way.
pub fn bench_rows(
    bench_cfg: &VitConfig,
    steps: usize,
    memory_limit: usize,
    dev: &Device,
) -> Result<Vec<Agreement>> {
    let cfg = if dev.is_cuda() {
        bench_cfg.clone()
    } else {
        crate::bench::vit_config(32, 8, 96, 384, 4, 6)
    };
    run(&cfg, 16, steps, memory_limit, dev)
}

/// The rows as a table (the set as a heading line above its rows).
pub fn table(rows: &[Agreement]) -> String {
    let mut out = format!(
        "{:<10} {:>16} {:>16} {:>14} {:>10} {:>10}\n",
        "precision", "identical paths", "max |d score|", "relative", "seconds", "speed-up"
    );
    let mut last_set = "";
    let mut f32_secs = f64::NAN;
    for r in rows {
        if r.set != last_set {
            out.push_str(&format!("{}:\n", r.set));
            last_set = &r.set;
        }
        if r.precision == Precision::F32 {
            f32_secs = r.seconds;
            out.push_str(&format!(
                "{:<10} {:>16} {:>16} {:>14} {:>10.3} {:>10}\n",
                "f32", "(reference)", "-", "-", r.seconds, "1.00x"
            ));
            continue;
        }
        let rel = if r.max_score > 0.0 {
            format!("{:.2e}", r.max_score_diff / r.max_score)
        } else {
            "-".into()
        };
        out.push_str(&format!(
            "{:<10} {:>16} {:>16.3e} {:>14} {:>10.3} {:>9.2}x\n",
            r.precision.to_string(),
            format!(
                "{}/{} ({:.0}%)",
                r.identical,
                r.images,
                100.0 * r.identical as f64 / r.images.max(1) as f64
            ),
            r.max_score_diff,
            rel,
            r.seconds,
            f32_secs / r.seconds
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(sets: Vec<Vec<usize>>, scores: Vec<Vec<f64>>) -> SearchResult {
        SearchResult {
            sets: vec![sets],
            scores: vec![scores],
        }
    }

    #[test]
    fn compare_counts_paths_and_scores_up_to_the_first_difference() {
        let a = result(
            vec![vec![1], vec![0], vec![2]],
            vec![vec![0.1, 0.5], vec![0.3, 0.2], vec![0.0, 9.0]],
        );
        assert_eq!(compare(&a, &a), (1, 0.0, 9.0));
        // Layer 1 flips: its scores count, layer 2's (under another path) do not.
        let b = result(
            vec![vec![1], vec![1], vec![2]],
            vec![vec![0.1, 0.5], vec![0.3, 0.45], vec![5.0, 0.0]],
        );
        let (same, diff, scale) = compare(&a, &b);
        assert_eq!(same, 0);
        assert!((diff - 0.25).abs() < 1e-15, "{diff}");
        assert_eq!(scale, 0.5);
    }

    /// The embedded model on 40 of its samples, m = 10.
    fn embedded_40() -> (Vit, Tensor, Vec<usize>) {
        let (model, x, targets) = embedded_set(&Device::Cpu)
            .unwrap()
            .expect("the build embeds the model");
        let n = 40.min(targets.len());
        (model, x.narrow(0, 0, n).unwrap(), targets[..n].to_vec())
    }

    #[test]
    fn f32_agrees_with_itself_and_mostly_with_f64() {
        let (model, x, targets) = embedded_40();
        let n = targets.len();
        let limit = 256 << 20;
        // Two independent f32 searches (a converted copy): every path, every score the same.
        let (a, _) = search(&model, Precision::F32, &x, &targets, 10, limit).unwrap();
        let copy = convert(&model, Precision::F32.dtype()).unwrap();
        let (b, _) = search(&copy, Precision::F32, &x, &targets, 10, limit).unwrap();
        assert_eq!(compare(&a, &b), (n, 0.0, compare(&a, &a).2));
        let rows = agreement(
            "embedded",
            &model,
            &x,
            &targets,
            &[Precision::F64],
            10,
            limit,
        )
        .unwrap();
        eprintln!("{}", table(&rows));
        let f64_row = &rows[1];
        assert_eq!((rows.len(), f64_row.precision), (2, Precision::F64));
        // f32 rounding (~1e-7 relative) rarely flips an argmax: most paths agree, and the scores
        // where both searched under the same path differ by far less than their scale.
        assert!(f64_row.identical * 10 >= n * 8, "{f64_row:?}");
        assert!(
            f64_row.max_score_diff > 0.0,
            "f64 and f32 cannot agree exactly"
        );
        assert!(
            f64_row.max_score_diff < 1e-3 * f64_row.max_score,
            "{f64_row:?}"
        );
        assert!(table(&rows).contains(&format!("{}/{n}", f64_row.identical)));
    }
}
