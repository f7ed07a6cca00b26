//! Interventions on the MLP hidden units `a = GELU(fc1(LN_ffn(h)))` of chosen tokens.
use crate::model::config::{Pool, VitConfig};
use candle_core::{Result, Tensor, Var};

/// Which token rows of `a` an edit touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rows {
    /// The CLS row only (the paper's neurons): tensors of shape (R, M).
    Cls,
    /// All patch rows, CLS excluded (MAE variant): tensors of shape (R, patches, M).
    Patches,
    /// The distillation token's row (DeiT distilled, token 1): tensors of shape (R, M).
    Dist,
}

impl Rows {
    /// The rows a model's paths use unless asked otherwise: the patch rows of a model that
    /// pools the patch tokens (the MAE variant), else CLS.
    pub fn of_model(cfg: &VitConfig) -> Rows {
        match cfg.pool {
            Pool::MeanPatch => Rows::Patches,
            _ => Rows::Cls,
        }
    }

    /// (first token, number of tokens) of the selection, for `tokens` tokens per image of which
    /// the first `prefix` are CLS-like.
    pub fn span(self, tokens: usize, prefix: usize) -> (usize, usize) {
        match self {
            Rows::Cls => (0, 1),
            Rows::Dist => (1, 1),
            Rows::Patches => (prefix, tokens - prefix),
        }
    }

    /// One token row per image (values (R, M)), not a token axis.
    pub fn single(self) -> bool {
        self != Rows::Patches
    }
}

/// What happens to the selected rows of one block's `a`.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Replace the rows by this value. With a `Var` it is a gradient leaf: nothing flows back into
    /// fc1 / LN_ffn through the replaced rows.
    Clamp(Tensor),
    /// Multiply the rows unit-wise by these factors (0 removes, 2 enhances, a 0/1 mask prunes).
    Scale(Tensor),
    /// Add a zero-valued `Var`: its gradient is the total derivative dF/da of the rows.
    Probe(Var),
}

/// An edit of one block.
#[derive(Clone, Debug)]
pub struct LayerEdit {
    /// Which token rows of `a` the edit touches.
    pub rows: Rows,
    /// What happens to them.
    pub edit: Edit,
}

/// Edits per block (`None` = the block runs normally).
pub type Edits = Vec<Option<LayerEdit>>;

/// `a` (R, N, M) with token rows `s..s+len` replaced by `rows` (R, len, M).
pub(crate) fn replace_rows(a: &Tensor, s: usize, len: usize, rows: &Tensor) -> Result<Tensor> {
    let n = a.dim(1)?;
    let mut parts = Vec::with_capacity(3);
    if s > 0 {
        parts.push(a.narrow(1, 0, s)?);
    }
    parts.push(rows.clone());
    if s + len < n {
        parts.push(a.narrow(1, s + len, n - s - len)?);
    }
    Tensor::cat(&parts, 1)
}
