//! The clean forward pass: probabilities and the MLP hidden units every method starts from.
use crate::model::{ClampLayout, Mode, Rows, Vit};
use candle_core::{DType, Result, Tensor};

/// Clean MLP hidden units: `layers[image][layer][t * mlp + j]`, `tokens` rows per image.
#[derive(Clone, Debug)]
pub struct Activations {
    /// Token rows per image (1 for the CLS row, the patch count for the MAE variant).
    pub tokens: usize,
    /// Hidden units per block.
    pub mlp: usize,
    /// `[image][layer][t * mlp + j]`: unit `j` of token row `t`.
    pub layers: Vec<Vec<Vec<f64>>>,
}

impl Activations {
    /// Sum over the selected tokens of unit `j` at `layer` for `image`.
    pub fn unit_sum(&self, image: usize, layer: usize, j: usize) -> f64 {
        let at = self.clamp_layout(1);
        (0..self.tokens)
            .map(|t| self.layers[image][layer][at.unit(t, j)])
            .sum()
    }

    /// The layout of clamps (and their gradients) on these rows at `steps` scalings per image;
    /// its [`ClampLayout::unit`] also indexes `layers[image][layer]`.
    pub fn clamp_layout(&self, steps: usize) -> ClampLayout {
        ClampLayout {
            steps,
            tokens: self.tokens,
            mlp: self.mlp,
        }
    }
}

/// Class probabilities `[image][class]` and activations of a clean forward pass.
pub fn clean_pass(
    model: &Vit,
    images: &Tensor,
    rows: Rows,
) -> Result<(Vec<Vec<f64>>, Activations)> {
    let out = model.forward(images, &[], Some(rows), Mode::Frozen)?;
    let probs = model
        .objective
        .scores(&out.logits)?
        .to_dtype(DType::F64)?
        .to_vec2()?;
    let b = images.dim(0)?;
    let mlp = model.cfg.mlp_dim;
    let mut layers = vec![Vec::with_capacity(model.cfg.layers); b];
    let mut tokens = 1;
    for h in out.hidden.iter().filter(|_| b > 0) {
        let flat: Vec<f64> = h.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let per = flat.len() / b;
        tokens = per / mlp;
        for (i, chunk) in flat.chunks(per).enumerate() {
            layers[i].push(chunk.to_vec());
        }
    }
    Ok((
        probs,
        Activations {
            tokens,
            mlp,
            layers,
        },
    ))
}
