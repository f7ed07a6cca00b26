//! A typed view of a `discover` results file: the header's run configuration and the image
//! records (error records kept aside), which every experiment reads.
use crate::attribution::discover::ImageResult;
use crate::attribution::NeuronSets;
use crate::model::{Rows, VitConfig};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;

/// `header.inputs.paths` of a run on the embedded sample images.
pub const EMBEDDED_INPUTS: &str = "embedded:fashion-mnist-samples";

/// Display order of the methods (the paper's first, controls last).
pub const METHOD_ORDER: &[&str] = &["path", "activation", "influence", "ig", "random"];

/// One image's successful record.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    pub index: u64,
    pub source: String,
    pub result: ImageResult,
}

impl ImageRecord {
    /// The class the image belongs to: its label, else the attributed target.
    pub fn class(&self) -> usize {
        self.result.label.unwrap_or(self.result.target)
    }

    /// The method's neuron sets `[layer][rank]` (all K when the run kept them, else the path).
    pub fn sets(&self, method: &str, all_k: bool) -> Option<NeuronSets> {
        let m = self.result.methods.get(method)?;
        Some(match (&m.sets, all_k) {
            (Some(s), true) => s.clone(),
            _ => m.path.iter().map(|&j| vec![j]).collect(),
        })
    }
}

/// A results file.
#[derive(Clone, Debug)]
pub struct Run {
    pub header: Value,
    pub config: VitConfig,
    /// One name per class of the model.
    pub class_names: Vec<String>,
    /// Methods of the run in display order.
    pub methods: Vec<String>,
    pub rows: Rows,
    pub top_k: usize,
    pub images: Vec<ImageRecord>,
    /// (index, source, message) of images that failed in `discover` or cannot be read here.
    pub errors: Vec<(u64, String, String)>,
}

impl Run {
    pub fn open(path: &Path) -> Result<Run> {
        let (header, records) = crate::io::records::read_records(path)?;
        Run::from_parts(header, records)
            .with_context(|| format!("{}: not a discover results file", path.display()))
    }

    pub fn from_parts(header: Value, records: Vec<Value>) -> Result<Run> {
        let config: VitConfig = serde_json::from_value(header["model"]["config"].clone())
            .context("header without a readable `model.config`")?;
        let rows: Rows = serde_json::from_value(header["neurons"].clone()).unwrap_or(Rows::Cls);
        let top_k = header["top_k"].as_u64().unwrap_or(1) as usize;
        let given = strings(&header["class_names"]);
        let class_names = (0..config.num_classes)
            .map(|c| {
                given
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("class {c}"))
            })
            .collect();
        let mut methods: Vec<String> = header["methods"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        methods.sort_by_key(|m| {
            METHOD_ORDER
                .iter()
                .position(|o| o == m)
                .unwrap_or(usize::MAX)
        });
        let (mut images, mut errors) = (Vec::new(), Vec::new());
        for r in records {
            let index = r["index"]
                .as_u64()
                .context("image record without `index`")?;
            let source = r["source"].as_str().unwrap_or_default().to_string();
            if let Some(e) = r.get("error") {
                errors.push((index, source, e.as_str().unwrap_or("error").to_string()));
                continue;
            }
            match serde_json::from_value::<ImageResult>(r) {
                Ok(result) => images.push(ImageRecord {
                    index,
                    source,
                    result,
                }),
                Err(e) => errors.push((index, source, format!("unreadable record: {e}"))),
            }
        }
        images.sort_by_key(|r| r.index);
        if let Some(r) = images.iter().find(|r| r.class() >= config.num_classes) {
            bail!(
                "image {} has class {} but the model has {} classes",
                r.index,
                r.class(),
                config.num_classes
            );
        }
        Ok(Run {
            header,
            config,
            class_names,
            methods,
            rows,
            top_k,
            images,
            errors,
        })
    }

    pub fn has_method(&self, m: &str) -> bool {
        self.methods.iter().any(|x| x == m)
    }

    /// Classes that have at least one image, ascending.
    pub fn classes_present(&self) -> Vec<usize> {
        let mut c: Vec<usize> = self.images.iter().map(|r| r.class()).collect();
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Fraction of images whose clean top-1 prediction is their class.
    pub fn clean_accuracy(&self) -> f64 {
        let ok = self
            .images
            .iter()
            .filter(|r| r.result.prediction == r.class())
            .count();
        ok as f64 / self.images.len().max(1) as f64
    }

    pub fn model_sha(&self) -> Option<&str> {
        self.header["model"]["sha256"].as_str()
    }
}

/// The strings of a JSON array (empty when it is not one).
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
