//! `neuronpath predict`: top-5 classes of images, or the embedding of a headless backbone.
use super::plans::PredictPlan;
use crate::experiments::predict::{accuracy, json, predict, Prediction};
use crate::format::pct;
use crate::io::inputs::Item;

pub fn run(plan: &PredictPlan) -> anyhow::Result<()> {
    let spec = &plan.model;
    let loaded = spec.load(false)?;
    let pre = spec.preprocess(&loaded)?;
    let inputs = spec.inputs(&loaded, &plan.inputs, plan.labels.as_deref())?;
    let names = loaded.class_names.clone().or(inputs.class_names.clone());
    let names = names.as_deref();
    let mut show = |item: &Item, p: &Prediction| {
        if !plan.json {
            print!("{}", p.text(item, names));
        }
    };
    let preds = predict(&loaded.model, &inputs.items, &pre, plan.batch, &mut show)?;
    if plan.json {
        let v = json(&spec.name(), names, &inputs.items, &preds);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some((correct, labelled)) = accuracy(&inputs.items, &preds) {
        let share = pct(correct as f64 / labelled as f64);
        println!("top-1 accuracy {correct}/{labelled} = {share}");
    }
    Ok(())
}
