//! `neuronpath explain`: one image's path, printed, and one standalone picture (SVG and PNG) of
//! the image, its path diagram and the patch heat maps, with the maps as a `.npy` array.
use super::plans::ExplainPlan;
use crate::experiments::explain::{explain_image, target};
use crate::output::{write_atomic, Kind, Outputs};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// `class` as an index: a number, or a class name (case-insensitive).
pub fn parse_class(class: &str, names: Option<&[String]>, classes: usize) -> Result<usize> {
    let c = match class.trim().parse::<usize>() {
        Ok(c) => c,
        Err(_) => names
            .and_then(|n| n.iter().position(|x| x.eq_ignore_ascii_case(class.trim())))
            .with_context(|| match names {
                Some(n) => format!(
                    "--class {class:?}: not a class index or one of the class names ({})",
                    n.join(", ")
                ),
                None => {
                    format!("--class {class:?}: not a class index (the model has no class names)")
                }
            })?,
    };
    if c >= classes {
        bail!(
            "--class {c}: the model has {classes} classes (0..{})",
            classes - 1
        );
    }
    Ok(c)
}

pub fn run(plan: &ExplainPlan) -> Result<()> {
    let spec = &plan.model;
    let loaded = spec.load(false)?;
    let model = &loaded.model;
    let pre = spec.preprocess(&loaded)?;
    let paths: Vec<PathBuf> = plan.image.iter().cloned().collect();
    let inputs = spec.inputs(&loaded, &paths, plan.labels.as_deref())?;
    let names = loaded.class_names.clone().or(inputs.class_names.clone());
    let count = inputs.items.len();
    let item = inputs.items.get(plan.index).with_context(|| {
        format!(
            "--index {}: the input has {count} image(s) (0..{})",
            plan.index,
            count.max(1) - 1
        )
    })?;
    let name = |c: usize| {
        names
            .as_ref()
            .and_then(|n| n.get(c).cloned())
            .unwrap_or_else(|| format!("class {c}"))
    };
    let classes = model.cfg.num_classes;
    let chosen = plan.class.as_deref();
    let chosen = chosen
        .map(|c| parse_class(c, names.as_deref(), classes))
        .transpose()?;
    let files = plan.files(item.index);
    // The .json carries the mark; the picture and the maps are ours when it is.
    let mut guard = Outputs::new(plan.force);
    guard
        .inputs(&plan.model.path)
        .inputs(&plan.image)
        .inputs(&plan.labels);
    guard.check(&files[3], Kind::Json)?;
    for f in &files[..3] {
        guard.check(f, Kind::Beside(files[3].clone()))?;
    }
    let t = target(model, item, &pre, chosen)?;
    eprintln!(
        "neuronpath explain: {} ({}), F = probability of {} ({}); search m = {}, maps m = {}",
        item.source,
        spec.name(),
        name(t.class),
        t.kind,
        plan.settings.steps,
        plan.settings.map_steps
    );
    let out = explain_image(
        model,
        (item, &pre),
        &t,
        (&name, &spec.name()),
        &plan.settings,
    )?;
    for (f, bytes) in files.iter().zip(out.files()) {
        write_atomic(f, bytes)?;
    }
    print!("{}", out.summary(&item.source, t.kind, &name));
    for f in &files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
