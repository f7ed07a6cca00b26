//! Experiments over discovered paths (SPEC section 9): computations over a `discover` results
//! file, then their rendering.
//!
//! Computation (data in, data out; serialisable results):
//! - [`manipulation`]: remove / enhance / scale path neurons, probability and accuracy deviation;
//!   [`manipulation_outputs`]: the files, table and record check `ablate` shows of it.
//! - [`atlas`]: per-class neuron usage, class similarity, per-layer distributions.
//! - [`pruning`]: class-wise pruning guided by top-K paths, pruned checkpoints ([`checkpoint`]).
//! - [`explain`](mod@explain): one input image's path explained, drawn and serialised.
//! - [`predict`](mod@predict): the top classes (or embedding) of input images.
//! - [`claims`]: the paper's claims checked on a run, with [`significance`] tests and [`stats`].
//! - [`format`](mod@format): how numbers read (the crate's [`crate::format`], re-exported).
//!
//! Rendering ([`render`]): SVG figures and the self-contained HTML report, built from sections;
//! [`full_report`] runs what a report needs and renders it.
pub mod atlas;
pub mod checkpoint;
pub mod claims;
pub mod detail;
pub mod error;
pub mod explain;
pub use crate::format;
pub mod full_report;
pub mod manipulation;
pub mod manipulation_outputs;
pub mod predict;
pub mod pruning;
pub mod render;
pub mod significance;
pub mod stats;
