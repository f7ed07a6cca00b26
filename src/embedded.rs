//! The embedded default: a ViT trained by `neuronpath train` on Fashion-MNIST and sample images
//! from its test split (assets/fashion-mnist, compiled into the binary by build.rs).
use crate::io::inputs::{Inputs, Item, Pixels};
use crate::model::load::{load_hf_parts, Loaded};
use crate::model::{LoadOptions, ModelError};
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// How the embedded model is named in outputs and errors.
pub const MODEL_NAME: &str = "embedded:fashion-mnist-vit";

/// Loads the embedded model through the Hugging Face loader.
pub fn model(opts: &LoadOptions) -> Result<Loaded, ModelError> {
    let (config, weights, preprocessor) = MODEL.ok_or_else(|| {
        ModelError::format(
            Path::new(MODEL_NAME),
            "this build has no embedded model (assets/fashion-mnist/model missing); pass --model",
        )
    })?;
    load_hf_parts(
        Path::new(MODEL_NAME),
        config,
        weights,
        Some(preprocessor),
        opts,
    )
}

/// The raw bytes the embedded model was loaded from (for hashing).
pub fn model_bytes() -> Option<&'static [u8]> {
    MODEL.map(|m| m.1)
}

/// The embedded sample images, class folders in order, as inputs with labels.
pub fn samples() -> Inputs {
    let mut classes: Vec<&str> = SAMPLES.iter().map(|s| s.0).collect();
    classes.dedup();
    let items = SAMPLES
        .iter()
        .enumerate()
        .map(|(i, (class, file, bytes))| {
            let source = format!("embedded:{class}/{file}");
            Item {
                index: i as u64,
                id_path: source.clone().into(),
                source,
                label: classes.iter().position(|c| c == class),
                pixels: Pixels::Embedded(bytes),
                row: None,
                sha256: None,
            }
        })
        .collect();
    // Folder names are "NN-slug"; the display names come from the model's config.
    Inputs {
        items,
        class_names: None,
    }
}
