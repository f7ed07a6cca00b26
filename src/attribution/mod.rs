//! The paper's method (SPEC sections 3-7) and its baselines (section 8).
//!
//! Everything works on a batch of B images at once; a neuron set is `[layer][rank]` (rank 0 is the
//! best; a plain path has one neuron per layer). Activations and gradients are the CLS row of each
//! block's MLP hidden units, or for the MAE variant all patch rows (`tokens` > 1), in which case a
//! neuron is a unit on all patch tokens together and per-token products are summed over tokens.
pub mod activations;
pub mod baselines;
mod clamped;
pub mod discover;
mod error;
pub mod explain;
pub mod jas;
pub mod run;
pub mod search;
pub mod search_prefix;
pub mod spatial;

pub use activations::{clean_pass, Activations};
pub use error::AttributionError;
pub use jas::{joint_attribution, Jas};
pub use search::{layer_progressive_search, layer_progressive_search_checked};

use crate::model::Rows;

pub use crate::io::results::NeuronSets;

/// What the layer-progressive search finds, per image: the chosen neurons `[layer][rank]` and the candidate scores `[layer][unit]`.
#[derive(Clone, Debug)]
pub struct SearchResult {
    /// Per image, the chosen neurons `[layer][rank]`.
    pub sets: Vec<NeuronSets>,
    /// Per image, every unit's selection score `[layer][unit]`.
    pub scores: Vec<Vec<Vec<f64>>>,
}

/// Called between the passes of long work; an error it returns stops the work and is returned
/// unchanged. The generic hook for cancellation (Ctrl-C in the Python module) and progress.
pub type Check<'a> = &'a dyn Fn() -> candle_core::Result<()>;

/// How attribution runs.
#[derive(Clone, Debug)]
pub struct AttributionSettings {
    /// Riemann steps m (alpha_k = k/m, k = 0..m-1).
    pub steps: usize,
    /// Neurons kept per layer (1 = a path; SPEC section 6 otherwise).
    pub top_k: usize,
    /// The authors' quirks: top-K sums use only the K-th ranked neuron; MAE JAS divided by 196.
    pub compat: bool,
    /// CLS row (ViT) or patch rows (MAE variant).
    pub rows: Rows,
    /// Rows of one clamped pass (chunking never changes results, only peak memory).
    pub chunk_rows: usize,
    /// Which engine runs the layer-progressive search (both give the same paths).
    pub engine: SearchEngine,
}

/// How the layer-progressive search computes its scores; both give the same neuron sets and
/// scores up to rounding (tests/prefix_engine.rs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchEngine {
    /// Keeps each row's residual stream under the path clamps below the scored layer and the
    /// tangent along the path neurons: blocks T..L-1 forward and T+1..L-1 backward at step T,
    /// one tangent block per step (L^2 + L - 2 block passes per row; the path's JAS then takes L
    /// backwards through the kept states). f32/f64 on any device; MAE models (per-token scores)
    /// keep the prefix reuse only, when one image's rows fit a chunk. Elsewhere the reference
    /// engine runs.
    #[default]
    Prefix,
    /// One forward and backward of every block per step (2L^2 block passes per row): the oracle.
    Reference,
}

impl SearchEngine {
    /// The engine's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SearchEngine::Prefix => "prefix",
            SearchEngine::Reference => "reference",
        }
    }
}

impl std::str::FromStr for SearchEngine {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "prefix" => Ok(SearchEngine::Prefix),
            "reference" => Ok(SearchEngine::Reference),
            _ => Err(format!(
                "unknown search engine `{s}` (expected prefix or reference)"
            )),
        }
    }
}

impl AttributionSettings {
    /// The scaling alpha_k = k / m of Riemann step `k` (0 at k = 0; 1 is never reached).
    pub fn alpha(&self, k: usize) -> f64 {
        k as f64 / self.steps as f64
    }

    /// Steps, rows per pass and K against the model's layer width (K above it would silently
    /// search fewer neurons than asked).
    pub fn check(&self, mlp: usize) -> Result<(), AttributionError> {
        let bad = |what: String| Err(AttributionError::Settings(what));
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if self.chunk_rows == 0 {
            return bad("rows per pass must be at least 1".into());
        }
        if self.top_k == 0 || self.top_k > mlp {
            return bad(format!(
                "top-K {} outside 1..={mlp} (the model's MLP width)",
                self.top_k
            ));
        }
        Ok(())
    }
}

/// Whether every image's sets have one entry per layer and every neuron is below `mlp`: sets
/// given to the library (from Python, a results file) never index past a layer.
pub fn check_sets(sets: &[NeuronSets], layers: usize, mlp: usize) -> candle_core::Result<()> {
    for (i, s) in sets.iter().enumerate() {
        if s.len() != layers {
            candle_core::bail!(
                "image {i}: neurons for {} layers, but the model has {layers} layers",
                s.len()
            );
        }
        for (l, set) in s.iter().enumerate() {
            if let Some(j) = set.iter().find(|&&j| j >= mlp) {
                candle_core::bail!(
                    "image {i} layer {l}: neuron {j}, but layers have {mlp} neurons"
                );
            }
        }
    }
    Ok(())
}

/// Indices of the `k` largest scores, descending; the first index wins a tie.
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k.min(scores.len()));
    idx
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn top_k_is_descending_and_the_first_index_wins_ties() {
        let s = [0.5, 2.0, -1.0, 2.0, 0.5, 7.0];
        assert_eq!(top_k(&s, 1), vec![5]);
        assert_eq!(top_k(&s, 3), vec![5, 1, 3]);
        assert_eq!(top_k(&s, 5), vec![5, 1, 3, 0, 4]);
        assert_eq!(top_k(&s, 99).len(), s.len());
        assert!(top_k(&[], 3).is_empty());
        // NaN sorts above every number under total_cmp (a NaN score is never silently last).
        assert_eq!(top_k(&[1.0, f64::NAN], 1), vec![1]);
    }
}
