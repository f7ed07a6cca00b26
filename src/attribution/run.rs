//! `discover` over a whole input set: the model loaded and checked against the objective, the
//! results header written (or an earlier run resumed), every pending image of the shard
//! searched batch by batch and appended as a record (also in the authors' layout when asked),
//! and a summary of what was found.
use crate::attribution::discover::{discover_batch, ImageResult, Method, Request, TargetKind};
use crate::attribution::AttributionError;
use crate::attribution::{AttributionSettings, SearchEngine};
use crate::error_line::one_line;
use crate::format::{num, pct};
use crate::io::inputs::InputError;
use crate::io::inputs::{Item, Preprocess};
use crate::io::reference::ReferenceError;
use crate::io::reference::{self, ReferenceEntry};
use crate::io::results::ResultsError;
use crate::io::results::{
    match_records, Candidate, Header, InputsInfo, Outcome, Preprocessing, Record, RecordWriter,
    Resume, SchemaVersion,
};
use crate::io::shard::Shard;
use crate::model::load::Loaded;
use crate::model::{gradients, Objective, Rows};
use crate::setup::ModelSpec;
use crate::setup::SetupError;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Whose MLP neurons are searched (`--neuron-token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NeuronToken {
    /// The class token's.
    Cls,
    /// The distillation token's (DeiT distilled).
    Dist,
}

/// Why a discovery run stopped (an image that fails alone becomes an error record instead).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    /// The model or the inputs could not be set up.
    Setup(#[from] SetupError),
    #[error(transparent)]
    /// The results file cannot be opened, resumed or appended to.
    Results(#[from] ResultsError),
    #[error(transparent)]
    /// The authors' layout cannot be written.
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    /// The attribution of a whole batch failed (not one image's fault).
    Attribution(#[from] AttributionError),
    #[error(transparent)]
    /// A tensor operation failed.
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    /// The header cannot be serialised.
    Json(#[from] serde_json::Error),
    /// An image that cannot be read (the error of its record).
    #[error("cannot read {image}")]
    Unreadable {
        /// The image's source, as recorded.
        image: String,
        #[source]
        /// Why it cannot be read.
        source: InputError,
    },
    /// Settings that do not fit the model or the inputs (the message names the flag or file).
    #[error("{0}")]
    Invalid(String),
}

type Result<T, E = DiscoveryError> = std::result::Result<T, E>;

/// `return Err(DiscoveryError::Invalid(format!(...)))`.
macro_rules! invalid {
    ($($t:tt)*) => {
        return Err(DiscoveryError::Invalid(format!($($t)*)))
    };
}

/// One discovery run over a set of inputs, every setting resolved.
#[derive(Clone, Debug)]
pub struct DiscoveryJob {
    /// The model and how to load it.
    pub model: ModelSpec,
    /// Input paths; empty: the embedded samples.
    pub inputs: Vec<PathBuf>,
    /// Labels of loose files and .npy rows (JSON array).
    pub labels: Option<PathBuf>,
    /// The results file (JSON Lines), resumed when it exists.
    pub out: PathBuf,
    /// Riemann steps m.
    pub steps: usize,
    /// Neurons kept per layer (1: a path).
    pub top_k: usize,
    /// Sorted, without duplicates.
    pub methods: Vec<Method>,
    /// The class F scores.
    pub target: TargetKind,
    /// What F is; checked against the model once it is loaded (its output width).
    pub objective: Objective,
    /// `None`: the CLS row (all patch rows for mean-pooled models).
    pub neuron_token: Option<NeuronToken>,
    /// The authors' quirks (top-K over the K-th neuron, MAE JAS / 196).
    pub compat: bool,
    /// Seed of the random baseline.
    pub seed: u64,
    /// Images per batch (`None`: [`default_batch`]).
    pub batch: Option<usize>,
    /// Peak memory of one clamped pass in bytes (`None`: the device's default).
    pub memory_limit: Option<usize>,
    /// The search engine (both give the same paths).
    pub engine: SearchEngine,
    /// Only this slice of the inputs.
    pub shard: Option<Shard>,
    /// Only the first N images of each class.
    pub per_class: Option<usize>,
    /// Also write the authors' layout with this prefix.
    pub reference_layout: Option<PathBuf>,
    /// Test hook: stop (as if killed) after this many images.
    pub stop_after: Option<usize>,
    /// How an existing results file is resumed (error records retried, a foreign file replaced).
    pub resume: Resume,
}

/// The plan's objective checked against the loaded model (its width, a headless model's need for
/// a direction, the target class).
fn model_objective(job: &DiscoveryJob, model: &mut crate::model::Vit) -> Result<()> {
    let name = job.model.name();
    if model.cfg.embedding && !matches!(job.objective, Objective::Direction { .. }) {
        invalid!(
            "{name}: the model outputs a {}-wide embedding, not class scores: pass --direction FILE.npy",
            model.cfg.num_classes
        );
    }
    job.objective
        .validate(model.cfg.num_classes)
        .map_err(DiscoveryError::Invalid)?;
    model.objective = job.objective.clone();
    if let TargetKind::Class(c) = job.target {
        if c >= model.score_width() {
            invalid!(
                "--target class:{c}: the model has {} outputs",
                model.score_width()
            );
        }
    }
    Ok(())
}

/// The token rows whose neurons are searched.
fn neuron_rows(job: &DiscoveryJob, model: &crate::model::Vit) -> Result<Rows> {
    Ok(match job.neuron_token {
        None => Rows::of_model(&model.cfg),
        Some(NeuronToken::Dist) => {
            if model.cfg.prefix_tokens < 2 || model.cfg.registers > 0 {
                invalid!(
                    "--neuron-token dist: {} has no distillation token",
                    job.model.name()
                );
            }
            Rows::Dist
        }
        _ => Rows::Cls,
    })
}

/// `header` with the results file's own spelling of the same model, inputs and labels (another
/// path to the same file or folder), and its model hash when it is this checkpoint's by the hash
/// of earlier versions, so that only a real difference refuses the resume.
fn as_recorded(job: &DiscoveryJob, mut header: Header) -> Result<Header> {
    use crate::output::same_file;
    let Some(old) = crate::io::results::read_header(&job.out) else {
        return Ok(header);
    };
    if let (Some(given), Ok(recorded)) = (&job.model.path, old.model.to_path()) {
        if header.model.path != old.model.path && same_file(given, &recorded) {
            header.model.path = old.model.path.clone();
            header.model.path_hex = old.model.path_hex.clone();
        }
    }
    if let Some(want) = old.model.sha256.as_deref() {
        if header.model.sha256.as_deref() != Some(want) && job.model.is_hashed(want)? {
            header.model.sha256 = old.model.sha256.clone();
        }
    }
    if let Ok(recorded) = old.inputs.to_paths() {
        let same = recorded.len() == job.inputs.len()
            && recorded
                .iter()
                .zip(&job.inputs)
                .all(|(a, b)| same_file(a, b));
        if same && !job.inputs.is_empty() {
            header.inputs.paths = old.inputs.paths.clone();
            header.inputs.paths_hex = old.inputs.paths_hex.clone();
        }
    }
    if let (Ok(Some(a)), Some(b)) = (old.inputs.labels_path(), &job.labels) {
        if same_file(&a, b) {
            header.inputs.labels = old.inputs.labels.clone();
            header.inputs.labels_hex = old.inputs.labels_hex.clone();
        }
    }
    Ok(header)
}

/// Opens the results file and matches its records to `items` by identity ([`match_records`]):
/// returns the writer and the positions of the images already done. The file is rewritten
/// when records moved (files renamed, added or reordered), went stale (a file changed), or the
/// header needs the current count or schema.
fn resume(
    job: &DiscoveryJob,
    header: &Header,
    items: &[Item],
    note: &mut dyn FnMut(&str),
) -> Result<(RecordWriter, std::collections::BTreeSet<u64>)> {
    let (mut writer, resumed) = RecordWriter::open_with(&job.out, header, job.resume)?;
    for n in &resumed.notes {
        note(n);
    }
    let Some(old) = resumed.header else {
        return Ok((writer, Default::default()));
    };
    let candidates: Vec<Candidate> = items
        .iter()
        .map(|it| Candidate {
            index: it.index,
            id: it.identity(None),
            source: it.source.clone(),
            label: it.label,
        })
        .collect();
    let matched = match_records(
        resumed.records,
        &candidates,
        &mut |c| items[c].content_sha256().ok(),
        header.inputs.count as u64,
    );
    for n in &matched.notes {
        note(&format!("{}: {n}", job.out.display()));
    }
    if matched.changed || old.inputs.count != header.inputs.count || old.schema < header.schema {
        let mut new = header.clone();
        new.created = old.created;
        writer.rewrite(&new, &matched.records)?;
    }
    Ok((writer, matched.done))
}

/// Positions of the images among `items` that repeat an earlier one (same path and content:
/// an input given twice); each image is computed once.
fn repeated<'a>(items: impl Iterator<Item = &'a Item>) -> std::collections::BTreeSet<u64> {
    let mut by_place: std::collections::HashMap<_, Vec<&Item>> = Default::default();
    for it in items {
        by_place
            .entry(it.identity(None).place())
            .or_default()
            .push(it);
    }
    let mut out = std::collections::BTreeSet::new();
    for list in by_place.values().filter(|l| l.len() > 1) {
        let mut seen = std::collections::HashSet::new();
        for it in list {
            if let Ok(h) = it.content_sha256() {
                if !seen.insert(h) {
                    out.insert(it.index);
                }
            }
        }
    }
    out
}

/// Runs `job`: every pending image of the inputs searched and appended to the results file,
/// with progress on stderr and what the user should know (resumed records re-matched, errors
/// retried) passed to `note`. Images already in the file (by identity: relative path and
/// content hash) are skipped; an image that fails becomes an error record and the run goes on.
pub fn discover_all(job: &DiscoveryJob, note: &mut dyn FnMut(&str)) -> Result<Summary> {
    let start = Instant::now();
    let mut loaded = job.model.load(job.compat)?;
    model_objective(job, &mut loaded.model)?;
    let loaded = loaded;
    let model = &loaded.model;
    let pre = job.model.preprocess(&loaded)?;
    let mut inputs = job
        .model
        .inputs(&loaded, &job.inputs, job.labels.as_deref())?;
    if let Some(n) = job.per_class {
        let mut seen: BTreeMap<Option<usize>, usize> = BTreeMap::new();
        inputs.items.retain(|it| {
            let c = seen.entry(it.label).or_default();
            *c += 1;
            *c <= n
        });
    }
    let total = inputs.items.len();
    let class_names = inputs.class_names.clone().or(loaded.class_names.clone());
    check_labels(job, &inputs.items, model)?;
    let shard = job.shard;
    let rows = neuron_rows(job, model)?;
    let chunk = gradients::chunk_rows(
        model,
        job.memory_limit
            .unwrap_or_else(|| gradients::default_memory_limit(model.device())),
    );
    let batch = job
        .batch
        .unwrap_or_else(|| default_batch(model.device(), chunk, job.steps));
    let methods = job.methods.clone();
    let req = Request {
        settings: AttributionSettings {
            steps: job.steps,
            top_k: job.top_k,
            compat: job.compat,
            rows,
            chunk_rows: chunk,
            engine: job.engine,
        },
        methods: methods.clone(),
        target: job.target,
        seed: job.seed,
    };
    let header = as_recorded(
        job,
        header(job, &loaded, &pre, total, class_names.clone(), rows)?,
    )?;
    let (mut writer, done) = resume(job, &header, &inputs.items, note)?;
    if let Some(prefix) = &job.reference_layout {
        reference::write_args(prefix, &serde_json::to_value(&header)?)?;
        // The label files mirror the results file's records: a run that starts with none (a
        // new or replaced results file) starts them anew instead of appending to an earlier
        // run's entries (the CLI checked that they are ours).
        if done.is_empty() {
            reference::clear_labels(prefix)?;
        }
    }
    let mut pending: Vec<&Item> = inputs
        .items
        .iter()
        .filter(|it| shard.is_none_or(|s| s.holds(&it.id_path, it.row)))
        .filter(|it| !done.contains(&it.index))
        .collect();
    let twice = repeated(
        inputs
            .items
            .iter()
            .filter(|it| shard.is_none_or(|s| s.holds(&it.id_path, it.row))),
    );
    pending.retain(|it| !twice.contains(&it.index));
    if !twice.is_empty() {
        note(&format!(
            "{} input image(s) repeat an earlier one (same path and content): each is computed once",
            twice.len()
        ));
    }
    let skipped = inputs
        .items
        .iter()
        .filter(|it| shard.is_none_or(|s| s.holds(&it.id_path, it.row)))
        .count()
        - pending.len();
    eprintln!(
        "neuronpath discover: {} images ({} done before), {} layers x {} neurons, m={}, methods {}, {} images per batch, {} rows per pass",
        pending.len(),
        skipped,
        model.cfg.layers,
        model.cfg.mlp_dim,
        job.steps,
        req.methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(","),
        batch,
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
        done_before: skipped,
        ..Default::default()
    };
    let mut processed = 0usize;
    for batch in pending.chunks(batch.max(1)) {
        if job.stop_after.is_some_and(|n| processed >= n) {
            bar.abandon_with_message("stopped by --stop-after");
            summary.stopped = true;
            break;
        }
        let per_image = attribute_batch(model, batch, &pre, &req)?;
        let mut ref_entries = Vec::new();
        for (i, sha, res) in per_image {
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
                    let error = one_line(&e);
                    summary.errors += 1;
                    bar.println(format!("skipping {}: {error}", it.source));
                    Outcome::Failed { error }
                }
            };
            let rec = Record {
                index: it.index,
                source: it.source.clone(),
                image: Some(it.identity(sha)),
                outcome,
                extra: Default::default(),
            };
            writer.append(&rec)?;
        }
        if let Some(prefix) = &job.reference_layout {
            reference::append_batch(prefix, &ref_entries)?;
        }
        processed += batch.len();
        bar.inc(batch.len() as u64);
        if let Some(m) = summary.jas_line() {
            bar.set_message(m);
        }
    }
    if !summary.stopped {
        bar.finish();
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Images per batch when `--batch` is not given: 4 on the CPU (more only adds latency: the
/// cores are busy with one image's rows); on a GPU as many as fill one clamped pass of `chunk`
/// rows at `steps` rows per image (at least 4, at most 1024): a GPU is only fast on many rows.
pub fn default_batch(device: &candle_core::Device, chunk: usize, steps: usize) -> usize {
    if device.is_cpu() {
        4
    } else {
        (chunk / steps.max(1)).clamp(4, 1024)
    }
}

/// One image of a batch: its position, the hash of the bytes read (none when unreadable), and
/// its result or why it failed.
type Attributed = (usize, Option<String>, Result<ImageResult>);

/// Attributes a batch; an image that cannot be read, holds NaN or infinite values, or makes the
/// model's output non-finite fails alone (its error becomes its record), the others are
/// attributed together. Errors of the whole request (settings, tensor failures) stop the run.
/// The random baseline is seeded by each image's content hash, not its position.
fn attribute_batch(
    model: &crate::model::Vit,
    batch: &[&Item],
    pre: &Preprocess,
    req: &Request,
) -> Result<Vec<Attributed>> {
    let mut out: Vec<Attributed> = Vec::new();
    let mut good: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut shas: Vec<Option<String>> = vec![None; batch.len()];
    for (i, it) in batch.iter().enumerate() {
        match it.load_hashed(pre) {
            Ok((px, sha)) => {
                shas[i] = Some(sha);
                good.push((i, px))
            }
            Err(e) => out.push((
                i,
                None,
                Err(DiscoveryError::Unreadable {
                    image: it.source.clone(),
                    source: e,
                }),
            )),
        }
    }
    let key = |i: usize| {
        batch[i]
            .identity(shas[i].clone())
            .content_key()
            .unwrap_or(batch[i].index)
    };
    let run = |idx: &[&(usize, Vec<f32>)]| {
        let mut all = Vec::with_capacity(idx.len() * 3 * pre.size * pre.size);
        for (_, px) in idx {
            all.extend_from_slice(px);
        }
        let shape = (idx.len(), 3, pre.size, pre.size);
        let images = candle_core::Tensor::from_vec(all, shape, model.device())?;
        let labels: Vec<Option<usize>> = idx.iter().map(|(i, _)| batch[*i].label).collect();
        let keys: Vec<u64> = idx.iter().map(|(i, _)| key(*i)).collect();
        Ok::<_, DiscoveryError>(discover_batch(model, &images, &labels, &keys, req))
    };
    if !good.is_empty() {
        let all: Vec<&(usize, Vec<f32>)> = good.iter().collect();
        match run(&all)? {
            Ok(results) => out.extend(
                good.iter()
                    .zip(results)
                    .map(|(g, r)| (g.0, shas[g.0].clone(), Ok(r))),
            ),
            Err(e) if e.image().is_none() => return Err(e.into()),
            // One image spoiled the batch: each alone.
            Err(_) => {
                for g in &good {
                    let i = g.0;
                    let sha = shas[i].clone();
                    match run(&[g])? {
                        Ok(mut r) => out.push((i, sha, Ok(r.remove(0)))),
                        Err(e) if e.image().is_some() => out.push((i, sha, Err(e.into()))),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    Ok(out)
}

/// `--top-k` within the layer width. With `--target label`, every image needs a label; under any target a label must be one of
/// the model's classes (a label the model does not have would be accepted here under
/// `--target predicted` and refused by every later command). A direction's F has no classes:
/// its labels are the data set's own.
fn check_labels(job: &DiscoveryJob, items: &[Item], model: &crate::model::Vit) -> Result<()> {
    if job.top_k > model.cfg.mlp_dim {
        invalid!(
            "--top-k {}: the model's layers have {} neurons (1..={})",
            job.top_k,
            model.cfg.mlp_dim,
            model.cfg.mlp_dim
        );
    }
    if job.target == TargetKind::Label {
        if let Some(it) = items.iter().find(|it| it.label.is_none()) {
            invalid!(
                "{}: no ground-truth label (put images in class folders, pass --labels, or use --target predicted)",
                it.source
            );
        }
    }
    if matches!(model.objective, Objective::Direction { .. }) {
        return Ok(());
    }
    let classes = model.cfg.num_classes;
    if let Some((it, l)) = items
        .iter()
        .find_map(|it| it.label.filter(|&l| l >= classes).map(|l| (it, l)))
    {
        invalid!(
            "{}: label {l} but the model has {classes} classes (0..{})",
            it.source,
            classes.saturating_sub(1)
        );
    }
    Ok(())
}

/// The results header of this run.
fn header(
    job: &DiscoveryJob,
    loaded: &Loaded,
    pre: &Preprocess,
    total: usize,
    class_names: Option<Vec<String>>,
    rows: Rows,
) -> Result<Header> {
    let (paths, paths_hex) = match job.inputs.is_empty() {
        true => (vec![InputsInfo::EMBEDDED.into()], None),
        false => InputsInfo::from_paths(&job.inputs),
    };
    Ok(Header {
        schema: SchemaVersion::CURRENT,
        tool: "neuronpath".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: job.model.describe(loaded)?,
        preprocessing: Preprocessing {
            size: pre.size,
            resize: "pil-bilinear".into(),
            normalization: pre.norm,
        },
        inputs: InputsInfo {
            paths,
            paths_hex,
            labels: job.labels.clone(),
            labels_hex: InputsInfo::labels_hex(job.labels.as_deref()),
            count: total,
            per_class: job.per_class,
        },
        class_names,
        steps: job.steps,
        riemann: "left".into(),
        top_k: job.top_k,
        target: job.target,
        objective: loaded.model.objective.clone(),
        forms: vec!["reference".into(), "additive".into()],
        jas_default: "reference".into(),
        neurons: rows,
        dtype: job.model.dtype,
        seed: job.seed,
        compat: job.compat,
        methods: job.methods.clone(),
        shard: job.shard,
        extra: Default::default(),
    })
}

/// What a run did: running totals for the closing summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// F is a probability (positive): compare removed and clean F by their ratio, else by their
    /// difference (a logit or a dot product can be zero or negative).
    difference: bool,
    /// Images searched in this run (not those done before).
    pub images: usize,
    /// Images that failed (written as error records).
    pub errors: usize,
    /// Images whose prediction is their label.
    pub correct: usize,
    jas: BTreeMap<Method, (f64, f64, usize)>,
    /// Images of the inputs (this shard's) already in the results file before this run.
    pub done_before: usize,
    /// Stopped early by `stop_after`.
    pub stopped: bool,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

impl Summary {
    /// The summary of a results file's stored records (what an earlier run computed).
    pub fn stored(results: &std::path::Path) -> Result<Summary> {
        let (header, records) = crate::io::results::read_results(results)?;
        let mut s = Summary {
            difference: header.objective != Objective::Prob,
            ..Default::default()
        };
        for r in &records {
            match r.result() {
                Some(res) => s.add(res),
                None => s.errors += 1,
            }
        }
        Ok(s)
    }

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
            .map(|(s, _, n)| format!("mean JAS(path) {}", num(s / *n as f64)))
    }
    /// The closing table, on stdout: accuracy, then per method the mean JAS and how F changes
    /// when the path is removed.
    pub fn print(&self, out: &std::path::Path) {
        let secs = self.seconds;
        let time = if secs.is_finite() {
            format!(
                " in {} s ({} s/image)",
                num(secs),
                num(secs / self.images.max(1) as f64)
            )
        } else {
            String::new()
        };
        println!();
        println!(
            "{} images{time}, {} errors, clean top-1 accuracy {}",
            self.images,
            self.errors,
            pct(self.correct as f64 / self.images.max(1) as f64)
        );
        println!(
            "{:<12} {:>12} {:>22}",
            "method",
            "mean JAS",
            match self.difference {
                true => "F removed - F clean",
                false => "F removed / F clean",
            }
        );
        for (m, (s, r, n)) in &self.jas {
            println!(
                "{:<12} {:>12} {:>22}",
                m.name(),
                num(s / *n as f64),
                num(r / *n as f64)
            );
        }
        println!("results: {}", out.display());
    }
}
