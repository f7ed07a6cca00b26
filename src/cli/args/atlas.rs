//! `neuronpath atlas`: per-class neuron frequencies and class similarity.
use super::DEFAULT_RESULTS;
use crate::io::results::Method;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct AtlasArgs {
    /// Results of `neuronpath discover`.
    #[arg(long, default_value = DEFAULT_RESULTS)]
    pub results: PathBuf,
    /// Whose paths.
    #[arg(long, value_enum, default_value = "path")]
    pub method: Method,
    /// Output folder: atlas.json, similarity.csv, layers.csv, SVG figures.
    #[arg(long, short, default_value = "neuronpath-out/atlas")]
    pub out: PathBuf,
    /// At most this many classes in the figures (the CSV and JSON files have all) [range: at
    /// least 1].
    #[arg(long, default_value_t = 30)]
    pub max_classes: usize,
    /// Replace existing files at the outputs that are not earlier neuronpath outputs (never an
    /// input).
    #[arg(long)]
    pub force: bool,
}
