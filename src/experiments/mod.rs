//! Experiments over discovered paths (SPEC section 9), each a library computation over a
//! `discover` results file that the thin CLI commands call:
//! - [`manipulation`]: remove / enhance / scale path neurons, probability and accuracy deviation.
//! - [`atlas`]: per-class neuron usage, class similarity, per-layer distributions.
//! - [`pruning`]: class-wise pruning guided by top-K paths, pruned checkpoints ([`checkpoint`]).
//! - [`report`]: one self-contained HTML report ([`report::write_report`]) with the figures
//!   ([`figures`], drawn by [`plots`] on [`svg`]) and the paper's claims checked ([`claims`]).
pub mod atlas;
pub mod checkpoint;
pub mod claims;
pub mod figures;
pub mod html;
pub mod manipulation;
pub mod plots;
pub mod pruning;
pub mod report;
pub mod significance;
pub mod stats;
pub mod svg;
pub mod thumbs;
