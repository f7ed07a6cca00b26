//! `neuronpath explain`: one image's path, printed, and one standalone picture (SVG and PNG) of
//! the image, its path diagram and the patch heat maps, with the maps as a `.npy` array.
use super::plans::ExplainPlan;
use crate::attribution::explain::{explain, Explanation};
use crate::attribution::AttributionSettings;
use crate::experiments::format::num;
use crate::experiments::render::explain_figure::{figure, png, Labels};
use crate::experiments::render::svg::standalone;
use crate::io::inputs::load_batch;
use crate::io::npy_out::npy_f64;
use crate::model::{gradients, Pool, Rows};
use crate::output::{mark_json, write_atomic, Kind, Outputs};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

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

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
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
    let classes = model.cfg.num_classes;
    let name = |c: usize| {
        names
            .as_ref()
            .and_then(|n| n.get(c).cloned())
            .unwrap_or_else(|| format!("class {c}"))
    };
    let x = load_batch(&[item], &pre, model.device())?;
    let probs = model
        .probabilities(&x, &[])?
        .to_dtype(candle_core::DType::F64)?
        .to_vec2::<f64>()?;
    let prediction = crate::attribution::top_k(&probs[0], 1)[0];
    let (target, kind) = match (&plan.class, item.label) {
        (Some(c), _) => (parse_class(c, names.as_deref(), classes)?, "chosen class"),
        (None, Some(l)) if l < classes => (l, "ground-truth label"),
        _ => (prediction, "predicted class"),
    };
    let rows = match model.cfg.pool {
        Pool::MeanPatch => Rows::Patches,
        _ => Rows::Cls,
    };
    let limit = plan
        .memory_limit
        .unwrap_or_else(|| gradients::default_memory_limit(model.device()));
    let s = AttributionSettings {
        steps: plan.steps,
        top_k: 1,
        compat: false,
        rows,
        chunk_rows: gradients::chunk_rows(model, limit),
        engine: plan.engine,
    };
    let prefix = plan
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("neuronpath-out/explain-{}", item.index)));
    let files: Vec<PathBuf> = ["svg", "png", "npy", "json"]
        .iter()
        .map(|e| with_ext(&prefix, e))
        .collect();
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
    eprintln!(
        "neuronpath explain: {} ({}), F = probability of {} ({kind}); search m = {}, maps m = {}",
        item.source,
        spec.name(),
        name(target),
        plan.steps,
        plan.map_steps
    );
    let e: Explanation = explain(model, &x, target, &s, plan.map_steps)?;
    let img = crate::experiments::render::thumbs::rgb_image(item, &pre)?;
    let labels = Labels {
        source: &item.source,
        class_name: &name,
        target_kind: kind,
    };
    let svg = standalone(&figure(&e, &img, &labels)?);
    let png_bytes = png(&svg, 2.0)?;
    let g = e.spatial.grid;
    write_atomic(&files[0], svg.as_bytes())?;
    write_atomic(&files[1], &png_bytes)?;
    write_atomic(
        &files[2],
        &npy_f64(&e.spatial.to_array(), &[e.path.len() + 1, g, g]),
    )?;
    let json = serde_json::json!({
        "source": item.source,
        "model": spec.name(),
        "target": target,
        "target_name": name(target),
        "target_kind": kind,
        "steps": plan.steps,
        "explanation": e,
    });
    write_atomic(&files[3], mark_json("explain", &json).as_bytes())?;
    println!(
        "{}: F = p({}) = {} ({kind}); prediction {} ({})",
        item.source,
        name(target),
        num(e.prob_target),
        name(e.prediction),
        num(e.prob_prediction)
    );
    println!(
        "JAS {} (additive {}, completeness delta {})",
        num(e.jas.reference),
        num(e.jas.additive),
        num(e.jas.delta)
    );
    println!("layer  neuron  activation  JAS term   map delta");
    for (l, n) in e.spatial.neurons.iter().enumerate() {
        println!(
            "{l:>5}  {:>6}  {:>10}  {:>8}  {:>10}",
            e.path[l],
            num(e.activations[l]),
            num(e.contributions[l]),
            num(n.delta)
        );
    }
    println!(
        "path map: F {} at the zero-patch baseline {}, delta {}",
        num(e.spatial.path.value),
        num(e.spatial.path.baseline),
        num(e.spatial.path.delta)
    );
    for f in &files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
