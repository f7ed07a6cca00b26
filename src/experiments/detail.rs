//! What the report shows beyond the records, computed with the run's model: for a sample of
//! images, where each path neuron looks (patch integrated gradients) and every method's
//! per-layer JAS terms; for the neurons a class's paths share, the run's images that activate
//! them most (the dataset view).
use super::atlas::Atlas;
use super::error::{ExperimentError, Result};
use crate::attribution::explain::path_terms;
use crate::attribution::spatial::{spatial_attribution, PathInput, Spatial};
use crate::attribution::{clean_pass, AttributionSettings};
use crate::io::inputs::{load_batch, Item, Preprocess};
use crate::io::results::{ImageRecord, Method, Results};
use crate::model::{gradients, Rows, Vit};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Riemann steps of the patch heat maps unless `--map-steps` says otherwise (`explain` uses the
/// same default, so its maps equal the report's).
pub const DEFAULT_MAP_STEPS: usize = 32;
/// Recurring neurons shown per class in the dataset view.
pub const NEURONS_PER_CLASS: usize = 3;
/// Top-activating images shown per neuron.
pub const TOP_IMAGES: usize = 6;

/// One sampled image, explained.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageDetail {
    /// The image's index in the run's inputs.
    pub index: u64,
    /// Patch maps of the paper's path (each layer's neuron, then F through the path).
    pub spatial: Spatial,
    /// Per method, each layer's term of the additive JAS of that method's path.
    pub terms: BTreeMap<Method, Vec<f64>>,
}

/// A neuron that recurs on one class's paths and the run's images that activate it most.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NeuronView {
    /// The class whose paths it recurs on.
    pub class: usize,
    /// Its block (0-based).
    pub layer: usize,
    /// Its MLP hidden unit.
    pub unit: usize,
    /// How many of the class's paths pass through it, of `images`.
    pub count: u32,
    /// Paths of the class in the run.
    pub images: usize,
    /// (image index, clean activation) of the top images, highest first.
    pub top: Vec<(u64, f64)>,
    /// Mean clean activation over the run's images.
    pub mean: f64,
}

/// The attribution settings of the run's own search (steps, rows, quirks), chunked for `model`.
pub fn run_settings(run: &Results, model: &Vit) -> AttributionSettings {
    AttributionSettings {
        steps: run.header.steps,
        top_k: 1,
        compat: run.header.compat,
        rows: run.rows,
        chunk_rows: gradients::chunk_rows(model, gradients::default_memory_limit(model.device())),
        engine: Default::default(),
    }
}

/// Images shown in detail: round-robin over the classes in index order (the first image of
/// every class, then the second, ...), at most `max`, returned in index order.
pub fn sample(run: &Results, max: usize) -> Vec<u64> {
    let mut by_class: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for r in &run.images {
        by_class.entry(r.class()).or_default().push(r.index);
    }
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < max.min(run.images.len()) {
        for v in by_class.values() {
            if let Some(&i) = v.get(round) {
                if out.len() < max {
                    out.push(i);
                }
            }
        }
        round += 1;
    }
    out.sort_unstable();
    out
}

fn item<'a>(items: &'a BTreeMap<u64, Item>, r: &ImageRecord) -> Result<&'a Item> {
    items.get(&r.index).ok_or_else(|| {
        ExperimentError::Invalid(format!(
            "image {} ({}) is not among the inputs",
            r.index, r.source
        ))
    })
}

/// Explains the images `indices` of the run with its model, the heat maps integrated over
/// `map_steps` Riemann steps.
pub fn image_details(
    model: &Vit,
    run: &Results,
    items: &BTreeMap<u64, Item>,
    pre: &Preprocess,
    indices: &[u64],
    map_steps: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<ImageDetail>> {
    let s = run_settings(run, model);
    let records: BTreeMap<u64, &ImageRecord> = run.images.iter().map(|r| (r.index, r)).collect();
    let mut out = Vec::with_capacity(indices.len());
    for (done, i) in indices.iter().enumerate() {
        let Some(r) = records.get(i) else { continue };
        let x = load_batch(&[item(items, r)?], pre, model.device())?;
        let (probs, acts) = clean_pass(model, &x, s.rows)?;
        let target = r.result.target;
        let mut terms = BTreeMap::new();
        for (m, res) in &r.result.methods {
            terms.insert(*m, path_terms(model, &x, target, &acts, &res.path, &s)?);
        }
        let path = match r.result.methods.get(&Method::Path) {
            Some(p) => p.path.clone(),
            None => r
                .result
                .methods
                .values()
                .next()
                .map_or(Vec::new(), |p| p.path.clone()),
        };
        if path.len() == model.cfg.layers {
            let input = PathInput {
                image: &x,
                target,
                path: &path,
                acts: &acts,
                clean_prob: probs[0][target],
                rows: s.rows,
            };
            let spatial = spatial_attribution(model, &input, map_steps, s.chunk_rows)?;
            out.push(ImageDetail {
                index: *i,
                spatial,
                terms,
            });
        }
        progress(done + 1);
    }
    Ok(out)
}

/// The neurons to show per class: on at least two of the class's paths, most frequent first
/// (ties: lower layer, lower index), at most [`NEURONS_PER_CLASS`], for the first
/// `max_classes` classes of the atlas.
pub fn recurring(a: &Atlas, max_classes: usize) -> Vec<(usize, usize, usize, u32, usize)> {
    let mut out = Vec::new();
    for e in a.classes.iter().take(max_classes) {
        let mut v: Vec<(u32, usize, usize)> = e
            .counts
            .iter()
            .enumerate()
            .flat_map(|(l, m)| m.iter().map(move |(&n, &c)| (c, l, n)))
            .filter(|&(c, _, _)| c >= 2)
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        out.extend(
            v.into_iter()
                .take(NEURONS_PER_CLASS)
                .map(|(c, l, n)| (e.class, l, n, c, e.images)),
        );
    }
    out
}

/// The dataset view: for each recurring neuron of [`recurring`], its clean activation on every
/// image of the run (one forward pass each), the top [`TOP_IMAGES`] kept.
pub fn dataset_view(
    model: &Vit,
    run: &Results,
    items: &BTreeMap<u64, Item>,
    pre: &Preprocess,
    atlas: &Atlas,
    max_classes: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<NeuronView>> {
    let wanted = recurring(atlas, max_classes);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // All of a layer's hidden rows are read per image; patch rows are 100x larger, so fewer.
    let batch = if run.rows == Rows::Cls { 32 } else { 4 };
    let mut values: Vec<Vec<(u64, f64)>> = vec![Vec::with_capacity(run.images.len()); wanted.len()];
    let mut done = 0;
    for chunk in run.images.chunks(batch) {
        let its = chunk
            .iter()
            .map(|r| item(items, r))
            .collect::<Result<Vec<&Item>>>()?;
        let x = load_batch(&its, pre, model.device())?;
        let (_, acts) = clean_pass(model, &x, run.rows)?;
        for (b, r) in chunk.iter().enumerate() {
            for (w, &(_, l, n, _, _)) in wanted.iter().enumerate() {
                values[w].push((r.index, acts.unit_sum(b, l, n)));
            }
        }
        done += chunk.len();
        progress(done);
    }
    Ok(wanted
        .into_iter()
        .zip(values)
        .map(|((class, layer, unit, count, images), mut v)| {
            let mean = v.iter().map(|x| x.1).sum::<f64>() / v.len().max(1) as f64;
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(TOP_IMAGES);
            NeuronView {
                class,
                layer,
                unit,
                count,
                images,
                top: v,
                mean,
            }
        })
        .collect())
}
