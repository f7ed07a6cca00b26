//! Class-wise pruning guided by top-K paths (SPEC section 9). Per class the kept set holds, per
//! (layer, rank), the most frequent top-K neuron over the class's path-building images; on other
//! images of the class a seeded random fraction p of the remaining CLS neurons of the first d
//! layers is zeroed. A control keeps a random set of the same size instead.
use super::error::{invalid, ExperimentError, Result};
use super::stats::{de_f64, spread, Spread};
use crate::attribution::{top_k, NeuronSets};
use crate::format::{csv_field, csv_num};
use crate::io::inputs::{load_batch, Item, Preprocess};
use crate::io::results::{ImageRecord, Method, Results};
use crate::model::{Edit, Edits, LayerEdit, Rows, Vit};
use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The grid of (K, p, d).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Top-K ranks the kept sets are built from.
    pub ks: Vec<usize>,
    /// Fractions in [0, 1].
    pub ps: Vec<f64>,
    /// Numbers of leading layers pruned.
    pub ds: Vec<usize>,
}

impl Grid {
    /// The authors' grid: K in {1,5,10,20,50}, p in {10,30,50,100}%, d in {3,6,9,12}.
    pub fn authors() -> Grid {
        Grid {
            ks: vec![1, 5, 10, 20, 50],
            ps: vec![0.1, 0.3, 0.5, 1.0],
            ds: vec![3, 6, 9, 12],
        }
    }

    /// K clamped to the run's K and d to the model's layers (duplicates dropped, order kept).
    pub fn clamped(&self, max_k: usize, layers: usize) -> Grid {
        let dedup = |v: Vec<usize>| {
            v.into_iter().fold(Vec::new(), |mut a, x| {
                if !a.contains(&x) {
                    a.push(x);
                }
                a
            })
        };
        Grid {
            ks: dedup(self.ks.iter().map(|&k| k.clamp(1, max_k.max(1))).collect()),
            ps: self.ps.iter().map(|p| p.clamp(0.0, 1.0)).collect(),
            ds: dedup(self.ds.iter().map(|&d| d.min(layers)).collect()),
        }
    }
}

/// How pruning runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PruningSettings {
    /// The (K, p, d) points evaluated.
    pub grid: Grid,
    /// Seed of the masks (and of the control's kept sets).
    pub seed: u64,
    /// Images per forward pass.
    pub batch: usize,
    /// Also prune keeping a random set of the same size per layer.
    pub control: bool,
    /// Bootstrap draws of each ratio's interval.
    pub bootstrap: usize,
}

impl Default for PruningSettings {
    /// The authors' grid, seed 0, 16 images per pass, with the random control.
    fn default() -> Self {
        PruningSettings {
            grid: Grid::authors(),
            seed: 0,
            batch: 16,
            control: true,
            bootstrap: 1000,
        }
    }
}

/// One class: the images its kept sets come from and those it is evaluated on.
#[derive(Clone, Debug)]
pub struct ClassPlan {
    /// Class index.
    pub class: usize,
    /// Indices of the run's images that build the kept sets.
    pub build: Vec<u64>,
    /// Images evaluated (held out from `build`).
    pub eval: Vec<Item>,
}

/// Per class: the last `fraction` of its images (by index) are held out for evaluation, the rest
/// build the sets. Classes with fewer than two images are left out.
pub fn holdout_plans(
    run: &Results,
    items: &BTreeMap<u64, Item>,
    fraction: f64,
) -> Result<Vec<ClassPlan>> {
    let mut plans = Vec::new();
    for c in run.classes_present() {
        let idx: Vec<u64> = run
            .images
            .iter()
            .filter(|r| r.class() == c)
            .map(|r| r.index)
            .collect();
        if idx.len() < 2 {
            continue;
        }
        let n_eval = ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len() - 1);
        let (build, eval) = idx.split_at(idx.len() - n_eval);
        let eval = eval
            .iter()
            .map(|i| {
                items.get(i).cloned().ok_or_else(|| {
                    ExperimentError::Invalid(format!("image {i} is not among the inputs"))
                })
            })
            .collect::<Result<_>>()?;
        plans.push(ClassPlan {
            class: c,
            build: build.to_vec(),
            eval,
        });
    }
    Ok(plans)
}

/// Per class of the run that `eval` has labelled images of: the run's images of the class build
/// the kept set, `eval`'s images of it are evaluated. Every `eval` image needs a label.
pub fn eval_plans(run: &Results, eval: &[Item]) -> Result<Vec<ClassPlan>> {
    if let Some(it) = eval.iter().find(|it| it.label.is_none()) {
        invalid!(
            "{}: --eval images need labels (class folders or --eval-labels)",
            it.source
        );
    }
    let mut plans = Vec::new();
    for c in run.classes_present() {
        let items: Vec<Item> = eval
            .iter()
            .filter(|it| it.label == Some(c))
            .cloned()
            .collect();
        if !items.is_empty() {
            let build = run
                .images
                .iter()
                .filter(|r| r.class() == c)
                .map(|r| r.index)
                .collect();
            plans.push(ClassPlan {
                class: c,
                build,
                eval: items,
            });
        }
    }
    Ok(plans)
}

/// Per layer, the most frequent neuron at each rank < k over `records`' path sets (smallest index
/// on a tie); a neuron most frequent at two ranks appears once.
pub fn kept_set(records: &[&ImageRecord], k: usize, layers: usize) -> NeuronSets {
    let sets: Vec<NeuronSets> = records
        .iter()
        .filter_map(|r| r.sets(Method::Path, true))
        .collect();
    (0..layers)
        .map(|l| {
            let mut keep = Vec::new();
            for rank in 0..k {
                let mut freq: BTreeMap<usize, usize> = BTreeMap::new();
                for s in &sets {
                    if let Some(&n) = s[l].get(rank) {
                        *freq.entry(n).or_default() += 1;
                    }
                }
                let best = freq
                    .iter()
                    .fold(None, |b: Option<(usize, usize)>, (&n, &c)| match b {
                        Some((_, bc)) if bc >= c => b,
                        _ => Some((n, c)),
                    });
                if let Some((n, _)) = best.filter(|(n, _)| !keep.contains(n)) {
                    keep.push(n);
                }
            }
            keep
        })
        .collect()
}

fn rng(seed: u64, class: usize, layer: usize, salt: u64) -> rand_chacha::ChaCha8Rng {
    let mix = (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (layer as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ mix ^ salt)
}

/// Per layer, the 0/1 mask of the CLS neurons (None for layers >= d). The neurons not in `keep`
/// are zeroed in the order of a permutation seeded by (seed, class, layer), so a larger p prunes
/// a superset of a smaller one and masks do not depend on d.
pub fn masks(
    mlp: usize,
    keep: &NeuronSets,
    p: f64,
    d: usize,
    seed: u64,
    class: usize,
) -> Vec<Option<Vec<f64>>> {
    keep.iter()
        .enumerate()
        .map(|(l, kept)| {
            if l >= d {
                return None;
            }
            let mut order: Vec<usize> = (0..mlp).collect();
            order.shuffle(&mut rng(seed, class, l, 0));
            let others: Vec<usize> = order.into_iter().filter(|n| !kept.contains(n)).collect();
            let mut m = vec![1.0; mlp];
            for &n in &others[..(p * others.len() as f64).round() as usize] {
                m[n] = 0.0;
            }
            Some(m)
        })
        .collect()
}

/// A random set with as many neurons per layer as `keep` (the control), seeded by class.
pub fn random_keep(mlp: usize, keep: &NeuronSets, seed: u64, class: usize) -> NeuronSets {
    keep.iter()
        .enumerate()
        .map(|(l, kept)| {
            let mut order: Vec<usize> = (0..mlp).collect();
            order.shuffle(&mut rng(seed, class, l, 0x5EED));
            order.truncate(kept.len());
            order
        })
        .collect()
}

/// In-memory pruning of a batch of `rows` images: `Edit::Scale` of the CLS row by the masks.
pub fn mask_edits(
    model: &Vit,
    masks: &[Option<Vec<f64>>],
    rows: usize,
) -> candle_core::Result<Edits> {
    masks
        .iter()
        .map(|m| {
            m.as_ref()
                .map(|m| {
                    let t = Tensor::new(m.as_slice(), model.device())?.to_dtype(model.dtype())?;
                    let t = t
                        .unsqueeze(0)?
                        .broadcast_as((rows, m.len()))?
                        .contiguous()?;
                    Ok(LayerEdit {
                        rows: Rows::Cls,
                        edit: Edit::Scale(t),
                    })
                })
                .transpose()
        })
        .collect()
}

/// A copy of `model` carrying the masks as its blocks' `cls_mask` (multiplied into any mask it
/// already has), ready to be saved as a pruned checkpoint.
pub fn pruned_model(model: &Vit, masks: &[Option<Vec<f64>>]) -> candle_core::Result<Vit> {
    let mut out = model.clone();
    for (b, m) in out.blocks.iter_mut().zip(masks) {
        if let Some(m) = m {
            let t = Tensor::new(m.as_slice(), model.device())?.to_dtype(model.dtype())?;
            b.cls_mask = Some(match &b.cls_mask {
                Some(old) => (old * t)?,
                None => t,
            });
        }
    }
    Ok(out)
}

/// Outcome of one grid point over a class or all classes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point {
    /// Top-K ranks of the kept set.
    pub k: usize,
    /// Fraction in [0, 1] of the other CLS neurons zeroed.
    pub p: f64,
    /// Leading layers pruned.
    pub d: usize,
    /// `None`: all evaluated images.
    pub class: Option<usize>,
    /// Images evaluated.
    pub images: usize,
    /// Mean number of CLS neurons zeroed per class.
    pub zeroed: f64,
    /// Mean F of the unpruned model.
    #[serde(deserialize_with = "de_f64")]
    pub prob_unpruned: f64,
    /// Mean F of the pruned model.
    #[serde(deserialize_with = "de_f64")]
    pub prob_pruned: f64,
    /// Per image F_pruned / F_unpruned.
    pub ratio: Spread,
    /// Top-1 accuracy in [0, 1] of the unpruned model.
    #[serde(deserialize_with = "de_f64")]
    pub acc_unpruned: f64,
    /// Top-1 accuracy in [0, 1] of the pruned model.
    #[serde(deserialize_with = "de_f64")]
    pub acc_pruned: f64,
    /// Fraction of images whose top-1 prediction is unchanged by the pruning.
    #[serde(deserialize_with = "de_f64")]
    pub agreement: f64,
    /// The control (random kept set): mean F and top-1 accuracy.
    pub control: Option<(f64, f64)>,
}

/// One class's sets and images.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassSets {
    /// Class index.
    pub class: usize,
    /// Indices of the images whose paths built the kept sets.
    pub build: Vec<u64>,
    /// Sources of the held-out images evaluated.
    pub eval: Vec<String>,
    /// Kept set per K of the grid.
    pub kept: BTreeMap<usize, NeuronSets>,
}

/// F of the attributed class and the top-1 prediction of one image under one model.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Outcome {
    /// F of the attributed class (NaN reads back from null).
    #[serde(deserialize_with = "de_f64")]
    pub prob: f64,
    /// The predicted class.
    pub top1: usize,
}

/// One evaluated image at every grid point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrunedImage {
    /// The run's image index for held-out images; the position among the `--eval` inputs else.
    pub index: u64,
    /// Where the image came from (its record's or input's `source`).
    pub source: String,
    /// Its class (the label).
    pub class: usize,
    /// F and top-1 of the unpruned model.
    pub unpruned: Outcome,
    /// Per grid point, in the order of [`Pruning::overall`].
    pub pruned: Vec<Outcome>,
    /// Per grid point, pruned around the random kept set (empty without the control).
    pub control: Vec<Outcome>,
}

/// Everything `prune` computes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pruning {
    /// What was run.
    pub settings: PruningSettings,
    /// Per class, its kept sets and images.
    pub classes: Vec<ClassSets>,
    /// One point per grid point over all evaluated images.
    pub overall: Vec<Point>,
    /// One point per grid point and class.
    pub per_class: Vec<Point>,
    /// Every evaluated image at every grid point: written to prune_images.csv only, not to
    /// prune.json, which stays the size of the grid times the classes (empty when read back).
    #[serde(default, skip_serializing)]
    pub images: Vec<PrunedImage>,
}

/// Per image: (F, top-1) unpruned, pruned, control.
#[derive(Clone, Copy, Default)]
struct Obs {
    f0: f64,
    t0: usize,
    f: f64,
    t: usize,
    fc: f64,
    tc: usize,
    truth: usize,
}

/// Runs the grid (already clamped to the model) on every plan; `progress` gets the classes done.
pub fn run_pruning(
    model: &Vit,
    run: &Results,
    plans: &[ClassPlan],
    pre: &Preprocess,
    s: &PruningSettings,
    progress: &mut dyn FnMut(usize),
) -> Result<Pruning> {
    let (layers, mlp) = (model.cfg.layers, model.cfg.mlp_dim);
    if s.grid.ds.iter().any(|&d| d > layers) || s.grid.ks.iter().any(|&k| k > run.top_k.max(1)) {
        invalid!(
            "grid outside the model (d <= {layers}) or the run (K <= {})",
            run.top_k
        );
    }
    let points: Vec<(usize, f64, usize)> = s
        .grid
        .ks
        .iter()
        .flat_map(|&k| {
            s.grid
                .ps
                .iter()
                .flat_map(move |&p| s.grid.ds.iter().map(move |&d| (k, p, d)))
        })
        .collect();
    let mut all: Vec<Vec<Obs>> = vec![Vec::new(); points.len()];
    let mut zeroed_all = vec![0.0; points.len()];
    let (mut classes, mut per_class, mut images) = (Vec::new(), Vec::new(), Vec::new());
    for (ci, plan) in plans.iter().enumerate() {
        let build: Vec<&ImageRecord> = run
            .images
            .iter()
            .filter(|r| plan.build.contains(&r.index))
            .collect();
        let kept: BTreeMap<usize, NeuronSets> = s
            .grid
            .ks
            .iter()
            .map(|&k| (k, kept_set(&build, k, layers)))
            .collect();
        let mut obs: Vec<Vec<Obs>> = vec![Vec::new(); points.len()];
        let mut zeroed = vec![0.0; points.len()];
        for chunk in plan.eval.chunks(s.batch.max(1)) {
            let x = load_batch(&chunk.iter().collect::<Vec<_>>(), pre, model.device())?;
            let b = chunk.len();
            let probs = |edits: &Edits| -> Result<Vec<Vec<f64>>> {
                Ok(model
                    .probabilities(&x, edits)?
                    .to_dtype(DType::F64)?
                    .to_vec2()?)
            };
            let clean = probs(&Vec::new())?;
            for (pi, &(k, p, d)) in points.iter().enumerate() {
                let m = masks(mlp, &kept[&k], p, d, s.seed, plan.class);
                zeroed[pi] = m
                    .iter()
                    .flatten()
                    .map(|v| v.iter().filter(|&&x| x == 0.0).count() as f64)
                    .sum();
                let pruned = probs(&mask_edits(model, &m, b)?)?;
                let control = if s.control {
                    let mc = masks(
                        mlp,
                        &random_keep(mlp, &kept[&k], s.seed, plan.class),
                        p,
                        d,
                        s.seed,
                        plan.class,
                    );
                    Some(probs(&mask_edits(model, &mc, b)?)?)
                } else {
                    None
                };
                for i in 0..b {
                    let c = plan.class;
                    // One score column (F a direction): that column is F for every class.
                    let col = if clean[i].len() == 1 { 0 } else { c };
                    let (fc, tc) = control
                        .as_ref()
                        .map_or((f64::NAN, usize::MAX), |v| (v[i][col], top_k(&v[i], 1)[0]));
                    obs[pi].push(Obs {
                        f0: clean[i][col],
                        t0: top_k(&clean[i], 1)[0],
                        f: pruned[i][col],
                        t: top_k(&pruned[i], 1)[0],
                        fc,
                        tc,
                        truth: c,
                    });
                }
            }
        }
        for (j, it) in plan.eval.iter().enumerate() {
            let at = |pi: usize, f: fn(&Obs) -> Outcome| f(&obs[pi][j]);
            let Some(first) = obs.first().and_then(|o| o.get(j)) else {
                break;
            };
            images.push(PrunedImage {
                index: it.index,
                source: it.source.clone(),
                class: plan.class,
                unpruned: Outcome {
                    prob: first.f0,
                    top1: first.t0,
                },
                pruned: (0..points.len())
                    .map(|pi| {
                        at(pi, |o| Outcome {
                            prob: o.f,
                            top1: o.t,
                        })
                    })
                    .collect(),
                control: if s.control {
                    (0..points.len())
                        .map(|pi| {
                            at(pi, |o| Outcome {
                                prob: o.fc,
                                top1: o.tc,
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            });
        }
        for (pi, &(k, p, d)) in points.iter().enumerate() {
            per_class.push(point(k, p, d, Some(plan.class), &obs[pi], zeroed[pi], s));
            all[pi].extend(obs[pi].iter().copied());
            zeroed_all[pi] += zeroed[pi] / plans.len() as f64;
        }
        classes.push(ClassSets {
            class: plan.class,
            build: plan.build.clone(),
            eval: plan.eval.iter().map(|it| it.source.clone()).collect(),
            kept,
        });
        progress(ci + 1);
    }
    let overall = points
        .iter()
        .enumerate()
        .map(|(pi, &(k, p, d))| point(k, p, d, None, &all[pi], zeroed_all[pi], s))
        .collect();
    Ok(Pruning {
        settings: s.clone(),
        classes,
        overall,
        per_class,
        images,
    })
}

fn point(
    k: usize,
    p: f64,
    d: usize,
    class: Option<usize>,
    obs: &[Obs],
    zeroed: f64,
    s: &PruningSettings,
) -> Point {
    let n = obs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Obs) -> f64| obs.iter().map(f).sum::<f64>() / n;
    let ratios: Vec<f64> = obs.iter().map(|o| o.f / o.f0).collect();
    let seed = s.seed ^ (k as u64) << 32 ^ (d as u64) << 16 ^ (p * 1000.0) as u64;
    Point {
        k,
        p,
        d,
        class,
        images: obs.len(),
        zeroed,
        prob_unpruned: mean(&|o| o.f0),
        prob_pruned: mean(&|o| o.f),
        ratio: spread(&ratios, s.bootstrap, seed),
        acc_unpruned: mean(&|o| f64::from(u8::from(o.t0 == o.truth))),
        acc_pruned: mean(&|o| f64::from(u8::from(o.t == o.truth))),
        agreement: mean(&|o| f64::from(u8::from(o.t == o.t0))),
        control: s.control.then(|| {
            (
                mean(&|o| o.fc),
                mean(&|o| f64::from(u8::from(o.tc == o.truth))),
            )
        }),
    }
}

/// One row per grid point and class (or "all"), the class with its name.
pub fn csv(p: &Pruning, class_names: &[String]) -> String {
    let mut out = String::from(
        "k,p,d,class,class_name,images,zeroed,prob_unpruned,prob_pruned,ratio_mean,ratio_ci_low,ratio_ci_high,acc_unpruned,acc_pruned,agreement,control_prob,control_acc\n",
    );
    for q in p.overall.iter().chain(&p.per_class) {
        let (cp, ca) = q.control.unwrap_or((f64::NAN, f64::NAN));
        let (class, name) = match q.class {
            Some(c) => (c.to_string(), class_names.get(c).map_or("", String::as_str)),
            None => ("all".into(), "all"),
        };
        out += &format!(
            "{},{},{},{class},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            q.k,
            csv_num(q.p),
            q.d,
            csv_field(name),
            q.images,
            csv_num(q.zeroed),
            csv_num(q.prob_unpruned),
            csv_num(q.prob_pruned),
            csv_num(q.ratio.mean),
            csv_num(q.ratio.ci_low),
            csv_num(q.ratio.ci_high),
            csv_num(q.acc_unpruned),
            csv_num(q.acc_pruned),
            csv_num(q.agreement),
            csv_num(cp),
            csv_num(ca)
        );
    }
    out
}

/// One row per evaluated image and grid point: its source and class, F and top-1 unpruned,
/// pruned and (with the control) pruned around the random kept set, classes with their names.
pub fn images_csv(p: &Pruning, class_names: &[String]) -> String {
    let name = |c: usize| csv_field(class_names.get(c).map_or("", String::as_str));
    let mut out = String::from(
        "index,source,class,class_name,k,p,d,prob_unpruned,prob_pruned,ratio,top1_unpruned,top1_unpruned_name,top1_pruned,top1_pruned_name,control_prob,control_top1,control_top1_name\n",
    );
    for im in &p.images {
        for (pi, (q, o)) in p.overall.iter().zip(&im.pruned).enumerate() {
            let control = match im.control.get(pi) {
                Some(c) => format!("{},{},{}", csv_num(c.prob), c.top1, name(c.top1)),
                None => ",,".into(),
            };
            out += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{control}\n",
                im.index,
                csv_field(&im.source),
                im.class,
                name(im.class),
                q.k,
                csv_num(q.p),
                q.d,
                csv_num(im.unpruned.prob),
                csv_num(o.prob),
                csv_num(o.prob / im.unpruned.prob),
                im.unpruned.top1,
                name(im.unpruned.top1),
                o.top1,
                name(o.top1)
            );
        }
    }
    out
}

/// Writes the model pruned for `class` at (k, p, d), its kept set built from the run's images
/// `build`, as a timm checkpoint; returns the options `predict` needs to load it.
pub fn save_pruned(
    model: &Vit,
    run: &Results,
    build: &[u64],
    class: usize,
    (k, p, d): (usize, f64, usize),
    seed: u64,
    path: &std::path::Path,
) -> Result<Vec<String>> {
    let records: Vec<&ImageRecord> = run
        .images
        .iter()
        .filter(|r| build.contains(&r.index))
        .collect();
    if records.is_empty() {
        invalid!("no path-building images for class {class}");
    }
    let keep = kept_set(&records, k, model.cfg.layers);
    let m = masks(
        model.cfg.mlp_dim,
        &keep,
        p,
        d.min(model.cfg.layers),
        seed,
        class,
    );
    let pruned = pruned_model(model, &m)?;
    let note = serde_json::json!({
        "pruned_for_class": class, "k": k, "p": p, "d": d, "seed": seed, "kept": keep,
        "source_model": run.header.model.path, "source_sha256": run.model_sha(),
    });
    super::checkpoint::save_timm(&pruned, path, &note)?;
    Ok(super::checkpoint::load_flags(&model.cfg))
}
