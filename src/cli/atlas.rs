//! `neuronpath atlas`: how often each neuron is on the paths of each class, class similarity,
//! per-layer distributions (SPEC section 9). Needs only the results file.
use super::plans::AtlasPlan;
use crate::experiments::atlas::{self, Neighbour};
use crate::experiments::render::svg::standalone;
use crate::experiments::render::{detail, figures};
use crate::io::results::Results;
use crate::output::{mark_json, write_atomic, Outputs};
use anyhow::Result;

pub fn run(plan: &AtlasPlan) -> Result<()> {
    let run = Results::open(&plan.results)?;
    super::outputs::show(&run.warnings, &[]);
    let mut guard = Outputs::new(plan.force);
    guard.input(&plan.results);
    guard.check_set(
        &plan.out,
        "atlas.json",
        &[
            "similarity.csv",
            "layers.csv",
            "similarity.svg",
            "layers.svg",
        ],
    )?;
    let a = atlas::from_run(&run, plan.method)?;
    let write = |name: &str, text: String| -> Result<()> {
        Ok(write_atomic(&plan.out.join(name), text.as_bytes())?)
    };
    write("atlas.json", mark_json("atlas", &serde_json::to_value(&a)?))?;
    write("similarity.csv", atlas::similarity_csv(&a))?;
    write("layers.csv", atlas::layers_csv(&a))?;
    write(
        "similarity.svg",
        standalone(&figures::similarity(&a, plan.max_classes)),
    )?;
    write(
        "layers.svg",
        standalone(&detail::concentration(&a, plan.max_classes)),
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
