//! A results file checked for use: the header, the successful image records in index order, and
//! the failed ones aside.
use super::error::ResultsError;
use super::file::read_results_noting;
use super::schema::{Header, ImageId, ImageResult, Method, NeuronSets, Outcome, Record};
use crate::model::{Rows, VitConfig};
use std::path::Path;

/// One image's successful record.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRecord {
    /// Position of the image in the run's inputs.
    pub index: u64,
    /// Where it came from.
    pub source: String,
    /// Which image it is (absent in files written before schema 1.2).
    pub image: Option<ImageId>,
    /// What discover found.
    pub result: ImageResult,
}

impl ImageRecord {
    /// The class the image belongs to: its label, else the attributed target.
    pub fn class(&self) -> usize {
        self.result.label.unwrap_or(self.result.target)
    }

    /// The method's neuron sets `[layer][rank]` (all K when the run kept them and `all_k`,
    /// else the path); `None` when the run did not use the method.
    pub fn sets(&self, method: Method, all_k: bool) -> Option<NeuronSets> {
        Some(self.result.methods.get(&method)?.neuron_sets(all_k))
    }
}

/// A `discover` results file, checked: classes within the model's, methods in display order.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    /// The run's header.
    pub header: Header,
    /// The model's configuration (`header.model.config`).
    pub config: VitConfig,
    /// One name per class of the model (recorded, else `class {c}`).
    pub class_names: Vec<String>,
    /// Methods of the run in display order.
    pub methods: Vec<Method>,
    /// CLS row or patch rows (`header.neurons`).
    pub rows: Rows,
    /// Neurons per layer (`header.top_k`).
    pub top_k: usize,
    /// Successful images, by index.
    pub images: Vec<ImageRecord>,
    /// (index, source, message) of images that failed in `discover`.
    pub errors: Vec<(u64, String, String)>,
    /// What the reader noticed (records that repeat an image), for the caller to show.
    pub warnings: Vec<String>,
}

impl Results {
    /// Reads and checks a results file.
    pub fn open(path: &Path) -> Result<Results, ResultsError> {
        let read = read_results_noting(path)?;
        let mut run = Results::from_parts(read.header, read.records).map_err(|message| {
            ResultsError::Invalid {
                path: path.to_path_buf(),
                message,
            }
        })?;
        run.warnings = read.warnings;
        Ok(run)
    }

    /// Checks a header and its records (the message says what is inconsistent).
    pub fn from_parts(header: Header, records: Vec<Record>) -> Result<Results, String> {
        let config = header.model.config.clone();
        let class_names = (0..config.num_classes)
            .map(|c| header.class_name(c))
            .collect();
        let mut methods = header.methods.clone();
        methods.sort();
        methods.dedup();
        let (mut images, mut errors) = (Vec::new(), Vec::new());
        for r in records {
            match r.outcome {
                Outcome::Done { result, .. } => images.push(ImageRecord {
                    index: r.index,
                    source: r.source,
                    image: r.image,
                    result,
                }),
                Outcome::Failed { error } => errors.push((r.index, r.source, error)),
            }
        }
        images.sort_by_key(|r| r.index);
        if let Some(r) = images.iter().find(|r| r.class() >= config.num_classes) {
            return Err(format!(
                "image {} has class {} but the model has {} classes",
                r.index,
                r.class(),
                config.num_classes
            ));
        }
        Ok(Results {
            rows: header.neurons,
            top_k: header.top_k,
            header,
            config,
            class_names,
            methods,
            images,
            errors,
            warnings: Vec::new(),
        })
    }

    /// Whether the run used the method.
    pub fn has_method(&self, m: Method) -> bool {
        self.methods.contains(&m)
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

    /// SHA-256 of the run's checkpoint, when recorded.
    pub fn model_sha(&self) -> Option<&str> {
        self.header.model.sha256.as_deref()
    }
}
