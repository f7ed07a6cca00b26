//! One input image explained for `neuronpath explain`: the class F is the probability of, the
//! path and its patch maps, and the four files that show them (picture as SVG and PNG, the maps
//! as `.npy`, everything as JSON), ready for the command to write.
use crate::attribution::explain::{explain, Explanation};
use crate::attribution::{top_k, AttributionSettings, SearchEngine};
use crate::experiments::error::Result;
use crate::experiments::format::num;
use crate::experiments::render::explain_figure::{figure, png, Labels};
use crate::experiments::render::svg::standalone;
use crate::experiments::render::thumbs::rgb_image;
use crate::io::inputs::{load_batch, Item, Preprocess};
use crate::io::npy_out::npy_f64;
use crate::model::{gradients, Rows, Vit};
use crate::output::mark_json;
use candle_core::{DType, Tensor};

/// How an image is explained.
#[derive(Clone, Debug)]
pub struct ExplainSettings {
    /// Riemann steps of the path search and the JAS.
    pub steps: usize,
    /// Riemann steps of the patch heat maps.
    pub map_steps: usize,
    /// Peak memory of one clamped pass in bytes (`None`: the device's default).
    pub memory_limit: Option<usize>,
    /// The search engine (both give the same path).
    pub engine: SearchEngine,
}

/// The image on the model's device, the class F is the probability of, and why that class.
pub struct Target {
    /// The preprocessed image (1, C, S, S).
    pub image: Tensor,
    /// The class.
    pub class: usize,
    /// "chosen class", "ground-truth label" or "predicted class".
    pub kind: &'static str,
}

/// The target of `item`: `chosen` when given, else its label when the model has that class,
/// else the model's prediction.
pub fn target(model: &Vit, item: &Item, pre: &Preprocess, chosen: Option<usize>) -> Result<Target> {
    let image = load_batch(&[item], pre, model.device())?;
    let (class, kind) = match (chosen, item.label) {
        (Some(c), _) => (c, "chosen class"),
        (None, Some(l)) if l < model.cfg.num_classes => (l, "ground-truth label"),
        _ => {
            let probs = model
                .probabilities(&image, &[])?
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?;
            (top_k(&probs[0], 1)[0], "predicted class")
        }
    };
    Ok(Target { image, class, kind })
}

/// An explained image and its files.
pub struct Explained {
    /// The path, its JAS terms and maps.
    pub explanation: Explanation,
    /// The picture, a standalone SVG document.
    pub svg: String,
    /// The picture rasterised at twice its size.
    pub png: Vec<u8>,
    /// The maps, (path length + 1, G, G) little-endian f64.
    pub npy: Vec<u8>,
    /// Source, model, target and the explanation, marked as an `explain` output.
    pub json: String,
}

/// Searches and explains `t`'s path for `item` and draws it; `class_name` names classes in the
/// picture and the JSON, `model_name` the model in the JSON.
pub fn explain_image(
    model: &Vit,
    (item, pre): (&Item, &Preprocess),
    t: &Target,
    (class_name, model_name): (&dyn Fn(usize) -> String, &str),
    s: &ExplainSettings,
) -> Result<Explained> {
    let limit = s
        .memory_limit
        .unwrap_or_else(|| gradients::default_memory_limit(model.device()));
    let settings = AttributionSettings {
        steps: s.steps,
        top_k: 1,
        compat: false,
        rows: Rows::of_model(&model.cfg),
        chunk_rows: gradients::chunk_rows(model, limit),
        engine: s.engine,
    };
    let e = explain(model, &t.image, t.class, &settings, s.map_steps)?;
    let labels = Labels {
        source: &item.source,
        class_name,
        target_kind: t.kind,
    };
    let svg = standalone(&figure(&e, &rgb_image(item, pre)?, &labels)?);
    let png = png(&svg, 2.0)?;
    let g = e.spatial.grid;
    let npy = npy_f64(&e.spatial.to_array(), &[e.path.len() + 1, g, g]);
    let json = serde_json::json!({
        "source": item.source,
        "model": model_name,
        "target": t.class,
        "target_name": class_name(t.class),
        "target_kind": t.kind,
        "steps": s.steps,
        "explanation": e,
    });
    Ok(Explained {
        json: mark_json("explain", &json),
        explanation: e,
        svg,
        png,
        npy,
    })
}

impl Explained {
    /// The files' contents in the order svg, png, npy, json.
    pub fn files(&self) -> [&[u8]; 4] {
        [
            self.svg.as_bytes(),
            &self.png,
            &self.npy,
            self.json.as_bytes(),
        ]
    }

    /// What the command prints: F and the prediction, the JAS, a row per path neuron, the
    /// path's map.
    pub fn summary(
        &self,
        source: &str,
        kind: &str,
        class_name: &dyn Fn(usize) -> String,
    ) -> String {
        let e = &self.explanation;
        let mut out = format!(
            "{source}: F = p({}) = {} ({kind}); prediction {} ({})\n",
            class_name(e.target),
            num(e.prob_target),
            class_name(e.prediction),
            num(e.prob_prediction)
        );
        out += &format!(
            "JAS {} (additive {}, completeness delta {})\n",
            num(e.jas.reference),
            num(e.jas.additive),
            num(e.jas.delta)
        );
        out += "layer  neuron  activation  JAS term   map delta\n";
        for (l, n) in e.spatial.neurons.iter().enumerate() {
            out += &format!(
                "{l:>5}  {:>6}  {:>10}  {:>8}  {:>10}\n",
                e.path[l],
                num(e.activations[l]),
                num(e.contributions[l]),
                num(n.delta)
            );
        }
        out += &format!(
            "path map: F {} at the zero-patch baseline {}, delta {}\n",
            num(e.spatial.path.value),
            num(e.spatial.path.baseline),
            num(e.spatial.path.delta)
        );
        out
    }
}
