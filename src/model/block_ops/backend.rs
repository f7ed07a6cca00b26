//! What one encoder block needs from the arithmetic it runs on: the backend trait that the
//! forward, backward and tangent (`forward.rs`, `backward.rs`, `tangent.rs`) are written against
//! once. Two implementations: `slices.rs` (plain slices, `gemm` + rayon: CPU tensors) and
//! `tensors.rs` (candle tensor ops, with the fused kernels of `cuda_kernels` on CUDA).
use crate::model::config::Gelu;
use crate::model::ops::{LayerNorm, Linear};
use candle_core::{Device, Result, Shape, Tensor};

/// Sizes of one block's batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub r: usize,
    pub n: usize,
    pub d: usize,
    pub m: usize,
    pub heads: usize,
    /// Tokens per image whose output is computed: all `n`, or 1 (CLS) in a CLS-pooled model's
    /// last block, where nothing reads the other rows (their keys and values are still needed).
    pub keep: usize,
}

impl Dims {
    pub fn hd(&self) -> usize {
        self.d / self.heads
    }
    pub fn scale(&self) -> f64 {
        1.0 / (self.hd() as f64).sqrt()
    }
    /// The (images, tokens, width) of a kept-rows buffer `width` wide (h, a, out: `keep` tokens).
    pub fn kept(&self, width: usize) -> Grid {
        Grid {
            r: self.r,
            n: self.keep,
            w: width,
        }
    }
    /// The (images, tokens, width) of an every-token buffer `width` wide (x, qkv).
    pub fn all(&self, width: usize) -> Grid {
        Grid {
            r: self.r,
            n: self.n,
            w: width,
        }
    }
}

/// The layout of a row buffer: `r` images of `n` token rows `w` wide, row-major.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub r: usize,
    pub n: usize,
    pub w: usize,
}

impl Grid {
    pub fn rows(&self) -> usize {
        self.r * self.n
    }
    /// The same rows, `w` wide.
    pub fn with_w(self, w: usize) -> Grid {
        Grid { w, ..self }
    }
}

/// The arithmetic of one block. Buffers are row buffers laid out as their [`Grid`] says (for a
/// linear layer, the grid of its input `x` or output gradient `g`); operations that change a
/// buffer take it by value (the slice backend works in place).
pub(crate) trait Backend: Sized + Send + Sync + 'static {
    /// A row buffer (a `Vec` of elements, or a tensor).
    type Buf: Send + Sync + 'static;
    /// What the attention keeps for its backward and tangent.
    type Attn: Send + Sync + 'static;

    /// A tensor's elements as a buffer (any shape; row-major).
    fn load(t: &Tensor) -> Result<Self::Buf>;
    /// A buffer as a tensor of `shape` on `device` (where the block runs).
    fn store(b: Self::Buf, shape: Shape, device: &Device) -> Result<Tensor>;

    /// `x W^T [+ b] [+ residual]` for `x` (rows, in); the residual is (rows, out).
    fn linear(
        x: &Self::Buf,
        g: Grid,
        l: &Linear,
        bias: bool,
        residual: Option<&Self::Buf>,
    ) -> Result<Self::Buf>;
    /// `g W`: the input gradient of a linear layer for its output gradient `g` (rows, out).
    fn linear_grad(g: &Self::Buf, grid: Grid, l: &Linear) -> Result<Self::Buf>;

    /// LayerNorm over the rows of `x`.
    fn layer_norm(ln: &LayerNorm, x: &Self::Buf, g: Grid) -> Result<Self::Buf>;
    /// Its input gradient at `x` for the output gradient `dy`.
    fn layer_norm_grad(ln: &LayerNorm, x: &Self::Buf, dy: &Self::Buf, g: Grid)
        -> Result<Self::Buf>;
    /// Its tangent at `x` along `dx`.
    fn layer_norm_jvp(ln: &LayerNorm, x: &Self::Buf, dx: &Self::Buf, g: Grid) -> Result<Self::Buf>;

    /// GELU of `z`, and its derivative at `z` when asked for.
    fn gelu(
        kind: Gelu,
        z: Self::Buf,
        g: Grid,
        derivative: bool,
    ) -> Result<(Self::Buf, Option<Self::Buf>)>;

    /// Multi-head attention of the first `keep` queries of every image from `qkv` (R, N, 3D,
    /// head `h`'s query at columns `h*hd..`, key at `D + h*hd..`, value at `2D + h*hd..`): what
    /// it keeps (the probabilities only if `keep_probs`; else recomputed) and the head outputs
    /// (R, keep, D).
    fn attention(qkv: Self::Buf, dm: Dims, keep_probs: bool) -> Result<(Self::Attn, Self::Buf)>;
    /// dL/d(qkv) (R, N, 3D) for the head outputs' gradient `d_o` (R, keep, D).
    fn attention_grad(at: &Self::Attn, d_o: &Self::Buf, dm: Dims) -> Result<Self::Buf>;
    /// The head outputs' tangent (R, N, D) along `dqkv` (R, N, 3D); every query kept.
    fn attention_jvp(at: &Self::Attn, dqkv: &Self::Buf, dm: Dims) -> Result<Self::Buf>;

    /// Token rows `s..s+len` of every image, (R, len, w).
    fn take_rows(a: &Self::Buf, g: Grid, span: (usize, usize)) -> Result<Self::Buf>;
    /// Token rows `s..s+len` of every image replaced by `vals` (R, len, w).
    fn set_rows(a: Self::Buf, g: Grid, span: (usize, usize), vals: &Self::Buf)
        -> Result<Self::Buf>;
    /// `vals` (R, len, w) added to token rows `s..s+len` of every image.
    fn add_rows(a: Self::Buf, g: Grid, span: (usize, usize), vals: &Self::Buf)
        -> Result<Self::Buf>;
    /// Token rows `s..s+len` of every image set to zero.
    fn zero_rows(a: Self::Buf, g: Grid, span: (usize, usize)) -> Result<Self::Buf>;
    /// Token rows `s..s+len` of every image multiplied unit-wise by `f`: (R, w) per image, or
    /// (w) for all.
    fn scale_rows(a: Self::Buf, g: Grid, span: (usize, usize), f: &Self::Buf) -> Result<Self::Buf>;
    /// `a * b` element-wise (same layout).
    fn mul(a: Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// `a + b` element-wise (same layout).
    fn add(a: Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// `t` plus, on token row `tok` of every image `i`, the columns `seeds[i]` of fc2's weight.
    fn add_columns(
        t: Self::Buf,
        g: Grid,
        l: &Linear,
        tok: usize,
        seeds: &[&[usize]],
    ) -> Result<Self::Buf>;
}
