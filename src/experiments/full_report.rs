//! The whole report of a results file: the experiments its model allows (manipulation,
//! pruning), or what the records hold without it, rendered into one HTML page.
use super::claims::Claim;
use super::detail;
use super::error::{invalid, ExperimentError, Result};
use super::manipulation::{self, Manipulation};
use super::pruning::{self, Pruning};
use super::render::report::{write_report, Report};
use super::render::thumbs;
use crate::error_line::one_line;
use crate::io::inputs::{Item, Preprocess};
use crate::io::results::{Method, Results};
use crate::setup::{recorded_preprocess, reopen, run_inputs, ModelSpec, Reopened};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the report computes and shows; `Default` is what `discover` and a plain `report` do.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Use this `ablate` output instead of computing the manipulation.
    pub ablate: Option<PathBuf>,
    /// Use this `prune` output instead of computing the pruning.
    pub prune: Option<PathBuf>,
    /// Load the run's model (else: only what the records hold).
    pub use_model: bool,
    /// Compute the pruning grid (with the model).
    pub compute_pruning: bool,
    /// Groups of look-alike classes (empty: built-in groups for known class names).
    pub look_alike: Vec<Vec<usize>>,
    /// At most this many per-image sections.
    pub max_images: usize,
    /// How the manipulation runs (its seed is the run's).
    pub manipulation: manipulation::ManipulationSettings,
    /// How the pruning runs (its grid is clamped to the run's K and the model's layers).
    pub pruning: pruning::PruningSettings,
    /// Fraction of each class's images held out for evaluating the pruning.
    pub holdout: f64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            ablate: None,
            prune: None,
            use_model: true,
            compute_pruning: true,
            look_alike: Vec::new(),
            max_images: Report::DEFAULT_MAX_IMAGES,
            manipulation: manipulation::ManipulationSettings::default(),
            pruning: pruning::PruningSettings::default(),
            holdout: 0.5,
        }
    }
}

/// A progress bar on stderr: `n` `what` with elapsed time and ETA.
pub fn progress(n: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    let style = format!("{{bar:40}} {{pos}}/{{len}} {what}  {{elapsed}} elapsed, ETA {{eta}}");
    if let Ok(s) = ProgressStyle::with_template(&style) {
        bar.set_style(s);
    }
    bar
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let text = std::fs::read_to_string(p).map_err(|e| ExperimentError::file(p, "read", e))?;
    serde_json::from_str(&text).map_err(|source| ExperimentError::Format {
        path: p.to_path_buf(),
        source,
    })
}

/// Computes what the run's model allows (unless `o` says otherwise) and writes the report to
/// `out` (.html, with a .json of the claims beside it); returns the claims.
pub fn build_report(
    results: &Path,
    spec: &ModelSpec,
    o: &ReportOptions,
    out: &Path,
) -> Result<Vec<Claim>> {
    let run = Results::open(results)?;
    // What the reader noticed (repeated records) is shown in the report.
    let mut notes = run.warnings.clone();
    let matched: Option<Reopened> = if !o.use_model {
        None
    } else {
        match reopen(&run, spec) {
            Ok(m) => {
                notes.extend(m.notes.iter().cloned());
                Some(m)
            }
            Err(e) if spec.path.is_some() => return Err(e.into()),
            Err(e) => {
                let e = one_line(&e);
                eprintln!("note: continuing without the model: {e}");
                notes.push(format!(
                    "Model not available ({e}): manipulation from the records only, no pruning."
                ));
                None
            }
        }
    };
    let manipulation: Option<Manipulation> = match (&o.ablate, &matched) {
        (Some(p), _) => Some(read_json(p)?),
        (None, Some(m)) => {
            let s = manipulation::ManipulationSettings {
                seed: run.header.seed,
                ..o.manipulation.clone()
            };
            let bar = progress(run.images.len(), "images (manipulation)");
            let r = manipulation::run_manipulation(
                &m.loaded.model,
                &run,
                &m.items,
                &m.pre,
                &s,
                &mut |n| bar.set_position(n as u64),
            )?;
            bar.finish_and_clear();
            Some(r)
        }
        _ => None,
    };
    let pruning: Option<Pruning> = match (&o.prune, &matched) {
        (Some(p), _) => Some(read_json(p)?),
        (None, Some(m)) if o.compute_pruning => compute_pruning(&run, m, o, &mut notes)?,
        _ => None,
    };
    let mut report = Report::new(&run, &results.display().to_string());
    report.manipulation = manipulation.as_ref();
    report.pruning = pruning.as_ref();
    report.max_images = o.max_images;
    if let Some(c) = o
        .look_alike
        .iter()
        .flatten()
        .find(|&&c| c >= run.config.num_classes)
    {
        invalid!(
            "--look-alike: class {c} but the model has {} classes",
            run.config.num_classes
        );
    }
    report.look_alike = o.look_alike.clone();
    let sample = detail::sample(&run, o.max_images);
    if let Some(m) = &matched {
        let bar = progress(sample.len(), "images (heat maps)");
        let details =
            detail::image_details(&m.loaded.model, &run, &m.items, &m.pre, &sample, &mut |n| {
                bar.set_position(n as u64)
            })?;
        bar.finish_and_clear();
        report.details = details.into_iter().map(|d| (d.index, d)).collect();
        if let Ok(a) = atlas_of(&run) {
            let bar = progress(run.images.len(), "images (neuron activations)");
            report.dataset = detail::dataset_view(
                &m.loaded.model,
                &run,
                &m.items,
                &m.pre,
                &a,
                report.max_classes,
                &mut |n| bar.set_position(n as u64),
            )?;
            bar.finish_and_clear();
        }
    }
    let mut shown: BTreeSet<u64> = sample.iter().copied().collect();
    shown.extend(
        report
            .dataset
            .iter()
            .flat_map(|v| v.top.iter().map(|t| t.0)),
    );
    let detailed: BTreeSet<u64> = report.details.keys().copied().collect();
    (report.thumbnails, report.greys) = thumbnails(&run, matched.as_ref(), &shown, &detailed);
    report.notes = notes;
    write_report(&report, out)
}

fn compute_pruning(
    run: &Results,
    m: &Reopened,
    o: &ReportOptions,
    notes: &mut Vec<String>,
) -> Result<Option<Pruning>> {
    let plans = pruning::holdout_plans(run, &m.items, o.holdout)?;
    if plans.is_empty() {
        notes.push("Pruning skipped: no class has two or more images.".into());
        return Ok(None);
    }
    let s = pruning::PruningSettings {
        grid: o.pruning.grid.clamped(run.top_k, m.loaded.model.cfg.layers),
        ..o.pruning.clone()
    };
    let bar = progress(plans.len(), "classes (pruning)");
    let r = pruning::run_pruning(&m.loaded.model, run, &plans, &m.pre, &s, &mut |n| {
        bar.set_position(n as u64)
    })?;
    bar.finish_and_clear();
    if run.top_k == 1 {
        notes.push("Pruning used K = 1 (the run kept one neuron per layer); run discover with --top-k for the full K grid.".into());
    }
    Ok(Some(r))
}

/// The atlas the report draws (the paper's paths, else the run's first method's).
fn atlas_of(run: &Results) -> Result<super::atlas::Atlas> {
    let method = if run.has_method(Method::Path) {
        Method::Path
    } else {
        run.methods.first().copied().unwrap_or(Method::Path)
    };
    super::atlas::from_run(run, method)
}

/// Thumbnails of the `shown` images and light-grey versions of the `detailed` ones (under
/// their heat maps), from the model's preprocessing or the recorded one.
fn thumbnails(
    run: &Results,
    m: Option<&Reopened>,
    shown: &BTreeSet<u64>,
    detailed: &BTreeSet<u64>,
) -> (BTreeMap<u64, String>, BTreeMap<u64, String>) {
    let items = match m {
        Some(m) => Some((m.items.clone(), m.pre)),
        None => run_inputs(run).ok().map(|i| (i, recorded_preprocess(run))),
    };
    let Some((items, pre)) = items else {
        return Default::default();
    };
    let uris = |set: &BTreeSet<u64>, f: fn(&Item, &Preprocess) -> Result<String>| {
        set.iter()
            .filter_map(|i| Some((*i, f(items.get(i)?, &pre).ok()?)))
            .collect()
    };
    (
        uris(shown, thumbs::data_uri),
        uris(detailed, thumbs::grey_data_uri),
    )
}
