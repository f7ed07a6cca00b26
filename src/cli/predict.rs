//! `neuronpath predict`: top-5 classes of images, or the embedding of a headless backbone.
use super::plans::PredictPlan;
use crate::format::{num, pct};
use crate::io::inputs::load_batch;
use serde_json::json;

pub fn run(plan: &PredictPlan) -> anyhow::Result<()> {
    let spec = &plan.model;
    let loaded = spec.load(false)?;
    let model = &loaded.model;
    let pre = spec.preprocess(&loaded)?;
    let inputs = spec.inputs(&loaded, &plan.inputs, plan.labels.as_deref())?;
    let names = loaded.class_names.clone().or(inputs.class_names.clone());
    let name = |c: usize| {
        names
            .as_ref()
            .and_then(|n| n.get(c).cloned())
            .unwrap_or_else(|| c.to_string())
    };
    let items: Vec<_> = inputs.items.iter().collect();
    let (mut correct, mut labelled) = (0, 0);
    let mut out = Vec::new();
    for batch in items.chunks(plan.batch) {
        let x = load_batch(batch, &pre, model.device())?;
        if model.cfg.embedding {
            // A backbone's output is a feature vector: there are no classes to rank.
            let emb = model
                .forward(&x, &[], None, crate::model::Mode::Frozen)?
                .logits
                .to_dtype(candle_core::DType::F64)?
                .to_vec2::<f64>()?;
            for (it, e) in batch.iter().zip(emb) {
                if plan.json {
                    out.push(json!({"source": it.source, "label": it.label, "embedding": e}));
                } else {
                    let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let head: Vec<String> = e.iter().take(6).map(|v| num(*v)).collect();
                    println!(
                        "{}  embedding of {} (norm {}): [{}{}]",
                        it.source,
                        e.len(),
                        num(norm),
                        head.join(", "),
                        if e.len() > 6 { ", ..." } else { "" }
                    );
                }
            }
            continue;
        }
        let probs = model
            .probabilities(&x, &[])?
            .to_dtype(candle_core::DType::F64)?
            .to_vec2::<f64>()?;
        for (it, p) in batch.iter().zip(probs) {
            let top = crate::attribution::top_k(&p, 5);
            if let Some(l) = it.label {
                labelled += 1;
                correct += usize::from(top[0] == l);
            }
            if plan.json {
                out.push(json!({"source": it.source, "label": it.label, "prediction": top[0], "probs": p}));
            } else {
                let label = it
                    .label
                    .map(|l| format!("  (label {})", name(l)))
                    .unwrap_or_default();
                println!("{}{label}", it.source);
                for &c in &top {
                    println!("  {:>8}  {}", num(p[c]), name(c));
                }
            }
        }
    }
    if plan.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"model": spec.name(), "class_names": names, "images": out})
            )?
        );
    } else if labelled > 0 {
        println!(
            "top-1 accuracy {correct}/{labelled} = {}",
            pct(correct as f64 / labelled as f64)
        );
    }
    Ok(())
}
