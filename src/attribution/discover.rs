//! Everything `discover` computes for a batch of images: the clean pass, each requested method's
//! neuron sets, their JAS in both forms and the probabilities with the sets removed or enhanced.
use super::baselines::{method_sets, Batch};
use super::jas::set_probabilities;
use super::search::search_with_jas;
use super::{
    clean_pass, joint_attribution, AttributionError, AttributionSettings, Check, Jas, NeuronSets,
};
pub use crate::io::results::{ImageResult, Method, MethodResult, TargetKind};
use crate::model::Vit;
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;

/// What to compute.
#[derive(Clone, Debug)]
pub struct Request {
    /// Steps, top-K, rows and engine of every method.
    pub settings: AttributionSettings,
    /// The methods to run, each giving a neuron set and its JAS per image.
    pub methods: Vec<Method>,
    /// Whether F scores the label or the predicted class.
    pub target: TargetKind,
    /// Seed of the random baseline (combined with each image's key).
    pub seed: u64,
}

fn argmax(v: &[f64]) -> usize {
    super::top_k(v, 1)[0]
}

/// Runs the request on a batch. `labels[i]` may be unknown only when the target is the
/// prediction; `keys[i]` identifies the image (seeds its random path).
pub fn discover_batch(
    model: &Vit,
    images: &Tensor,
    labels: &[Option<usize>],
    keys: &[u64],
    req: &Request,
) -> Result<Vec<ImageResult>, AttributionError> {
    discover_batch_checked(model, images, labels, keys, req, &|| Ok(()))
}

/// NaN or infinite pixels would give a NaN F, a path of arbitrary neurons and null scores.
fn check_finite_images(images: &Tensor) -> Result<(), AttributionError> {
    let b = images.dim(0)?;
    let values = images
        .flatten_from(1)?
        .to_dtype(DType::F64)?
        .to_vec2::<f64>()?;
    for (image, v) in values.iter().enumerate().take(b) {
        let count = v.iter().filter(|x| !x.is_finite()).count();
        if count > 0 {
            return Err(AttributionError::NonFiniteInput { image, count });
        }
    }
    Ok(())
}

/// [`discover_batch`], calling `check` before each method and each layer of the search; an error
/// it returns stops the batch and is returned unchanged.
pub fn discover_batch_checked(
    model: &Vit,
    images: &Tensor,
    labels: &[Option<usize>],
    keys: &[u64],
    req: &Request,
    check: Check,
) -> Result<Vec<ImageResult>, AttributionError> {
    let s = &req.settings;
    s.check(model.cfg.mlp_dim)?;
    check_finite_images(images)?;
    let (probs, acts) = clean_pass(model, images, s.rows)?;
    if let Some(image) = probs.iter().position(|p| p.iter().any(|v| !v.is_finite())) {
        return Err(AttributionError::NonFiniteOutput { image });
    }
    let predictions: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let targets: Vec<usize> = match req.target {
        TargetKind::Predicted => predictions.clone(),
        TargetKind::Class(c) if c < model.score_width() => vec![c; predictions.len()],
        TargetKind::Class(target) => {
            return Err(AttributionError::TargetOutOfRange {
                target,
                outputs: model.score_width(),
            })
        }
        TargetKind::Label => labels
            .iter()
            .enumerate()
            .map(|(image, l)| match l {
                Some(l) if *l < model.score_width() => Ok(*l),
                Some(target) => Err(AttributionError::TargetOutOfRange {
                    target: *target,
                    outputs: model.score_width(),
                }),
                None => Err(AttributionError::MissingLabel { image }),
            })
            .collect::<Result<_, _>>()?,
    };
    let clean: Vec<f64> = probs.iter().zip(&targets).map(|(p, &t)| p[t]).collect();
    // (method, sets per image, search margins per image and layer, JAS if the search gave it)
    type Found = (
        Method,
        Vec<NeuronSets>,
        Option<Vec<Vec<f64>>>,
        Option<Vec<Jas>>,
    );
    let mut per_method: Vec<Found> = Vec::new();
    let batch = Batch {
        model,
        images,
        targets: &targets,
        acts: &acts,
        settings: s,
        keys,
        seed: req.seed,
    };
    for &m in &req.methods {
        check()?;
        let (sets, margins, jas) = match m {
            Method::Path => {
                let (r, jas) =
                    search_with_jas(model, images, &targets, &acts, Some(&clean), s, check)?;
                let margins = r
                    .scores
                    .iter()
                    .map(|img| {
                        img.iter()
                            .map(|sc| {
                                let best = super::top_k(sc, 2);
                                sc[best[0]] - best.get(1).map(|&j| sc[j]).unwrap_or(f64::NAN)
                            })
                            .collect()
                    })
                    .collect();
                (r.sets, Some(margins), jas)
            }
            baseline => (method_sets(baseline, &batch)?, None, None),
        };
        per_method.push((m, sets, margins, jas));
    }
    let mut out: Vec<ImageResult> = (0..targets.len())
        .map(|i| ImageResult {
            label: labels[i],
            target: targets[i],
            prediction: predictions[i],
            prob_target: clean[i],
            prob_prediction: probs[i][predictions[i]],
            methods: BTreeMap::new(),
        })
        .collect();
    for (m, sets, margins, jas) in per_method {
        check()?;
        let jas = match jas {
            Some(jas) => jas,
            None => joint_attribution(model, images, &targets, &acts, &sets, &clean, s)?,
        };
        let removed = set_probabilities(model, images, &targets, &sets, 0.0, s)?;
        let enhanced = set_probabilities(model, images, &targets, &sets, 2.0, s)?;
        for (i, rec) in out.iter_mut().enumerate() {
            rec.methods.insert(
                m,
                MethodResult {
                    path: sets[i].iter().map(|l| l[0]).collect(),
                    sets: (s.top_k > 1).then(|| sets[i].clone()),
                    jas: jas[i],
                    prob_removed: removed[i],
                    prob_enhanced: enhanced[i],
                    margins: margins.as_ref().map(|mg| mg[i].clone()),
                    neurons: None,
                },
            );
        }
    }
    Ok(out)
}
