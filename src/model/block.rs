//! One encoder block of the pre-LN ViT: its weights, and its forward pass built from the ops of
//! `ops/` (Mode::Train: the oracle the fused blocks are tested against).
use crate::model::config::VitConfig;
use crate::model::intervene::{replace_rows, Edit, LayerEdit, Rows};
use crate::model::mode::Mode;
use crate::model::ops::{self, LayerNorm, Linear};
use candle_core::{Result, Tensor};

/// One encoder block: `h = x + Attn(LN_att(x))`, `a = GELU(fc1(LN_ffn(h)))`, `x' = h + fc2(a)`.
#[derive(Clone, Debug)]
pub struct Block {
    /// LayerNorm before the attention (`norm1`).
    pub ln_att: LayerNorm,
    /// Fused query/key/value projection, weight (3D, D) in q, k, v order.
    pub qkv: Linear,
    /// Attention output projection (D, D).
    pub proj: Linear,
    /// LayerNorm before the MLP (`norm2`).
    pub ln_ffn: LayerNorm,
    /// MLP input layer (M, D): its GELU outputs `a` are the block's neurons.
    pub fc1: Linear,
    /// MLP output layer (D, M).
    pub fc2: Linear,
    /// A pruning mask (M) multiplying the CLS row of `a` (stored as `blocks.{i}.mlp.cls_mask` in
    /// pruned checkpoints); applied before any edit.
    pub cls_mask: Option<Tensor>,
}

impl Block {
    /// The block's output (R, N, D) and its hidden units `a` (R, N, M) after the pruning mask
    /// and `edit`, from the ops of `ops/` one by one.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        c: &VitConfig,
        edit: Option<&LayerEdit>,
        mode: Mode,
    ) -> Result<(Tensor, Tensor)> {
        let h = (x + self.attention(x, c, mode)?)?;
        let z = self.fc1.forward(&self.ln_ffn.forward(&h, mode)?, mode)?;
        let mut a = ops::gelu(&z, c.gelu, mode)?;
        if let Some(mask) = &self.cls_mask {
            let r = a.dim(0)?;
            let mask = mask
                .unsqueeze(0)?
                .broadcast_as((r, mask.dim(0)?))?
                .contiguous()?;
            let prune = LayerEdit {
                rows: Rows::Cls,
                edit: Edit::Scale(mask),
            };
            a = apply_edit(&a, &prune, c.prefix_tokens)?;
        }
        if let Some(e) = edit {
            a = apply_edit(&a, e, c.prefix_tokens)?;
        }
        let out = (h + self.fc2.forward(&a, mode)?)?;
        Ok((out, a))
    }

    fn attention(&self, x: &Tensor, c: &VitConfig, mode: Mode) -> Result<Tensor> {
        let (r, n) = (x.dim(0)?, x.dim(1)?);
        let qkv = self
            .qkv
            .forward(&self.ln_att.forward(x, mode)?, mode)?
            .reshape((r, n, 3, c.heads, c.head_dim()))?
            .permute([2, 0, 3, 1, 4])?;
        let scale = 1.0 / (c.head_dim() as f64).sqrt();
        let q = (qkv.get(0)?.contiguous()? * scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let att = ops::softmax(&q.matmul(&k.t()?)?, mode)?;
        let o = att
            .matmul(&v)?
            .permute([0, 2, 1, 3])?
            .reshape((r, n, c.hidden))?;
        self.proj.forward(&o, mode)
    }
}

/// Applies one edit to the selected rows of `a` (R, N, M).
fn apply_edit(a: &Tensor, e: &LayerEdit, prefix: usize) -> Result<Tensor> {
    let (r, n, m) = a.dims3()?;
    let (s, len) = e.rows.span(n, prefix);
    let sel = a.narrow(1, s, len)?;
    let edited = match &e.edit {
        Edit::Clamp(t) => t.reshape((r, len, m))?,
        Edit::Scale(f) => sel.broadcast_mul(&f.reshape((r, 1, m))?)?,
        Edit::Probe(v) => (sel + v.as_tensor().reshape((r, len, m))?)?,
    };
    replace_rows(a, s, len, &edited)
}
