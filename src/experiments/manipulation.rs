//! Manipulation (SPEC section 9): every neuron of a method's path is scaled (0 removes, 2
//! enhances, any factor) in ONE forward pass, so "current value" is the value after the upstream
//! edits; F and the top-1 prediction are recorded, then summarised per class and overall.
use super::error::{ExperimentError, Result};
use super::stats::{de_f64, spread, Spread};
use crate::attribution::baselines::random_set;
use crate::attribution::{top_k, NeuronSets};
use crate::format::{csv_field, csv_num};
use crate::io::inputs::{load_batch, Item, Preprocess};
use crate::io::results::{ImageRecord, Method, Results};
use crate::model::Vit;
use candle_core::DType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the manipulation runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManipulationSettings {
    /// Factors applied to the path neurons (0 removes, 2 enhances).
    pub factors: Vec<f64>,
    /// Scale all K neurons per layer when the run kept them (default: the top-1 path).
    pub all_k: bool,
    /// Seed of the random control when the run has no `random` method (discover's generator,
    /// so with the run's seed it is the path `discover --methods random` would have found).
    pub seed: u64,
    /// Bootstrap resamples of the confidence intervals.
    pub bootstrap: usize,
    /// Images per forward pass.
    pub batch: usize,
}

impl Default for ManipulationSettings {
    fn default() -> Self {
        ManipulationSettings {
            factors: vec![0.0, 2.0],
            all_k: false,
            seed: 0,
            bootstrap: 1000,
            batch: 16,
        }
    }
}

/// One edit of one image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// What the path neurons' activations were multiplied by (0 removes, 2 enhances).
    pub factor: f64,
    /// F (probability of the attributed class) after the edit.
    #[serde(deserialize_with = "de_f64")]
    pub prob: f64,
    /// The predicted class after the edit.
    pub top1: usize,
}

/// All edits of one image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageOutcome {
    /// The image's index in the run's inputs.
    pub index: u64,
    /// Where the image came from (its record's `source`; empty in files written before it).
    #[serde(default)]
    pub source: String,
    /// Ground truth (the label; the attributed target for unlabelled runs).
    pub class: usize,
    /// The class whose probability F is.
    pub target: usize,
    /// F without any edit.
    #[serde(deserialize_with = "de_f64")]
    pub clean_prob: f64,
    /// The predicted class without any edit.
    pub clean_top1: usize,
    /// Per method, one outcome per factor.
    pub methods: BTreeMap<Method, Vec<Outcome>>,
}

/// Probability and accuracy deviation of one (method, factor) over a class or all images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deviation {
    /// Whose neuron sets were edited.
    pub method: Method,
    /// The activation factor of the edit.
    pub factor: f64,
    /// `None`: all images.
    pub class: Option<usize>,
    /// Per image F_edit / F_clean.
    pub ratio: Spread,
    /// Top-1 accuracy in [0, 1] without edits.
    #[serde(deserialize_with = "de_f64")]
    pub acc_clean: f64,
    /// Top-1 accuracy in [0, 1] after the edit.
    #[serde(deserialize_with = "de_f64")]
    pub acc_edit: f64,
    /// Top-1 accuracy after the edit minus clean top-1 accuracy.
    #[serde(deserialize_with = "de_f64")]
    pub acc_deviation: f64,
}

/// Which classes the model confuses a class with: mean clean probability over its images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Confusion {
    /// The class whose images are averaged.
    pub class: usize,
    /// Its images in the run.
    pub images: usize,
    /// The most probable other classes, descending: (class, mean probability).
    pub others: Vec<(usize, f64)>,
}

/// Everything `ablate` computes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manipulation {
    /// What was run.
    pub settings: ManipulationSettings,
    /// Methods edited, in report order.
    pub methods: Vec<Method>,
    /// The random control was generated here (the run had no `random` method).
    pub random_generated: bool,
    /// Per image, every edit's outcome.
    pub images: Vec<ImageOutcome>,
    /// One deviation per (method, factor) over all images.
    pub overall: Vec<Deviation>,
    /// One deviation per (method, factor, class).
    pub per_class: Vec<Deviation>,
    /// Per class, the classes its images are confused with.
    pub confusion: Vec<Confusion>,
}

impl Manipulation {
    /// The overall deviation of (method, factor), if computed.
    pub fn overall_for(&self, method: Method, factor: f64) -> Option<&Deviation> {
        self.overall
            .iter()
            .find(|d| d.method == method && d.factor == factor)
    }
}

pub use crate::attribution::jas::edited_probabilities;

/// Runs the manipulation on every image of `run`; `items` are the run's inputs by index.
/// `progress` is told how many images are done after each batch.
pub fn run_manipulation(
    model: &Vit,
    run: &Results,
    items: &BTreeMap<u64, Item>,
    pre: &Preprocess,
    settings: &ManipulationSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<Manipulation> {
    let mut methods = run.methods.clone();
    let random_generated = !run.has_method(Method::Random);
    if random_generated {
        methods.push(Method::Random);
    }
    let (layers, mlp) = (model.cfg.layers, model.cfg.mlp_dim);
    let k = if settings.all_k { run.top_k } else { 1 };
    let sets_of = |r: &ImageRecord, m: Method| -> NeuronSets {
        match r.sets(m, settings.all_k) {
            Some(s) => s,
            None => random_set(layers, mlp, k, settings.seed, r.index),
        }
    };
    let mut images = Vec::with_capacity(run.images.len());
    let mut clean_all = Vec::with_capacity(run.images.len());
    for chunk in run.images.chunks(settings.batch.max(1)) {
        let its = chunk
            .iter()
            .map(|r| {
                items.get(&r.index).ok_or_else(|| {
                    ExperimentError::Invalid(format!(
                        "image {} ({}) is not among the inputs",
                        r.index, r.source
                    ))
                })
            })
            .collect::<Result<Vec<&Item>>>()?;
        let x = load_batch(&its, pre, model.device())?;
        let clean: Vec<Vec<f64>> = model
            .probabilities(&x, &[])?
            .to_dtype(DType::F64)?
            .to_vec2()?;
        let mut per: Vec<ImageOutcome> = chunk
            .iter()
            .zip(&clean)
            .map(|(r, p)| ImageOutcome {
                index: r.index,
                source: r.source.clone(),
                class: r.class(),
                target: r.result.target,
                clean_prob: p[r.result.target],
                clean_top1: top_k(p, 1)[0],
                methods: BTreeMap::new(),
            })
            .collect();
        for &m in &methods {
            let sets: Vec<NeuronSets> = chunk.iter().map(|r| sets_of(r, m)).collect();
            for &f in &settings.factors {
                let probs = edited_probabilities(model, &x, &sets, f, run.rows)?;
                for (o, p) in per.iter_mut().zip(&probs) {
                    let top1 = top_k(p, 1)[0];
                    o.methods.entry(m).or_default().push(Outcome {
                        factor: f,
                        prob: p[o.target],
                        top1,
                    });
                }
            }
        }
        images.extend(per);
        clean_all.extend(clean);
        progress(images.len());
    }
    let (overall, per_class) = summarize(&images, &methods, settings);
    Ok(Manipulation {
        confusion: confusion(&images, &clean_all, 3),
        settings: settings.clone(),
        methods,
        random_generated,
        images,
        overall,
        per_class,
    })
}

/// Deviations over all images and per class, for every (method, factor).
pub fn summarize(
    images: &[ImageOutcome],
    methods: &[Method],
    s: &ManipulationSettings,
) -> (Vec<Deviation>, Vec<Deviation>) {
    let mut classes: Vec<usize> = images.iter().map(|o| o.class).collect();
    classes.sort_unstable();
    classes.dedup();
    let mut overall = Vec::new();
    let mut per_class = Vec::new();
    for &m in methods {
        for (fi, &f) in s.factors.iter().enumerate() {
            overall.push(deviation(images.iter(), m, fi, f, None, s));
            for &c in &classes {
                per_class.push(deviation(
                    images.iter().filter(|o| o.class == c),
                    m,
                    fi,
                    f,
                    Some(c),
                    s,
                ));
            }
        }
    }
    (overall, per_class)
}

fn deviation<'a>(
    images: impl Iterator<Item = &'a ImageOutcome>,
    method: Method,
    fi: usize,
    factor: f64,
    class: Option<usize>,
    s: &ManipulationSettings,
) -> Deviation {
    let (mut ratios, mut clean_ok, mut edit_ok, mut n) = (Vec::new(), 0usize, 0usize, 0usize);
    for o in images {
        let Some(e) = o.methods.get(&method).and_then(|v| v.get(fi)) else {
            continue;
        };
        n += 1;
        ratios.push(e.prob / o.clean_prob);
        clean_ok += usize::from(o.clean_top1 == o.class);
        edit_ok += usize::from(e.top1 == o.class);
    }
    let nf = n.max(1) as f64;
    let seed =
        s.seed ^ (fi as u64).wrapping_mul(0x9E37_79B9) ^ class.map_or(u64::MAX, |c| c as u64);
    Deviation {
        method,
        factor,
        class,
        ratio: spread(&ratios, s.bootstrap, seed),
        acc_clean: clean_ok as f64 / nf,
        acc_edit: edit_ok as f64 / nf,
        acc_deviation: (edit_ok as f64 - clean_ok as f64) / nf,
    }
}

/// Per class, the `top` other classes with the largest mean clean probability.
fn confusion(images: &[ImageOutcome], clean: &[Vec<f64>], top: usize) -> Vec<Confusion> {
    let mut sums: BTreeMap<usize, (Vec<f64>, usize)> = BTreeMap::new();
    for (o, p) in images.iter().zip(clean) {
        let e = sums
            .entry(o.class)
            .or_insert_with(|| (vec![0.0; p.len()], 0));
        e.0.iter_mut().zip(p).for_each(|(s, v)| *s += v);
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(class, (mut s, n))| {
            s.iter_mut().for_each(|v| *v /= n as f64);
            let others = top_k(&s, top + 1)
                .into_iter()
                .filter(|&j| j != class)
                .take(top)
                .map(|j| (j, s[j]))
                .collect();
            Confusion {
                class,
                images: n,
                others,
            }
        })
        .collect()
}

/// Per image and method: F clean and after each factor, top-1 before and after, each class
/// with its name.
pub fn images_csv(m: &Manipulation, class_names: &[String]) -> String {
    let name = |c: usize| csv_field(class_names.get(c).map_or("", String::as_str));
    let mut out = String::from(
        "index,source,class,class_name,target,target_name,method,factor,prob_clean,prob_edit,ratio,top1_clean,top1_clean_name,top1_edit,top1_edit_name\n",
    );
    for o in &m.images {
        for (method, outs) in &o.methods {
            for e in outs {
                out += &format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                    o.index,
                    csv_field(&o.source),
                    o.class,
                    name(o.class),
                    o.target,
                    name(o.target),
                    method,
                    csv_num(e.factor),
                    csv_num(o.clean_prob),
                    csv_num(e.prob),
                    csv_num(e.prob / o.clean_prob),
                    o.clean_top1,
                    name(o.clean_top1),
                    e.top1,
                    name(e.top1)
                );
            }
        }
    }
    out
}

/// One row per (method, factor, class or "all"), the class with its name.
pub fn summary_csv(m: &Manipulation, class_names: &[String]) -> String {
    let mut out = String::from(
        "method,factor,class,class_name,n,ratio_mean,ratio_ci_low,ratio_ci_high,ratio_q1,ratio_median,ratio_q3,acc_clean,acc_edit,acc_deviation\n",
    );
    for d in m.overall.iter().chain(&m.per_class) {
        let r = &d.ratio;
        let (class, name) = match d.class {
            Some(c) => (c.to_string(), class_names.get(c).map_or("", String::as_str)),
            None => ("all".into(), "all"),
        };
        out += &format!(
            "{},{},{class},{},{},{},{},{},{},{},{},{},{},{}\n",
            d.method,
            csv_num(d.factor),
            csv_field(name),
            r.n,
            csv_num(r.mean),
            csv_num(r.ci_low),
            csv_num(r.ci_high),
            csv_num(r.q1),
            csv_num(r.median),
            csv_num(r.q3),
            csv_num(d.acc_clean),
            csv_num(d.acc_edit),
            csv_num(d.acc_deviation)
        );
    }
    out
}
