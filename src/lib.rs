//! neuronpath: influential neuron paths of Vision Transformers.
//!
//! Layers, each depending only on those above it in this list:
//! - [`model`]: ViT architecture, checkpoint loading, interventions on MLP hidden units, gradients.
//! - [`io`]: images, data sets, preprocessing, result files.
//! - [`attribution`]: the paper's method (JAS, layer-progressive search, top-K, MAE) and baselines.
//! - [`experiments`]: manipulation, class analysis, pruning, plots and report.
pub mod attribution;
pub mod bench;
pub mod cli;
pub mod embedded;
pub mod experiments;
pub mod io;
pub mod model;
pub mod runtime;
pub mod training;
