//! What a model says of input images for `neuronpath predict`: the top-5 classes of a classifier
//! or the feature vector of a headless backbone, with the text and JSON that show them.
use crate::attribution::top_k;
use crate::experiments::error::Result;
use crate::format::num;
use crate::io::inputs::{load_batch, Item, Preprocess};
use crate::model::{Mode, Vit};
use candle_core::DType;
use serde_json::{json, Value};

/// Classes ranked per image.
const TOP: usize = 5;
/// Leading embedding values shown in the text.
const SHOWN: usize = 6;

/// The model's output for one image.
#[derive(Clone, Debug, PartialEq)]
pub enum Prediction {
    /// A classifier's probabilities and its top-5 classes, most probable first.
    Classes {
        /// The most probable classes.
        top: Vec<usize>,
        /// Every class's probability.
        probs: Vec<f64>,
    },
    /// A backbone's output: a feature vector, with no classes to rank.
    Embedding(Vec<f64>),
}

/// Runs `model` on `items` in batches of `batch`, calling `each` as every image's prediction is
/// known (so text can be shown while later batches run); returns all of them in input order.
pub fn predict(
    model: &Vit,
    items: &[Item],
    pre: &Preprocess,
    batch: usize,
    each: &mut dyn FnMut(&Item, &Prediction),
) -> Result<Vec<Prediction>> {
    let mut out = Vec::with_capacity(items.len());
    let refs: Vec<&Item> = items.iter().collect();
    for chunk in refs.chunks(batch.max(1)) {
        let x = load_batch(chunk, pre, model.device())?;
        let rows = if model.cfg.embedding {
            model.forward(&x, &[], None, Mode::Frozen)?.logits
        } else {
            model.probabilities(&x, &[])?
        };
        for (it, row) in chunk
            .iter()
            .zip(rows.to_dtype(DType::F64)?.to_vec2::<f64>()?)
        {
            let p = if model.cfg.embedding {
                Prediction::Embedding(row)
            } else {
                Prediction::Classes {
                    top: top_k(&row, TOP),
                    probs: row,
                }
            };
            each(it, &p);
            out.push(p);
        }
    }
    Ok(out)
}

/// Class `c`'s name, or its number when there are no names.
fn class_name(names: Option<&[String]>, c: usize) -> String {
    names
        .and_then(|n| n.get(c).cloned())
        .unwrap_or_else(|| c.to_string())
}

impl Prediction {
    /// The text of one image: its source and label, then one line per top class (probability,
    /// name), or the embedding's width, norm and first values.
    pub fn text(&self, item: &Item, names: Option<&[String]>) -> String {
        match self {
            Prediction::Embedding(e) => {
                let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
                let head: Vec<String> = e.iter().take(SHOWN).map(|v| num(*v)).collect();
                let more = if e.len() > SHOWN { ", ..." } else { "" };
                format!(
                    "{}  embedding of {} (norm {}): [{}{more}]\n",
                    item.source,
                    e.len(),
                    num(norm),
                    head.join(", ")
                )
            }
            Prediction::Classes { top, probs } => {
                let label = item
                    .label
                    .map(|l| format!("  (label {})", class_name(names, l)))
                    .unwrap_or_default();
                let mut out = format!("{}{label}\n", item.source);
                for &c in top {
                    out += &format!("  {:>8}  {}\n", num(probs[c]), class_name(names, c));
                }
                out
            }
        }
    }

    /// One image as JSON: its source and label, then the prediction and probabilities, or the
    /// embedding.
    pub fn json(&self, item: &Item) -> Value {
        match self {
            Prediction::Embedding(e) => {
                json!({"source": item.source, "label": item.label, "embedding": e})
            }
            Prediction::Classes { top, probs } => {
                json!({"source": item.source, "label": item.label, "prediction": top[0], "probs": probs})
            }
        }
    }
}

/// Top-1 accuracy over the labelled images: (correct, labelled); `None` when no image has a
/// label or the model has no classes.
pub fn accuracy(items: &[Item], preds: &[Prediction]) -> Option<(usize, usize)> {
    let (mut correct, mut labelled) = (0, 0);
    for (it, p) in items.iter().zip(preds) {
        if let (Some(l), Prediction::Classes { top, .. }) = (it.label, p) {
            labelled += 1;
            correct += usize::from(top[0] == l);
        }
    }
    (labelled > 0).then_some((correct, labelled))
}

/// Every image as JSON, under the model's display name and its class names.
pub fn json(model: &str, names: Option<&[String]>, items: &[Item], preds: &[Prediction]) -> Value {
    let images: Vec<Value> = items.iter().zip(preds).map(|(it, p)| p.json(it)).collect();
    json!({"model": model, "class_names": names, "images": images})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::inputs::Pixels;
    use std::path::PathBuf;

    fn item(label: Option<usize>) -> Item {
        Item {
            index: 0,
            source: "a.png".into(),
            label,
            pixels: Pixels::File(PathBuf::from("a.png")),
            id_path: PathBuf::from("a.png"),
            row: None,
            sha256: None,
        }
    }

    fn classes(top: &[usize]) -> Prediction {
        Prediction::Classes {
            top: top.to_vec(),
            probs: vec![0.1, 0.6, 0.3],
        }
    }

    #[test]
    fn accuracy_counts_only_labelled_classified_images() {
        let items = [item(Some(1)), item(Some(2)), item(None), item(Some(0))];
        let preds = [
            classes(&[1, 2, 0]),
            classes(&[1, 2, 0]),
            classes(&[1, 2, 0]),
            Prediction::Embedding(vec![1.0]),
        ];
        assert_eq!(accuracy(&items, &preds), Some((1, 2)));
        assert_eq!(accuracy(&items[2..], &preds[2..]), None);
    }

    #[test]
    fn text_names_classes_and_falls_back_to_numbers() {
        let names = ["x".to_string(), "y".to_string()];
        let t = classes(&[1, 2]).text(&item(Some(0)), Some(&names));
        assert_eq!(t, "a.png  (label x)\n     0.600  y\n     0.300  2\n");
        let e = Prediction::Embedding(vec![3.0, 4.0]).text(&item(None), None);
        assert_eq!(e, "a.png  embedding of 2 (norm 5): [3, 4]\n");
    }
}
