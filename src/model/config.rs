//! The architecture hyper-parameters of a Vision Transformer, as detected from a checkpoint.
use serde::{Deserialize, Serialize};

/// GELU flavour: exact erf (PyTorch default, the paper), the tanh approximation (original JAX
/// ViT) or CLIP's quick-GELU `x sigmoid(1.702 x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gelu {
    /// Exact `0.5 x (1 + erf(x / sqrt 2))`.
    Erf,
    /// The tanh approximation.
    Tanh,
    /// `x sigmoid(1.702 x)`.
    Quick,
}

/// How the classifier reads the final tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// `head(LN_final(x)[CLS])` (Google ViT, HF ViT/DeiT, timm default).
    Cls,
    /// `head(fc_norm(mean of patch tokens))`, CLS excluded (MAE fine-tuned).
    MeanPatch,
    /// `head([LN(x)[CLS], mean of LN(x) over the patch tokens])`, the final LayerNorm on every
    /// token, registers excluded from the mean (DINOv2 classifiers).
    ClsMeanPatch,
    /// `(head(LN(x)[CLS]) + head_dist(LN(x)[DIST])) / 2` (DeiT distilled, inference).
    ClsDist,
}

impl Pool {
    /// The token rows the head reads from the last block's output, when it reads prefix rows only.
    pub fn prefix_rows(self) -> Option<usize> {
        match self {
            Pool::Cls => Some(1),
            Pool::ClsDist => Some(2),
            Pool::MeanPatch | Pool::ClsMeanPatch => None,
        }
    }
}

fn one() -> usize {
    1
}

/// Detected configuration of a ViT checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Input side in pixels (square images).
    pub image_size: usize,
    /// Patch side in pixels; divides `image_size`.
    pub patch_size: usize,
    /// Input channels (3, RGB).
    pub channels: usize,
    /// Token width `d`.
    pub hidden: usize,
    /// Hidden units per MLP (`L * mlp_dim` neurons in all): the units a path picks from.
    pub mlp_dim: usize,
    /// Attention heads; divides `hidden`.
    pub heads: usize,
    /// Encoder blocks `L`, also the length of a neuron path.
    pub layers: usize,
    /// Classes of the head (or the embedding width when `embedding`).
    pub num_classes: usize,
    /// Tokens before the patches: CLS, then DeiT's distillation token or DINOv2's registers.
    #[serde(default = "one")]
    pub prefix_tokens: usize,
    /// How many of the prefix tokens are registers (after CLS; no position embedding of their
    /// own in DINOv2, never neurons, never pooled).
    #[serde(default)]
    pub registers: usize,
    /// The output is an embedding (a headless backbone, or CLIP's projection), not class logits:
    /// `num_classes` is then its width.
    #[serde(default)]
    pub embedding: bool,
    /// A LayerNorm on the token embeddings before the first block (CLIP's `pre_layrnorm`).
    #[serde(default)]
    pub pre_norm: bool,
    /// The checkpoint had LayerScale (DINOv2); it is folded into each branch's output projection.
    #[serde(default)]
    pub layer_scale: bool,
    /// Epsilon of every LayerNorm.
    pub ln_eps: f64,
    /// Activation of the MLPs.
    pub gelu: Gelu,
    /// How the head reads the final tokens.
    pub pool: Pool,
    /// Apply `fc_norm` twice before the head, as the authors' MAE code does (compatibility only).
    #[serde(default)]
    pub double_fc_norm: bool,
}

impl VitConfig {
    /// The paper's ViT of these sizes: one CLS token, erf GELU, LayerNorm eps 1e-6, CLS
    /// pooling, 3 channels, no registers, LayerScale or pre-encoder norm.
    pub fn vit(
        (image_size, patch_size): (usize, usize),
        (hidden, mlp_dim, heads, layers): (usize, usize, usize, usize),
        num_classes: usize,
    ) -> VitConfig {
        VitConfig {
            image_size,
            patch_size,
            channels: 3,
            hidden,
            mlp_dim,
            heads,
            layers,
            num_classes,
            prefix_tokens: 1,
            ln_eps: 1e-6,
            gelu: Gelu::Erf,
            pool: Pool::Cls,
            registers: 0,
            embedding: false,
            pre_norm: false,
            layer_scale: false,
            double_fc_norm: false,
        }
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Tokens per image, prefix tokens included.
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid() + self.prefix_tokens
    }
    /// Patch tokens per image.
    pub fn patches(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
    /// FLOPs (2 x multiply-adds) of one image's forward pass in the two attention products
    /// (q k^T and attention x v), which need both operand gradients in a backward pass.
    pub fn attention_flops(&self) -> f64 {
        let (n, d) = (self.tokens() as f64, self.hidden as f64);
        self.layers as f64 * 2.0 * 2.0 * n * n * d
    }

    /// FLOPs of one clamped forward + backward (input gradients only: linear layers once more,
    /// attention products twice more).
    pub fn attribution_flops(&self) -> f64 {
        2.0 * self.forward_flops() + self.attention_flops()
    }

    /// FLOPs (2 x multiply-adds) of one image's forward pass, matmuls only.
    pub fn forward_flops(&self) -> f64 {
        let (n, d, m) = (
            self.tokens() as f64,
            self.hidden as f64,
            self.mlp_dim as f64,
        );
        let patch = 2.0
            * self.patches() as f64
            * d
            * (self.channels * self.patch_size * self.patch_size) as f64;
        let block = 2.0 * n * (4.0 * d * d + 2.0 * d * m) + 2.0 * 2.0 * n * n * d;
        patch + self.layers as f64 * block + 2.0 * d * self.num_classes as f64
    }
}
