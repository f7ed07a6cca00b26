//! `neuronpath ablate`: remove / enhance / scale each method's path neurons (SPEC section 9).
//! Also the glue the model-based experiments share: re-opening a results file's model and inputs.
use super::common::{GeluArg, ModelArgs};
use crate::embedded;
use crate::experiments::manipulation::{self, run_manipulation, Settings};
use crate::experiments::render::figures;
use crate::experiments::render::svg::standalone;
use crate::io::inputs::{gather, Inputs, Item, Preprocess};
use crate::io::results::Results;
use crate::model::load::Loaded;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Results of `neuronpath discover`.
    #[arg(long, default_value = "neuronpath-out/discover.jsonl")]
    pub results: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output folder: manipulation.json, CSV tables, SVG figures.
    #[arg(long, short, default_value = "neuronpath-out/ablate")]
    pub out: PathBuf,
    /// Factors applied to every path neuron (0 removes, 2 enhances).
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    pub factors: Vec<f64>,
    /// Scale all K neurons per layer of a top-K run (default: the top-1 path).
    #[arg(long)]
    pub all_k: bool,
    /// Seed of the random control when the run has no random paths [default: the run's seed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Bootstrap resamples of the confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

pub fn run(args: Args) -> Result<()> {
    let run = Results::open(&args.results)?;
    let m = open_matching(&run, &args.model)?;
    let settings = Settings {
        factors: args.factors.clone(),
        all_k: args.all_k,
        seed: args.seed.unwrap_or(run.header.seed),
        bootstrap: args.bootstrap,
        batch: args.batch,
    };
    eprintln!(
        "neuronpath ablate: {} images, methods {}, factors {:?}",
        run.images.len(),
        run.methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(","),
        settings.factors
    );
    let bar = progress(run.images.len(), "images");
    let man = run_manipulation(
        &m.loaded.model,
        &run,
        &m.items,
        &m.pre,
        &settings,
        &mut |n| bar.set_position(n as u64),
    )?;
    bar.finish_and_clear();
    check_against_records(&run, &man, args.all_k);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let write = |name: &str, text: String| -> Result<()> {
        let p = args.out.join(name);
        std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))
    };
    write(
        "manipulation.json",
        serde_json::to_string_pretty(&man)? + "\n",
    )?;
    write("manipulation_images.csv", manipulation::images_csv(&man))?;
    write("manipulation_summary.csv", manipulation::summary_csv(&man))?;
    let rows: Vec<_> = man
        .overall
        .iter()
        .map(|d| (d.method, d.factor, d.ratio))
        .collect();
    write("deviation.svg", standalone(&figures::deviation(&rows)))?;
    write("accuracy.svg", standalone(&figures::accuracy(&man)))?;
    println!(
        "{:<12} {:>8} {:>28} {:>22}",
        "method", "factor", "F edit / F clean [95% CI]", "top-1 acc clean -> edit"
    );
    for d in &man.overall {
        println!(
            "{:<12} {:>8} {:>10.4} [{:.4}, {:.4}] {:>11.1}% -> {:.1}%",
            d.method,
            d.factor,
            d.ratio.mean,
            d.ratio.ci_low,
            d.ratio.ci_high,
            100.0 * d.acc_clean,
            100.0 * d.acc_edit
        );
    }
    println!("outputs: {}", args.out.display());
    Ok(())
}

/// Factor 0 and 2 of the same neurons must reproduce what discover recorded.
fn check_against_records(run: &Results, man: &manipulation::Manipulation, all_k: bool) {
    if run.top_k > 1 && !all_k {
        return;
    }
    let mut worst: f64 = 0.0;
    for (o, r) in man.images.iter().zip(&run.images) {
        for (method, outs) in &o.methods {
            let Some(rec) = r.result.methods.get(method) else {
                continue;
            };
            for e in outs {
                let want = if e.factor == 0.0 {
                    rec.prob_removed
                } else if e.factor == 2.0 {
                    rec.prob_enhanced
                } else {
                    continue;
                };
                worst = worst.max((e.prob - want).abs());
            }
        }
    }
    eprintln!("agreement with discover's recorded removed/enhanced probabilities: max |difference| {worst:.2e}");
}

pub(crate) fn progress(n: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    let style = format!("{{bar:40}} {{pos}}/{{len}} {what}  {{elapsed}} elapsed, ETA {{eta}}");
    bar.set_style(ProgressStyle::with_template(&style).unwrap());
    bar
}

/// A results file's model and inputs, checked against its header.
pub(crate) struct Matched {
    pub loaded: Loaded,
    pub pre: Preprocess,
    /// The run's inputs by index.
    pub items: BTreeMap<u64, Item>,
}

/// `args` with what it leaves open taken from the header: model path, heads, LayerNorm eps,
/// image size, GELU, normalisation.
fn resolve(run: &Results, args: &ModelArgs) -> Result<ModelArgs> {
    let mut a = args.clone();
    let h = &run.header;
    let c = &run.config;
    if a.model.is_none() {
        let recorded = h.model.path.as_str();
        if recorded != embedded::MODEL_NAME {
            if !Path::new(recorded).exists() {
                bail!(
                    "the results were computed with {recorded}, which is not there; pass --model"
                );
            }
            a.model = Some(PathBuf::from(recorded));
        }
    }
    a.heads = a.heads.or(Some(c.heads));
    a.ln_eps = a.ln_eps.or(Some(c.ln_eps));
    a.image_size = a.image_size.or(Some(c.image_size));
    a.gelu = a.gelu.or(Some(match c.gelu {
        crate::model::Gelu::Erf => GeluArg::Erf,
        crate::model::Gelu::Tanh => GeluArg::Tanh,
        crate::model::Gelu::Quick => GeluArg::Quick,
    }));
    a.normalize = a.normalize.or(Some(h.preprocessing.normalization));
    Ok(a)
}

/// Loads the run's model (refusing another one) and gathers its inputs.
pub(crate) fn open_matching(run: &Results, args: &ModelArgs) -> Result<Matched> {
    let a = resolve(run, args)?;
    let compat = run.header.compat;
    let loaded = a.load(compat)?;
    let desc = a.describe(&loaded)?;
    if let Some(want) = run.model_sha() {
        if desc.sha256.as_deref() != Some(want) {
            bail!(
                "{} (sha256 {}) is not the model of these results ({} with sha256 {want}); pass the same --model as discover",
                a.name(),
                desc.sha256.as_deref().unwrap_or("?"),
                run.header.model.path
            );
        }
    }
    if desc.config != run.header.model.config {
        let (got, want) = (
            serde_json::to_value(&desc.config)?,
            serde_json::to_value(&run.header.model.config)?,
        );
        let key = want
            .as_object()
            .and_then(|o| o.keys().find(|k| got[k.as_str()] != o[k.as_str()]).cloned())
            .unwrap_or_else(|| "config".into());
        bail!(
            "{}: loaded with {key} = {} but the results used {}; pass the same options as discover",
            a.name(),
            got[&key],
            want[&key]
        );
    }
    let (recorded_dtype, dtype) = (run.header.dtype, a.dtype);
    if recorded_dtype != dtype {
        eprintln!("note: the results were computed in {recorded_dtype}, this run uses {dtype} (pass --dtype {recorded_dtype} to reproduce them exactly)");
    }
    let pre = a.preprocess(&loaded)?;
    let items = run_inputs(run)?;
    Ok(Matched { loaded, pre, items })
}

/// The run's inputs by index, gathered again from the header and checked against the records.
pub(crate) fn run_inputs(run: &Results) -> Result<BTreeMap<u64, Item>> {
    let recorded = &run.header.inputs;
    let inputs: Inputs = if recorded.is_embedded() {
        embedded::samples()
    } else {
        let p: Vec<PathBuf> = recorded.paths.iter().map(PathBuf::from).collect();
        gather(&p, recorded.labels.as_deref())
            .context("cannot gather the run's inputs again (run from the folder discover ran in)")?
    };
    let items: BTreeMap<u64, Item> = inputs.items.into_iter().map(|it| (it.index, it)).collect();
    for r in &run.images {
        match items.get(&r.index) {
            Some(it) if it.source == r.source => {}
            Some(it) => bail!(
                "the inputs changed: image {} was {}, now {}",
                r.index,
                r.source,
                it.source
            ),
            None => bail!(
                "the inputs changed: image {} ({}) is missing",
                r.index,
                r.source
            ),
        }
    }
    Ok(items)
}

/// The preprocessing recorded in the header (for thumbnails without a model).
pub(crate) fn recorded_preprocess(run: &Results) -> Preprocess {
    let p = &run.header.preprocessing;
    Preprocess {
        size: p.size,
        norm: p.normalization,
    }
}
