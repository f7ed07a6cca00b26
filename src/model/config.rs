//! The architecture hyper-parameters of a Vision Transformer, as detected from a checkpoint.
use serde::{Deserialize, Serialize};

/// GELU flavour: exact erf (PyTorch default, the paper) or the tanh approximation (original JAX ViT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gelu {
    Erf,
    Tanh,
}

/// How the classifier reads the final tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// `head(LN_final(x)[CLS])` (Google ViT, HF ViT/DeiT, timm default).
    Cls,
    /// `head(fc_norm(mean of patch tokens))`, CLS excluded (MAE fine-tuned).
    MeanPatch,
}

fn one() -> usize {
    1
}

/// Detected configuration of a ViT checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub hidden: usize,
    pub mlp_dim: usize,
    pub heads: usize,
    pub layers: usize,
    pub num_classes: usize,
    /// Tokens before the patches: 1 (CLS), or 2 for DeiT (CLS, distillation).
    #[serde(default = "one")]
    pub prefix_tokens: usize,
    pub ln_eps: f64,
    pub gelu: Gelu,
    pub pool: Pool,
    /// Apply `fc_norm` twice before the head, as the authors' MAE code does (compatibility only).
    #[serde(default)]
    pub double_fc_norm: bool,
}

impl VitConfig {
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
