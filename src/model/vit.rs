//! The pre-LN Vision Transformer of SPEC section 1, with edits of the MLP hidden units.
use crate::model::config::{Pool, VitConfig};
use crate::model::intervene::{replace_rows, Edit, LayerEdit, Rows};
use crate::model::ops::{self, LayerNorm, Linear, Mode};
use crate::model::{fused, fused_device};
use candle_core::{DType, Device, Result, Tensor};
use std::cell::Cell;

thread_local! {
    static DEVICE_BLOCK_ON_CPU: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the device-generic fused block (`fused_device.rs`, what CUDA runs) in place of
/// the CPU slice block, on this thread: how the tests check the CUDA path's math on the CPU.
#[doc(hidden)]
pub fn with_device_block<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEVICE_BLOCK_ON_CPU.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(DEVICE_BLOCK_ON_CPU.with(|c| c.replace(true)));
    f()
}

/// One encoder block: `h = x + Attn(LN_att(x))`, `a = GELU(fc1(LN_ffn(h)))`, `x' = h + fc2(a)`.
#[derive(Clone, Debug)]
pub struct Block {
    pub ln_att: LayerNorm,
    /// Fused query/key/value projection, weight (3D, D) in q, k, v order.
    pub qkv: Linear,
    pub proj: Linear,
    pub ln_ffn: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    /// A pruning mask (M) multiplying the CLS row of `a` (stored as `blocks.{i}.mlp.cls_mask` in
    /// pruned checkpoints); applied before any edit.
    pub cls_mask: Option<Tensor>,
}

/// A Vision Transformer with its weights.
#[derive(Clone, Debug)]
pub struct Vit {
    pub cfg: VitConfig,
    /// Patch embedding as a linear map of flattened (C, P, P) patches: weight (D, C*P*P).
    pub patch: Linear,
    /// Prefix tokens (P, D): CLS, then DeiT's distillation token if any.
    pub prefix: Tensor,
    /// Position embedding (N, D), prefix rows first.
    pub pos: Tensor,
    pub blocks: Vec<Block>,
    /// Final LayerNorm (`norm`) for CLS pooling, `fc_norm` for MAE mean pooling.
    pub norm: LayerNorm,
    pub head: Linear,
}

/// What a forward pass returns.
pub struct Output {
    /// (R, classes).
    pub logits: Tensor,
    /// Per block, the recorded rows of `a` (after any edit of that block), when asked for.
    pub hidden: Vec<Tensor>,
}

impl Vit {
    pub fn device(&self) -> &Device {
        self.prefix.device()
    }
    pub fn dtype(&self) -> DType {
        self.prefix.dtype()
    }

    /// Token embeddings (R, N, D) of images (R, C, S, S).
    pub fn embed(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let c = &self.cfg;
        let (r, g, p) = (images.dim(0)?, c.grid(), c.patch_size);
        let patches = images
            .to_dtype(self.dtype())?
            .reshape((r, c.channels, g, p, g, p))?
            .permute([0, 2, 4, 1, 3, 5])?
            .reshape((r, g * g, c.channels * p * p))?;
        let x = self.patch.forward(&patches, mode)?;
        let pre = (self.prefix.unsqueeze(0)?).broadcast_as((r, c.prefix_tokens, c.hidden))?;
        Tensor::cat(&[&pre, &x], 1)?.broadcast_add(&self.pos.unsqueeze(0)?)
    }

    /// Full forward pass with optional edits per block; `record` keeps those rows of every `a`.
    pub fn forward(
        &self,
        images: &Tensor,
        edits: &[Option<LayerEdit>],
        record: Option<Rows>,
        mode: Mode,
    ) -> Result<Output> {
        let mut x = self.embed(images, mode)?;
        let mut hidden = Vec::new();
        for (l, block) in self.blocks.iter().enumerate() {
            let edit = edits.get(l).and_then(|e| e.as_ref());
            // A CLS-pooled head reads only the last block's CLS row: the other rows of that
            // block's output need not be computed, unless their hidden units are asked for.
            let cls_only = l + 1 == self.blocks.len()
                && self.cfg.pool == Pool::Cls
                && record != Some(Rows::Patches)
                && edit.is_none_or(|e| e.rows == Rows::Cls);
            let (nx, a) = self.block(block, &x, edit, record, mode, cls_only)?;
            x = nx;
            if let Some(a) = a {
                hidden.push(a);
            }
        }
        Ok(Output {
            logits: self.classify(&x, mode)?,
            hidden,
        })
    }

    fn attention(&self, block: &Block, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let c = &self.cfg;
        let (r, n) = (x.dim(0)?, x.dim(1)?);
        let qkv = block
            .qkv
            .forward(&block.ln_att.forward(x, mode)?, mode)?
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
        block.proj.forward(&o, mode)
    }

    fn block(
        &self,
        block: &Block,
        x: &Tensor,
        edit: Option<&LayerEdit>,
        record: Option<Rows>,
        mode: Mode,
        cls_only: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let record_rows = |a: &Tensor| -> Result<Option<Tensor>> {
            match record {
                Some(rows) => {
                    let (s, n) = rows.span(a.dim(1)?, self.cfg.prefix_tokens);
                    let t = a.narrow(1, s, n)?;
                    Ok(Some(if rows == Rows::Cls { t.squeeze(1)? } else { t }))
                }
                None => Ok(None),
            }
        };
        if mode == Mode::Frozen {
            let c = &self.cfg;
            let (out, a) = if x.device().is_cpu() && !DEVICE_BLOCK_ON_CPU.with(Cell::get) {
                let (h, g, p) = (c.heads, c.gelu, c.prefix_tokens);
                fused::block(block, x, edit, h, g, p, cls_only)?
            } else {
                fused_device::block(block, x, edit, c.heads, c.gelu, c.prefix_tokens)?
            };
            return Ok((out, record_rows(&a)?));
        }
        let h = (x + self.attention(block, x, mode)?)?;
        let z = block.fc1.forward(&block.ln_ffn.forward(&h, mode)?, mode)?;
        let mut a = ops::gelu(&z, self.cfg.gelu, mode)?;
        if let Some(mask) = &block.cls_mask {
            let r = a.dim(0)?;
            let mask = mask
                .unsqueeze(0)?
                .broadcast_as((r, mask.dim(0)?))?
                .contiguous()?;
            let prune = LayerEdit {
                rows: Rows::Cls,
                edit: Edit::Scale(mask),
            };
            a = apply_edit(&a, &prune, self.cfg.prefix_tokens)?;
        }
        if let Some(e) = edit {
            a = apply_edit(&a, e, self.cfg.prefix_tokens)?;
        }
        let recorded = record_rows(&a)?;
        let out = (h + block.fc2.forward(&a, mode)?)?;
        Ok((out, recorded))
    }

    fn classify(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let feats = match self.cfg.pool {
            Pool::Cls => self.norm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?, mode)?,
            Pool::MeanPatch => {
                let (p, n) = (self.cfg.prefix_tokens, x.dim(1)?);
                let pooled = x.narrow(1, p, n - p)?.mean(1)?;
                let once = self.norm.forward(&pooled, mode)?;
                if self.cfg.double_fc_norm {
                    self.norm.forward(&once, mode)?
                } else {
                    once
                }
            }
        };
        self.head.forward(&feats, mode)
    }

    /// Class probabilities (R, classes) of a forward pass.
    pub fn probabilities(&self, images: &Tensor, edits: &[Option<LayerEdit>]) -> Result<Tensor> {
        let out = self.forward(images, edits, None, Mode::Frozen)?;
        ops::softmax(&out.logits, Mode::Frozen)
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
