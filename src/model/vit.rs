//! The pre-LN Vision Transformer of SPEC section 1, with edits of the MLP hidden units.
use crate::model::block::Block;
use crate::model::block_ops::{self, Run};
use crate::model::config::{Pool, VitConfig};
use crate::model::intervene::{LayerEdit, Rows};
use crate::model::mode::Mode;
use crate::model::objective::Objective;
use crate::model::ops::{LayerNorm, Linear};
use candle_core::{DType, Device, Result, Tensor};

/// A Vision Transformer with its weights.
#[derive(Clone, Debug)]
pub struct Vit {
    /// The architecture.
    pub cfg: VitConfig,
    /// Patch embedding as a linear map of flattened (C, P, P) patches: weight (D, C*P*P).
    pub patch: Linear,
    /// Prefix tokens (P, D): CLS, then DeiT's distillation token or DINOv2's registers.
    pub prefix: Tensor,
    /// Position embedding (N, D), prefix rows first (zero for tokens without one: registers).
    pub pos: Tensor,
    /// LayerNorm of the token embeddings before the first block (CLIP), when `cfg.pre_norm`.
    pub pre_norm: Option<LayerNorm>,
    /// The encoder blocks, first to last.
    pub blocks: Vec<Block>,
    /// Final LayerNorm (`norm`) for CLS pooling, `fc_norm` for MAE mean pooling.
    pub norm: LayerNorm,
    /// The classifier, a projection (CLIP, no bias) or the identity (headless backbones).
    pub head: Linear,
    /// DeiT's distillation head, read from the distillation token (`Pool::ClsDist`).
    pub head_dist: Option<Linear>,
    /// What F is (the softmax probability unless asked otherwise): [`Vit::probabilities`] and
    /// every attribution pass score the target with it.
    pub objective: Objective,
}

/// What a forward pass returns.
pub struct Output {
    /// (R, classes).
    pub logits: Tensor,
    /// Per block, the recorded rows of `a` (after any edit of that block), when asked for.
    pub hidden: Vec<Tensor>,
}

impl Vit {
    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        self.prefix.device()
    }
    /// The element type of the weights (f32, or f64 for the golden tests).
    pub fn dtype(&self) -> DType {
        self.prefix.dtype()
    }

    /// Token embeddings (R, N, D) of images (R, C, S, S).
    pub fn embed(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        self.assemble_tokens(&self.patch_embeddings(images, mode)?, mode)
    }

    /// Patch embeddings (R, G*G, D) of images (R, C, S, S): the patch projection's output
    /// (bias included), before the prefix tokens and position embeddings are added.
    pub fn patch_embeddings(&self, images: &Tensor, mode: Mode) -> Result<Tensor> {
        let c = &self.cfg;
        let (r, g, p) = (images.dim(0)?, c.grid(), c.patch_size);
        let patches = images
            .to_dtype(self.dtype())?
            .reshape((r, c.channels, g, p, g, p))?
            .permute([0, 2, 4, 1, 3, 5])?
            .reshape((r, g * g, c.channels * p * p))?;
        self.patch.forward(&patches, mode)
    }

    /// Token embeddings (R, N, D) from patch embeddings (R, G*G, D): the prefix tokens in front,
    /// the position embedding added to every row (then CLIP's pre-encoder LayerNorm, if any).
    pub fn assemble_tokens(&self, patches: &Tensor, mode: Mode) -> Result<Tensor> {
        let (c, r) = (&self.cfg, patches.dim(0)?);
        let pre = (self.prefix.unsqueeze(0)?).broadcast_as((r, c.prefix_tokens, c.hidden))?;
        let x = Tensor::cat(&[&pre, patches], 1)?.broadcast_add(&self.pos.unsqueeze(0)?)?;
        match &self.pre_norm {
            Some(ln) => ln.forward(&x, mode),
            None => Ok(x),
        }
    }

    /// Full forward pass with optional edits per block; `record` keeps those rows of every `a`.
    pub fn forward(
        &self,
        images: &Tensor,
        edits: &[Option<LayerEdit>],
        record: Option<Rows>,
        mode: Mode,
    ) -> Result<Output> {
        self.forward_tokens(&self.embed(images, mode)?, edits, record, mode)
    }

    /// [`Vit::forward`] from token embeddings (R, N, D) (see [`Vit::assemble_tokens`]).
    pub fn forward_tokens(
        &self,
        tokens: &Tensor,
        edits: &[Option<LayerEdit>],
        record: Option<Rows>,
        mode: Mode,
    ) -> Result<Output> {
        let mut x = tokens.clone();
        let mut hidden = Vec::new();
        for (l, block) in self.blocks.iter().enumerate() {
            let edit = edits.get(l).and_then(|e| e.as_ref());
            // A CLS-pooled head reads only the last block's CLS row: the other rows of that
            // block's output need not be computed, unless their hidden units are asked for.
            let cls_only = l + 1 == self.blocks.len()
                && self.cfg.pool == Pool::Cls
                && record.is_none_or(|r| r == Rows::Cls)
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
                    Ok(Some(if rows.single() { t.squeeze(1)? } else { t }))
                }
                None => Ok(None),
            }
        };
        if mode == Mode::Frozen {
            let c = &self.cfg;
            let run = Run {
                heads: c.heads,
                gelu: c.gelu,
                prefix: c.prefix_tokens,
                cls_only,
            };
            let (out, a) = block_ops::block(block, x, edit, run)?;
            return Ok((out, record_rows(&a)?));
        }
        let (out, a) = block.forward(x, &self.cfg, edit, mode)?;
        Ok((out, record_rows(&a)?))
    }

    /// The head: logits (R, classes) from the last block's output (R, N or 1, D).
    pub(crate) fn classify(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let row = |i: usize| -> Result<Tensor> {
            self.norm.forward(&x.narrow(1, i, 1)?.squeeze(1)?, mode)
        };
        let feats = match self.cfg.pool {
            Pool::Cls => row(0)?,
            Pool::ClsDist => {
                let Some(dist) = &self.head_dist else {
                    candle_core::bail!("a distilled model needs its distillation head");
                };
                let cls = self.head.forward(&row(0)?, mode)?;
                return (cls + dist.forward(&row(1)?, mode)?)? * 0.5;
            }
            Pool::ClsMeanPatch => {
                // The final LayerNorm runs on every token before the mean (DINOv2).
                let (p, n) = (self.cfg.prefix_tokens, x.dim(1)?);
                let cls = row(0)?;
                let patches = self.norm.forward(&x.narrow(1, p, n - p)?, mode)?.mean(1)?;
                Tensor::cat(&[&cls, &patches], 1)?
            }
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

    /// The objective's scores (R, width) of a forward pass: class probabilities by default.
    pub fn probabilities(&self, images: &Tensor, edits: &[Option<LayerEdit>]) -> Result<Tensor> {
        let out = self.forward(images, edits, None, Mode::Frozen)?;
        self.objective.scores(&out.logits)
    }

    /// Score columns of [`Vit::probabilities`] (classes, or 1 for a direction).
    pub fn score_width(&self) -> usize {
        self.objective.width(self.cfg.num_classes)
    }
}
