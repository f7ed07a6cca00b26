//! `neuronpath report`: one self-contained HTML file with every experiment over a results file.
//! With the run's model available (the default when the header names a model that is here) the
//! manipulation and pruning are computed; otherwise the report uses what the records hold.
use super::ablate::{open_matching, progress, recorded_preprocess, run_inputs, Matched};
use super::common::ModelArgs;
use crate::experiments::claims::Claim;
use crate::experiments::manipulation::{self, Manipulation};
use crate::experiments::pruning::{self, Grid, Pruning};
use crate::experiments::render::report::{write_report, Report};
use crate::experiments::render::thumbs;
use crate::io::results::Results;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Results of `neuronpath discover`.
    #[arg(long, default_value = "neuronpath-out/discover.jsonl")]
    pub results: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The report (.html; a .json with the claims is written beside it).
    #[arg(long, short, default_value = "neuronpath-out/report.html")]
    pub out: PathBuf,
    /// Use this `ablate` output (manipulation.json) instead of computing the manipulation.
    #[arg(long)]
    pub ablate: Option<PathBuf>,
    /// Use this `prune` output (prune.json) instead of computing the pruning.
    #[arg(long)]
    pub prune: Option<PathBuf>,
    /// Do not load the model: report only what the records hold.
    #[arg(long)]
    pub no_model: bool,
    /// Do not compute the pruning grid.
    #[arg(long)]
    pub no_prune: bool,
    /// Groups of classes that look alike, e.g. "0,2,4,6;5,7,9" [default: known groups for
    /// Fashion-MNIST names, else the model's confusions].
    #[arg(long)]
    pub look_alike: Option<String>,
    /// At most this many per-image sections.
    #[arg(long, default_value_t = 500)]
    pub max_images: usize,
}

pub fn run(args: Args) -> Result<()> {
    let claims = build(&args)?;
    for c in &claims {
        println!("{:<14} {}", c.verdict.words(), c.claim);
    }
    println!("report: {}", args.out.display());
    Ok(())
}

/// `neuronpath report` with defaults: computes everything the run's model allows (pass
/// `ModelArgs` as given to discover) and writes `out`; returns the claims.
pub fn report_with_defaults(results: &Path, model: &ModelArgs, out: &Path) -> Result<Vec<Claim>> {
    build(&Args {
        results: results.to_path_buf(),
        model: model.clone(),
        out: out.to_path_buf(),
        ablate: None,
        prune: None,
        no_model: false,
        no_prune: false,
        look_alike: None,
        max_images: 500,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not the expected output", p.display()))
}

fn build(args: &Args) -> Result<Vec<Claim>> {
    let run = Results::open(&args.results)?;
    let mut notes = Vec::new();
    let matched: Option<Matched> = if args.no_model {
        None
    } else {
        match open_matching(&run, &args.model) {
            Ok(m) => Some(m),
            Err(e) if args.model.model.is_some() => return Err(e),
            Err(e) => {
                eprintln!("note: continuing without the model: {e:#}");
                notes.push(format!(
                    "Model not available ({e:#}): manipulation from the records only, no pruning."
                ));
                None
            }
        }
    };
    let manipulation: Option<Manipulation> = match (&args.ablate, &matched) {
        (Some(p), _) => Some(read_json(p)?),
        (None, Some(m)) => {
            let s = manipulation::Settings {
                seed: run.header.seed,
                ..Default::default()
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
    let pruning: Option<Pruning> = match (&args.prune, &matched) {
        (Some(p), _) => Some(read_json(p)?),
        (None, Some(m)) if !args.no_prune => compute_pruning(&run, m, &mut notes)?,
        _ => None,
    };
    let mut report = Report::new(&run, &args.results.display().to_string());
    report.manipulation = manipulation.as_ref();
    report.pruning = pruning.as_ref();
    report.max_images = args.max_images;
    report.look_alike = match &args.look_alike {
        Some(s) => parse_groups(s, run.config.num_classes)?,
        None => Vec::new(),
    };
    report.thumbnails = thumbnails(&run, matched.as_ref(), args.max_images);
    report.notes = notes;
    write_report(&report, &args.out)
}

fn compute_pruning(run: &Results, m: &Matched, notes: &mut Vec<String>) -> Result<Option<Pruning>> {
    let plans = pruning::holdout_plans(run, &m.items, 0.5)?;
    if plans.is_empty() {
        notes.push("Pruning skipped: no class has two or more images.".into());
        return Ok(None);
    }
    let s = pruning::Settings {
        grid: Grid::authors().clamped(run.top_k, m.loaded.model.cfg.layers),
        seed: 0,
        batch: 16,
        control: true,
        bootstrap: 1000,
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

/// Thumbnails of the shown images, from the model's preprocessing or the recorded one.
fn thumbnails(
    run: &Results,
    m: Option<&Matched>,
    max: usize,
) -> std::collections::BTreeMap<u64, String> {
    let items = match m {
        Some(m) => Some((m.items.clone(), m.pre)),
        None => run_inputs(run).ok().map(|i| (i, recorded_preprocess(run))),
    };
    let Some((items, pre)) = items else {
        return Default::default();
    };
    run.images
        .iter()
        .take(max)
        .filter_map(|r| Some((r.index, thumbs::data_uri(items.get(&r.index)?, &pre).ok()?)))
        .collect()
}

fn parse_groups(s: &str, classes: usize) -> Result<Vec<Vec<usize>>> {
    s.split(';')
        .map(|g| {
            let v = g.split(',').map(|c| c.trim().parse::<usize>()).collect::<Result<Vec<_>, _>>();
            match v {
                Ok(v) if v.len() >= 2 && v.iter().all(|&c| c < classes) => Ok(v),
                _ => bail!("--look-alike: `{g}` is not a group of two or more class indices below {classes}"),
            }
        })
        .collect()
}
