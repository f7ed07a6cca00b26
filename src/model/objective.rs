//! The scalar F that attribution explains, as a function of the model's output row.
//!
//! Every objective is "the target's column of a score vector": the softmax probabilities (the
//! paper's F), the logits, the logits minus one class's logit (what activation-patching studies
//! measure), or, for a backbone whose output is an embedding, its dot product with a direction
//! (one column; the target is then column 0).
use crate::model::mode::Mode;
use crate::model::ops;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// What F is, per image and target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Objective {
    /// `softmax(output)[target]` (the paper).
    #[default]
    Prob,
    /// `output[target]`.
    Logit,
    /// `output[target] - output[against]`.
    LogitDiff {
        /// The class whose logit is subtracted.
        against: usize,
    },
    /// output . direction (a CLIP text embedding, a probe's weight row); one score column.
    Direction {
        /// Where the vector came from, for the record (lossy when the path is not UTF-8).
        source: String,
        /// The path's exact bytes in hex when it is not UTF-8 (absent otherwise).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        source_hex: Option<String>,
        /// The direction, one value per output column.
        vector: Vec<f64>,
    },
}

impl Objective {
    /// Score columns: 1 for a direction, else the output's width.
    pub fn width(&self, outputs: usize) -> usize {
        match self {
            Objective::Direction { .. } => 1,
            _ => outputs,
        }
    }

    /// Checks the objective against an output of `outputs` columns; the message names the flag.
    pub fn validate(&self, outputs: usize) -> std::result::Result<(), String> {
        match self {
            Objective::LogitDiff { against } if *against >= outputs => Err(format!(
                "--objective logit-diff:{against}: the model has {outputs} outputs"
            )),
            Objective::Direction { source, vector, .. } if vector.len() != outputs => Err(format!(
                "--direction {source}: {} values, the model's output has {outputs}",
                vector.len()
            )),
            Objective::Direction { source, vector, .. }
                if vector.iter().any(|v| !v.is_finite()) =>
            {
                Err(format!("--direction {source}: NaN or infinite values"))
            }
            _ => Ok(()),
        }
    }

    /// Scores (R, width) of outputs (R, K); F of row r is column `target[r]`. Differentiable.
    pub fn scores(&self, outputs: &Tensor) -> Result<Tensor> {
        match self {
            Objective::Prob => ops::softmax(outputs, Mode::Frozen),
            Objective::Logit => Ok(outputs.clone()),
            Objective::LogitDiff { against } => {
                outputs.broadcast_sub(&outputs.narrow(1, *against, 1)?)
            }
            Objective::Direction { vector, .. } => {
                let v = Tensor::from_vec(vector.clone(), (vector.len(), 1), outputs.device())?
                    .to_dtype(outputs.dtype())?;
                outputs.matmul(&v)
            }
        }
    }

    /// A short description for summaries and reports ("probability", "logit - logit\[3\]", ...).
    pub fn describe(&self) -> String {
        match self {
            Objective::Prob => "probability".into(),
            Objective::Logit => "logit".into(),
            Objective::LogitDiff { against } => format!("logit - logit[{against}]"),
            Objective::Direction { source, .. } => format!("embedding . direction ({source})"),
        }
    }
}
