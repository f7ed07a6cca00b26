//! neuronpath: influential neuron paths of Vision Transformers.
//!
//! An implementation of "Discovering Influential Neuron Path in Vision Transformers" (Wang et
//! al., ICLR 2025, arXiv 2503.09046). A neuron is one hidden unit of a block's MLP (after the
//! GELU, on the CLS token); a path is one neuron per block. For an image and a class, the
//! layer-progressive search picks, block by block, the neuron whose addition to the path so far
//! gives the highest Joint Attribution Score (JAS): an integrated-gradients score of the class
//! probability, the path's activations scaled together from zero. The library also holds the
//! baselines the paper compares against, the experiments over many images (manipulation, class
//! atlas, pruning, the paper's claims with significance tests) and their HTML report.
//!
//! Layers, each depending only on those above it in this list:
//! - [`model`]: ViT architecture, checkpoint loading, interventions on MLP hidden units, gradients.
//! - [`io`]: images, data sets, preprocessing, result files.
//! - [`attribution`]: the paper's method (JAS, layer-progressive search, top-K, MAE) and baselines.
//! - [`experiments`]: manipulation, class analysis, pruning, plots and report.
//! - [`training`]: how the embedded Fashion-MNIST model was trained (model + io).
//! - [`embedded`], [`bench`](mod@bench), [`bench_precision`]: the shipped default model and
//!   samples; the speed benchmark and the precision modes' path agreement with f32.
//! - the `neuronpath` binary (`src/main.rs` and `src/cli/`, not part of the library): thin
//!   commands over all of the above.
//!
//! Beside the layers: [`limits`] (allocation and file-size caps for hostile input), [`output`]
//! (atomic writes that never replace a file that is not ours), [`setup`] (resolving the model
//! and inputs a command names) and [`error_line`] (an error and its causes as one line).
//!
//! # Example
//!
//! The influential neuron path of one sample image of the embedded Fashion-MNIST model: the
//! clean pass, the layer-progressive search (one neuron per layer), and its Joint Attribution
//! Score.
//!
//! ```
//! use neuronpath::attribution::{clean_pass, joint_attribution, layer_progressive_search};
//! use neuronpath::attribution::AttributionSettings;
//! use neuronpath::io::inputs::{load_batch, Preprocess};
//! use neuronpath::io::preprocess::Normalization;
//! use neuronpath::model::{LoadOptions, Rows};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = neuronpath::embedded::model(&LoadOptions::default())?;
//! let model = &loaded.model;
//! let pre = Preprocess {
//!     size: model.cfg.image_size,
//!     norm: loaded
//!         .normalization
//!         .and_then(Normalization::from_mean_std)
//!         .ok_or("the embedded model records its normalisation")?,
//! };
//! let samples = neuronpath::embedded::samples();
//! let image = &samples.items[0];
//! let x = load_batch(&[image], &pre, model.device())?;
//!
//! let settings = AttributionSettings {
//!     steps: 5, // Riemann steps of the integrated gradients (the paper uses 20)
//!     top_k: 1, // one neuron per layer: a path
//!     compat: false,
//!     rows: Rows::Cls,
//!     chunk_rows: 64,
//!     engine: Default::default(),
//! };
//! let (probs, acts) = clean_pass(model, &x, settings.rows)?;
//! let target = image.label.expect("the samples are labelled");
//! let found = layer_progressive_search(model, &x, &[target], &acts, &settings)?;
//! let path = &found.sets[0]; // [layer][rank]: one neuron index per layer
//! assert_eq!(path.len(), model.cfg.layers);
//!
//! let clean = [probs[0][target]];
//! let jas = joint_attribution(model, &x, &[target], &acts, &found.sets, &clean, &settings)?;
//! println!("path {path:?}, JAS {:.4}", jas[0].reference);
//! # Ok(())
//! # }
//! ```
//!
//! The library sets no global allocator, signal handler or environment variable; the
//! `neuronpath` binary does (its `runtime` module: mimalloc, SIGPIPE, candle's thread pool).
#![warn(missing_docs)]
pub mod attribution;
pub mod bench;
pub mod bench_precision;
pub mod embedded;
pub mod error_line;
pub mod experiments;
pub mod format;
pub mod heap;
pub mod io;
pub mod limits;
pub mod model;
pub mod output;
pub mod setup;
pub mod training;
