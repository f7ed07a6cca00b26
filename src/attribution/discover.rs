//! Everything `discover` computes for a batch of images: the clean pass, each requested method's
//! neuron sets, their JAS in both forms and the probabilities with the sets removed or enhanced.
use super::baselines::{activation_sets, influence_sets, layer_ig_sets, random_set};
use super::jas::set_probabilities;
use super::{clean_pass, joint_attribution, layer_progressive_search, Jas, NeuronSets, Settings};
use crate::model::Vit;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The path-finding methods.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The paper's layer-progressive neuron path (JAS search).
    Path,
    /// Largest clean activation per layer.
    Activation,
    /// Influence pattern: mean total derivative along the input path alpha * x.
    Influence,
    /// Per-layer integrated gradients (Knowledge Neurons), no path.
    Ig,
    /// Uniformly random neurons, seeded.
    Random,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Path => "path",
            Method::Activation => "activation",
            Method::Influence => "influence",
            Method::Ig => "ig",
            Method::Random => "random",
        }
    }
}

/// Which class F is the probability of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// The ground-truth label.
    Label,
    /// The model's top-1 prediction on the clean image.
    Predicted,
}

/// One method's result for one image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MethodResult {
    /// Top-1 neuron per layer.
    pub path: Vec<usize>,
    /// All K neurons per layer, when K > 1.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sets: Option<NeuronSets>,
    pub jas: Jas,
    /// F with the set's neurons zeroed / doubled.
    pub prob_removed: f64,
    pub prob_enhanced: f64,
    /// Search only: per layer, best minus runner-up candidate score.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub margins: Option<Vec<f64>>,
}

/// Everything about one image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageResult {
    pub label: Option<usize>,
    pub target: usize,
    pub prediction: usize,
    pub prob_target: f64,
    pub prob_prediction: f64,
    pub methods: BTreeMap<String, MethodResult>,
}

/// What to compute.
#[derive(Clone, Debug)]
pub struct Request {
    pub settings: Settings,
    pub methods: Vec<Method>,
    pub target: TargetKind,
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
) -> Result<Vec<ImageResult>> {
    let s = &req.settings;
    let (probs, acts) = clean_pass(model, images, s.rows)?;
    let predictions: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let targets: Vec<usize> = match req.target {
        TargetKind::Predicted => predictions.clone(),
        TargetKind::Label => labels
            .iter()
            .map(|l| l.ok_or_else(|| candle_core::Error::Msg("image without a label".into())))
            .collect::<Result<_>>()?,
    };
    let clean: Vec<f64> = probs.iter().zip(&targets).map(|(p, &t)| p[t]).collect();
    let (layers, mlp) = (model.cfg.layers, model.cfg.mlp_dim);
    // (method, sets per image, search margins per image and layer)
    type Found = (Method, Vec<NeuronSets>, Option<Vec<Vec<f64>>>);
    let mut per_method: Vec<Found> = Vec::new();
    for &m in &req.methods {
        let (sets, margins) = match m {
            Method::Path => {
                let r = layer_progressive_search(model, images, &targets, &acts, s)?;
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
                (r.sets, Some(margins))
            }
            Method::Activation => (activation_sets(&acts, s.top_k), None),
            Method::Influence => (influence_sets(model, images, &targets, &acts, s)?, None),
            Method::Ig => (layer_ig_sets(model, images, &targets, &acts, s)?, None),
            Method::Random => (
                keys.iter()
                    .map(|&k| random_set(layers, mlp, s.top_k, req.seed, k))
                    .collect(),
                None,
            ),
        };
        per_method.push((m, sets, margins));
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
    for (m, sets, margins) in per_method {
        let jas = joint_attribution(model, images, &targets, &acts, &sets, &clean, s)?;
        let removed = set_probabilities(model, images, &targets, &sets, 0.0, s)?;
        let enhanced = set_probabilities(model, images, &targets, &sets, 2.0, s)?;
        for (i, rec) in out.iter_mut().enumerate() {
            rec.methods.insert(
                m.name().to_string(),
                MethodResult {
                    path: sets[i].iter().map(|l| l[0]).collect(),
                    sets: (s.top_k > 1).then(|| sets[i].clone()),
                    jas: jas[i],
                    prob_removed: removed[i],
                    prob_enhanced: enhanced[i],
                    margins: margins.as_ref().map(|mg| mg[i].clone()),
                },
            );
        }
    }
    Ok(out)
}
