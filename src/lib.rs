//! neuronpath: influential neuron paths of Vision Transformers.
//!
//! Layers, each depending only on those above it in this list:
//! - [`model`]: ViT architecture, checkpoint loading, interventions on MLP hidden units, gradients.
//! - [`io`]: images, data sets, preprocessing, result files.
//! - [`attribution`]: the paper's method (JAS, layer-progressive search, top-K, MAE) and baselines.
//! - [`experiments`]: manipulation, class analysis, pruning, plots and report.
//! - [`training`]: how the embedded Fashion-MNIST model was trained (model + io).
//! - [`embedded`], [`bench`](mod@bench): the shipped default model and samples; the speed benchmark.
//! - [`cli`]: the thin `neuronpath` commands over all of the above.
//!
//! The library sets no global allocator, signal handler or environment variable; the
//! `neuronpath` binary does (its `runtime` module: mimalloc, SIGPIPE, candle's thread pool).
pub mod attribution;
pub mod bench;
pub mod cli;
pub mod embedded;
pub mod experiments;
pub mod io;
pub mod limits;
pub mod model;
pub mod setup;
pub mod training;
