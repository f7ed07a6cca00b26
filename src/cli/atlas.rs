//! `neuronpath atlas`: how often each neuron is on the paths of each class, class similarity,
//! per-layer distributions (SPEC section 9). Needs only the results file.
use super::plans::AtlasPlan;
use crate::experiments::atlas::{self, Neighbour};
use crate::experiments::render::figures;
use crate::experiments::render::svg::standalone;
use crate::io::results::{Method, Results};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Results of `neuronpath discover`.
    #[arg(long, default_value = super::common::DEFAULT_RESULTS)]
    pub results: PathBuf,
    /// Whose paths.
    #[arg(long, value_enum, default_value = "path")]
    pub method: Method,
    /// Output folder: atlas.json, similarity.csv, layers.csv, SVG figures.
    #[arg(long, short, default_value = "neuronpath-out/atlas")]
    pub out: PathBuf,
    /// At most this many classes in the figures (the CSV and JSON files have all).
    #[arg(long, default_value_t = 30)]
    pub max_classes: usize,
}

pub fn run(args: Args) -> Result<()> {
    execute(&super::plans::atlas(args)?)
}

fn execute(plan: &AtlasPlan) -> Result<()> {
    let run = Results::open(&plan.results)?;
    let a = atlas::from_run(&run, plan.method)?;
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("{}: cannot create", plan.out.display()))?;
    let write = |name: &str, text: String| -> Result<()> {
        let p = plan.out.join(name);
        std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))
    };
    write("atlas.json", serde_json::to_string_pretty(&a)? + "\n")?;
    write("similarity.csv", atlas::similarity_csv(&a))?;
    write("layers.csv", atlas::layers_csv(&a))?;
    write(
        "similarity.svg",
        standalone(&figures::similarity(&a, plan.max_classes)),
    )?;
    write(
        "layers.svg",
        standalone(&figures::layer_distributions(&a, plan.max_classes)),
    )?;
    let name = |n: Option<Neighbour>| {
        n.map_or("-".to_string(), |n| {
            format!("{} ({:.3})", run.class_names[n.class], n.similarity)
        })
    };
    println!(
        "{:<20} {:>6}  {:<28} {:<28}",
        "class", "images", "most similar", "least similar"
    );
    for e in &a.classes {
        println!(
            "{:<20} {:>6}  {:<28} {:<28}",
            e.name,
            e.images,
            name(e.most_similar),
            name(e.least_similar)
        );
    }
    println!("outputs: {}", plan.out.display());
    Ok(())
}
