//! `neuronpath discover`: neuron paths for every input image, written as JSON Lines (resumable,
//! shardable), optionally also in the authors' layout.
use super::common::{InputArgs, ModelArgs, Shard};
use super::plans::DiscoverPlan;
use crate::attribution::discover::{discover_batch, ImageResult, Method, Request, TargetKind};
use crate::attribution::AttributionSettings;
use crate::experiments::full_report::{build_report, ReportOptions};
use crate::io::inputs::{Item, Preprocess};
use crate::io::reference::{self, ReferenceEntry};
use crate::io::results::{
    Header, InputsInfo, Outcome, Preprocessing, Record, RecordWriter, SchemaVersion,
};
use crate::model::load::Loaded;
use crate::model::{gradients, Objective, Rows};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Results file (JSON Lines). Re-running the same command resumes it.
    #[arg(long, short, default_value = super::common::DEFAULT_RESULTS)]
    pub out: PathBuf,
    /// Riemann steps m.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Neurons per layer (K > 1: the top-K variant used for pruning).
    #[arg(long, default_value_t = 1)]
    pub top_k: usize,
    /// Methods to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "path,activation,influence,random"
    )]
    pub methods: Vec<Method>,
    /// Class F scores: label, predicted or class:N [default: label; predicted with --direction].
    #[arg(long)]
    pub target: Option<TargetKind>,
    /// What F is: prob (softmax probability of the target, the paper), logit, or logit-diff:A
    /// (the target's logit minus class A's).
    #[arg(long, default_value = "prob")]
    pub objective: ObjectiveArg,
    /// For a backbone without classifier (DINOv2, CLIP towers): F is the final embedding's dot
    /// product with this vector (.npy, one row of the embedding's width).
    #[arg(long)]
    pub direction: Option<PathBuf>,
    /// Whose MLP neurons: the CLS token's, or the distillation token's (DeiT distilled)
    /// [default: cls; all patch tokens for mean-pooled MAE models].
    #[arg(long, value_enum)]
    pub neuron_token: Option<NeuronToken>,
    /// The authors' quirks: top-K sums over the K-th neuron only, MAE JAS / 196, MAE fc_norm twice.
    #[arg(long)]
    pub compat: bool,
    /// Seed of the random baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per batch (each becomes `steps` rows of a clamped pass).
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Peak memory of one clamped pass, in MiB [default: 2048 on the CPU, half the free GPU
    /// memory with --cuda].
    #[arg(long)]
    pub memory_limit_mb: Option<usize>,
    /// Process the slice i/n of the inputs (default from SLURM_ARRAY_TASK_ID/COUNT when set).
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Only the first N images of each class (class folders) or of the inputs.
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Also write the authors' layout: PREFIX.plan.json and PREFIX-{label}.rlt.jsonl.
    #[arg(long)]
    pub reference_layout: Option<PathBuf>,
    /// Write the HTML report of all experiments here when done [default for the embedded
    /// samples: report.html beside the results].
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Do not write the report.
    #[arg(long)]
    pub no_report: bool,
    /// Test hook: stop (as if killed) after this many images.
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
}

/// `--objective` values (a direction comes from `--direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectiveArg {
    Prob,
    Logit,
    LogitDiff(usize),
}

impl std::str::FromStr for ObjectiveArg {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "prob" => Ok(ObjectiveArg::Prob),
            "logit" => Ok(ObjectiveArg::Logit),
            _ => s
                .strip_prefix("logit-diff:")
                .and_then(|a| a.parse().ok())
                .map(ObjectiveArg::LogitDiff)
                .ok_or_else(|| format!("`{s}`: expected prob, logit or logit-diff:A")),
        }
    }
}

/// `--neuron-token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NeuronToken {
    Cls,
    Dist,
}

pub fn run(args: Args) -> Result<()> {
    execute(&super::plans::discover(args)?)
}

/// The plan's objective checked against the loaded model (its width, a headless model's need for
/// a direction, the target class).
fn model_objective(plan: &DiscoverPlan, model: &mut crate::model::Vit) -> Result<()> {
    let name = plan.model.name();
    if model.cfg.embedding && !matches!(plan.objective, Objective::Direction { .. }) {
        anyhow::bail!(
            "{name}: the model outputs a {}-wide embedding, not class scores: pass --direction FILE.npy",
            model.cfg.num_classes
        );
    }
    plan.objective
        .validate(model.cfg.num_classes)
        .map_err(anyhow::Error::msg)?;
    model.objective = plan.objective.clone();
    if let TargetKind::Class(c) = plan.target {
        if c >= model.score_width() {
            anyhow::bail!(
                "--target class:{c}: the model has {} outputs",
                model.score_width()
            );
        }
    }
    Ok(())
}

/// The token rows whose neurons are searched.
fn neuron_rows(plan: &DiscoverPlan, model: &crate::model::Vit) -> Result<Rows> {
    Ok(match (model.cfg.pool, plan.neuron_token) {
        (crate::model::Pool::MeanPatch, None) => Rows::Patches,
        (_, Some(NeuronToken::Dist)) => {
            if model.cfg.prefix_tokens < 2 || model.cfg.registers > 0 {
                anyhow::bail!(
                    "--neuron-token dist: {} has no distillation token",
                    plan.model.name()
                );
            }
            Rows::Dist
        }
        _ => Rows::Cls,
    })
}

fn execute(plan: &DiscoverPlan) -> Result<()> {
    let start = Instant::now();
    let mut loaded = plan.model.load(plan.compat)?;
    model_objective(plan, &mut loaded.model)?;
    let loaded = loaded;
    let model = &loaded.model;
    let pre = plan.model.preprocess(&loaded)?;
    let mut inputs = plan.model.inputs(&plan.inputs, plan.labels.as_deref())?;
    if let Some(n) = plan.per_class {
        let mut seen: BTreeMap<Option<usize>, usize> = BTreeMap::new();
        inputs.items.retain(|it| {
            let c = seen.entry(it.label).or_default();
            *c += 1;
            *c <= n
        });
    }
    let total = inputs.items.len();
    let class_names = inputs.class_names.clone().or(loaded.class_names.clone());
    check_labels(plan, &inputs.items, model.cfg.num_classes)?;
    let shard = plan.shard;
    let rows = neuron_rows(plan, model)?;
    let chunk = gradients::chunk_rows(
        model,
        plan.memory_limit
            .unwrap_or_else(|| gradients::default_memory_limit(model.device())),
    );
    let methods = plan.methods.clone();
    let req = Request {
        settings: AttributionSettings {
            steps: plan.steps,
            top_k: plan.top_k,
            compat: plan.compat,
            rows,
            chunk_rows: chunk,
        },
        methods: methods.clone(),
        target: plan.target,
        seed: plan.seed,
    };
    let header = header(plan, &loaded, &pre, total, class_names.clone(), rows)?;
    let (mut writer, done) = RecordWriter::open(&plan.out, &header)?;
    if let Some(prefix) = &plan.reference_layout {
        reference::write_args(prefix, &serde_json::to_value(&header)?)?;
    }
    let pending: Vec<&Item> = inputs
        .items
        .iter()
        .filter(|it| shard.is_none_or(|s| s.contains(it.index)))
        .filter(|it| !done.contains(&it.index))
        .collect();
    let skipped = inputs
        .items
        .iter()
        .filter(|it| shard.is_none_or(|s| s.contains(it.index)))
        .count()
        - pending.len();
    eprintln!(
        "neuronpath discover: {} images ({} done before), {} layers x {} neurons, m={}, methods {}, {} rows per pass",
        pending.len(),
        skipped,
        model.cfg.layers,
        model.cfg.mlp_dim,
        plan.steps,
        req.methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        chunk
    );
    let bar = ProgressBar::new(pending.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images  {elapsed} elapsed, ETA {eta}  {msg}",
        )
        .unwrap(),
    );
    let mut summary = Summary {
        difference: model.objective != Objective::Prob,
        ..Default::default()
    };
    let mut processed = 0usize;
    for batch in pending.chunks(plan.batch.max(1)) {
        if plan.stop_after.is_some_and(|n| processed >= n) {
            bar.abandon_with_message("stopped by --stop-after");
            return Ok(());
        }
        let per_image = attribute_batch(model, batch, &pre, &req)?;
        let mut ref_entries = Vec::new();
        for (i, res) in per_image {
            let it = batch[i];
            let outcome = match res {
                Ok(mut r) => {
                    r.name_neurons(&loaded.neuron_modules);
                    summary.add(&r);
                    if let (Some(p), Some(b)) = (
                        r.methods.get(&Method::Path),
                        r.methods.get(&Method::Activation),
                    ) {
                        ref_entries.push((
                            r.target,
                            ReferenceEntry::new(&p.path, p.jas.reference, &b.path, b.jas.reference),
                        ));
                    }
                    let label_name = class_names
                        .as_ref()
                        .and_then(|n| r.label.and_then(|l| n.get(l)).cloned());
                    Outcome::Done {
                        label_name,
                        result: r,
                    }
                }
                Err(e) => {
                    summary.errors += 1;
                    bar.println(format!("skipping {}: {e:#}", it.source));
                    Outcome::Failed {
                        error: format!("{e:#}"),
                    }
                }
            };
            let rec = Record {
                index: it.index,
                source: it.source.clone(),
                outcome,
                extra: Default::default(),
            };
            writer.append(&rec)?;
        }
        if let Some(prefix) = &plan.reference_layout {
            reference::append_batch(prefix, &ref_entries)?;
        }
        processed += batch.len();
        bar.inc(batch.len() as u64);
        if let Some(m) = summary.jas_line() {
            bar.set_message(m);
        }
    }
    bar.finish();
    summary.print(&plan.out, start.elapsed().as_secs_f64());
    if let Some(path) = &plan.report {
        if shard.is_some() {
            eprintln!("(no report for a shard: merge the shards, then run `neuronpath report`)");
            return Ok(());
        }
        let claims = build_report(&plan.out, &plan.model, &ReportOptions::default(), path)?;
        eprintln!(
            "report: {} ({} claims checked)",
            path.display(),
            claims.len()
        );
    }
    Ok(())
}

/// Attributes a batch; an image that cannot be read, holds NaN or infinite values, or makes the
/// model's output non-finite fails alone (its error becomes its record), the others are
/// attributed together. Errors of the whole request (settings, tensor failures) stop the run.
fn attribute_batch(
    model: &crate::model::Vit,
    batch: &[&Item],
    pre: &Preprocess,
    req: &Request,
) -> Result<Vec<(usize, Result<ImageResult>)>> {
    let mut out: Vec<(usize, Result<ImageResult>)> = Vec::new();
    let mut good: Vec<(usize, Vec<f32>)> = Vec::new();
    for (i, it) in batch.iter().enumerate() {
        match it.load(pre) {
            Ok(px) => good.push((i, px)),
            Err(e) => out.push((
                i,
                Err(anyhow::Error::from(e).context(format!("cannot read {}", it.source))),
            )),
        }
    }
    let run = |idx: &[&(usize, Vec<f32>)]| {
        let mut all = Vec::with_capacity(idx.len() * 3 * pre.size * pre.size);
        for (_, px) in idx {
            all.extend_from_slice(px);
        }
        let shape = (idx.len(), 3, pre.size, pre.size);
        let images = candle_core::Tensor::from_vec(all, shape, model.device())?;
        let labels: Vec<Option<usize>> = idx.iter().map(|(i, _)| batch[*i].label).collect();
        let keys: Vec<u64> = idx.iter().map(|(i, _)| batch[*i].index).collect();
        Ok::<_, anyhow::Error>(discover_batch(model, &images, &labels, &keys, req))
    };
    if !good.is_empty() {
        let all: Vec<&(usize, Vec<f32>)> = good.iter().collect();
        match run(&all)? {
            Ok(results) => out.extend(good.iter().map(|g| g.0).zip(results.into_iter().map(Ok))),
            Err(e) if e.image().is_none() => return Err(e.into()),
            // One image spoiled the batch: each alone.
            Err(_) => {
                for g in &good {
                    let i = g.0;
                    match run(&[g])? {
                        Ok(mut r) => out.push((i, Ok(r.remove(0)))),
                        Err(e) if e.image().is_some() => out.push((i, Err(e.into()))),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// With `--target label`, every image needs a label the model has.
fn check_labels(plan: &DiscoverPlan, items: &[Item], num_classes: usize) -> Result<()> {
    if plan.target == TargetKind::Label {
        if let Some(it) = items.iter().find(|it| it.label.is_none()) {
            anyhow::bail!(
                "{}: no ground-truth label (put images in class folders, pass --labels, or use --target predicted)",
                it.source
            );
        }
        if let Some(it) = items.iter().find(|it| it.label.unwrap() >= num_classes) {
            anyhow::bail!(
                "{}: label {} but the model has {} classes",
                it.source,
                it.label.unwrap(),
                num_classes
            );
        }
    }
    Ok(())
}

/// The results header of this run.
fn header(
    plan: &DiscoverPlan,
    loaded: &Loaded,
    pre: &Preprocess,
    total: usize,
    class_names: Option<Vec<String>>,
    rows: Rows,
) -> Result<Header> {
    Ok(Header {
        schema: SchemaVersion::CURRENT,
        tool: "neuronpath".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        model: plan.model.describe(loaded)?,
        preprocessing: Preprocessing {
            size: pre.size,
            resize: "pil-bilinear".into(),
            normalization: pre.norm,
        },
        inputs: InputsInfo {
            paths: if plan.inputs.is_empty() {
                vec![InputsInfo::EMBEDDED.into()]
            } else {
                plan.inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect()
            },
            labels: plan.labels.clone(),
            count: total,
            per_class: plan.per_class,
        },
        class_names,
        steps: plan.steps,
        riemann: "left".into(),
        top_k: plan.top_k,
        target: plan.target,
        objective: loaded.model.objective.clone(),
        forms: vec!["reference".into(), "additive".into()],
        jas_default: "reference".into(),
        neurons: rows,
        dtype: plan.model.dtype,
        seed: plan.seed,
        compat: plan.compat,
        methods: plan.methods.clone(),
        shard: plan.shard,
        extra: Default::default(),
    })
}

/// Running totals for the closing summary.
#[derive(Default)]
struct Summary {
    /// F is a probability (positive): compare removed and clean F by their ratio, else by their
    /// difference (a logit or a dot product can be zero or negative).
    difference: bool,
    images: usize,
    errors: usize,
    correct: usize,
    jas: BTreeMap<Method, (f64, f64, usize)>,
}

impl Summary {
    fn add(&mut self, r: &crate::attribution::discover::ImageResult) {
        self.images += 1;
        self.correct += usize::from(Some(r.prediction) == r.label);
        for (m, res) in &r.methods {
            let e = self.jas.entry(*m).or_default();
            e.0 += res.jas.reference;
            e.1 += match self.difference {
                true => res.prob_removed - r.prob_target,
                false => res.prob_removed / r.prob_target.max(1e-300),
            };
            e.2 += 1;
        }
    }
    fn jas_line(&self) -> Option<String> {
        self.jas
            .get(&Method::Path)
            .map(|(s, _, n)| format!("mean JAS(path) {:.4}", s / *n as f64))
    }
    fn print(&self, out: &std::path::Path, secs: f64) {
        eprintln!();
        eprintln!(
            "{} images in {:.1}s ({:.2} s/image), {} errors, clean top-1 accuracy {:.1}%",
            self.images,
            secs,
            secs / self.images.max(1) as f64,
            self.errors,
            100.0 * self.correct as f64 / self.images.max(1) as f64
        );
        eprintln!(
            "{:<12} {:>12} {:>22}",
            "method",
            "mean JAS",
            match self.difference {
                true => "F removed - F clean",
                false => "F removed / F clean",
            }
        );
        for (m, (s, r, n)) in &self.jas {
            eprintln!(
                "{:<12} {:>12.5} {:>22.4}",
                m.name(),
                s / *n as f64,
                r / *n as f64
            );
        }
        eprintln!("results: {}", out.display());
    }
}
