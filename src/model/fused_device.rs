//! One encoder block as a single autograd node, device-generic (attribution on CUDA): the design
//! of `fused.rs` written with candle tensor ops, so that it runs on any device through candle's
//! kernels (cuBLAS on CUDA). The forward runs on detached tensors and keeps what the backward
//! needs; the backward returns only dL/dx and dL/d(edit leaf), never weight gradients.
//!
//! Why: candle's own autograd records ~25 nodes per block, allocates a zero tensor per operand in
//! its backward and accumulates into it; here the backward is the ~10 batched matmuls of the
//! math plus a few element-wise kernels. On the CPU `fused.rs` (slices, rayon) is used instead;
//! this one is tested against it on the CPU through [`crate::model::dispatch::with_device_block`].
//!
//! Layouts: x, h, out (R, N, D); q, k, v and the head outputs (R, H, N, hd); attention
//! probabilities (R, H, N, N); a (R, N, M).
use crate::model::block::Block;
use crate::model::config::Gelu;
#[cfg(feature = "cuda")]
use crate::model::dispatch::{kernels, Kernels};
use crate::model::intervene::{replace_rows, Edit, LayerEdit, Rows};
use crate::model::mode::Mode;
use crate::model::ops::{LayerNorm, Linear};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Storage, Tensor, D};
use std::f64::consts::{FRAC_1_SQRT_2, PI};
use std::sync::Mutex;

/// What the backward of one block needs.
struct Saved {
    x: Tensor,
    /// Queries, keys and values (R, H, N, hd), contiguous.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Attention probabilities (R, H, N, N).
    p: Tensor,
    h: Tensor,
    /// GELU derivative at fc1's output.
    gelu_grad: Tensor,
    /// The block's output, contiguous from offset 0: `cpu_fwd` / `cuda_fwd` hand back a copy
    /// and drop it (the node's result is that copy; the backward does not need it).
    out: Mutex<Option<Tensor>>,
    heads: usize,
    prefix: usize,
    block: Block,
    edit: Option<(Rows, EditKind)>,
    /// Whether dL/dx is wanted (false for the first block that depends on a leaf).
    want_dx: bool,
}

#[derive(Clone)]
enum EditKind {
    /// The leaf's shape, which its gradient takes.
    Clamp(Shape),
    Probe(Shape),
    /// Unit factors (R, M).
    Scale(Tensor),
}

/// (x - mean) / sqrt(var + eps) over the last dimension, and 1 / sqrt(var + eps) (.., 1).
fn normalize(x: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
    let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let inv = (xc.sqr()?.mean_keepdim(D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    Ok((xc.broadcast_mul(&inv)?, inv))
}

/// LayerNorm of `x` over its last dimension (a fused kernel on a CUDA device, candle ops elsewhere).
pub fn layer_norm(ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if kernels(x) == Kernels::Cuda {
        return crate::model::cuda_kernels::layer_norm(x, &ln.weight, &ln.bias, ln.eps);
    }
    let (xh, _) = normalize(x, ln.eps)?;
    xh.broadcast_mul(&ln.weight)?.broadcast_add(&ln.bias)
}

/// dx = inv * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = g * weight.
pub fn layer_norm_grad(ln: &LayerNorm, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if kernels(x) == Kernels::Cuda {
        return crate::model::cuda_kernels::layer_norm_grad(x, g, &ln.weight, ln.eps);
    }
    let (xh, inv) = normalize(x, ln.eps)?;
    let dxh = g.broadcast_mul(&ln.weight)?;
    let m1 = dxh.mean_keepdim(D::Minus1)?;
    let m2 = (&dxh * &xh)?.mean_keepdim(D::Minus1)?;
    dxh.broadcast_sub(&m1)?
        .sub(&xh.broadcast_mul(&m2)?)?
        .broadcast_mul(&inv)
}

/// The input gradient `g W` of a linear layer for its output gradient `g` (.., out).
fn linear_grad(l: &Linear, g: &Tensor) -> Result<Tensor> {
    let mut dims = g.dims().to_vec();
    let out = dims[dims.len() - 1];
    let gx = g.reshape((g.elem_count() / out, out))?.matmul(&l.weight)?;
    *dims.last_mut().unwrap() = l.weight.dim(1)?;
    gx.reshape(dims)
}

/// GELU of `z` and, when asked for, its derivative (the exact formulas of `gelu::pair_exact`).
pub fn gelu(kind: Gelu, z: &Tensor, derivative: bool) -> Result<(Tensor, Option<Tensor>)> {
    #[cfg(feature = "cuda")]
    // quick-GELU has no CUDA kernel: candle's ops below run it on the GPU too.
    if kernels(z) == Kernels::Cuda && kind != Gelu::Quick {
        return crate::model::cuda_kernels::gelu(kind, z, derivative);
    }
    match kind {
        Gelu::Erf => {
            let cdf = (((z * FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5)?;
            let a = (z * &cdf)?;
            if !derivative {
                return Ok((a, None));
            }
            let pdf = ((z.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * PI).sqrt()))?;
            Ok((a, Some((cdf + (z * pdf)?)?)))
        }
        Gelu::Tanh => {
            let c = (2.0 / PI).sqrt();
            let z2 = z.sqr()?;
            let t = (((&z2 * 0.044715)? + 1.0)? * z)?.affine(c, 0.0)?.tanh()?;
            let a = ((z * 0.5)? * (&t + 1.0)?)?;
            if !derivative {
                return Ok((a, None));
            }
            // 0.5 (1 + t) + 0.5 z (1 - t^2) c (1 + 3 * 0.044715 z^2)
            let slope = (((z2 * (3.0 * 0.044715))? + 1.0)? * (0.5 * c))?;
            let d = (((&t + 1.0)? * 0.5)? + (z * (t.sqr()?.affine(-1.0, 1.0)? * slope)?)?)?;
            Ok((a, Some(d)))
        }
        Gelu::Quick => {
            // s = sigmoid(1.702 z); a = z s; a' = s + 1.702 z s (1 - s)
            let s = ((z * -1.702)?.exp()? + 1.0)?.recip()?;
            let a = (z * &s)?;
            if !derivative {
                return Ok((a, None));
            }
            let d = (&s + ((z * 1.702)? * (&s * s.affine(-1.0, 1.0)?)?)?)?;
            Ok((a, Some(d)))
        }
    }
}

/// The softmax backward `p * (dp - sum(p * dp))` over the last dimension, times `scale` on a
/// CUDA device (one fused kernel); on the CPU unscaled. Returns it and the factor still to apply.
pub fn softmax_grad(p: &Tensor, dp: &Tensor, scale: f64) -> Result<(Tensor, f64)> {
    #[cfg(feature = "cuda")]
    if kernels(p) == Kernels::Cuda {
        return Ok((crate::model::cuda_kernels::softmax_grad(p, dp, scale)?, 1.0));
    }
    let dot = (dp * p)?.sum_keepdim(D::Minus1)?;
    Ok(((dp.broadcast_sub(&dot)? * p)?, scale))
}

/// `a` (R, N, M) with token rows `s..s+len` replaced by `f` of them.
fn map_rows(
    a: &Tensor,
    (s, len): (usize, usize),
    f: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let rows = f(&a.narrow(1, s, len)?)?;
    replace_rows(a, s, len, &rows)
}

/// Multiplies the CLS row of `a` (R, N, M) unit-wise by the pruning mask (M).
fn mask_cls(a: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.dim(0)?;
    map_rows(a, (0, 1), |row| {
        row.broadcast_mul(&mask.reshape((1, 1, m))?)
    })
}

/// Runs one block (Mode::Frozen, any device): returns x' and the post-edit hidden units `a`.
pub(crate) fn block(
    block: &Block,
    x: &Tensor,
    edit: Option<&LayerEdit>,
    heads: usize,
    gelu_kind: Gelu,
    prefix: usize,
) -> Result<(Tensor, Tensor)> {
    let xd = x.detach().contiguous()?;
    let (r, n, d) = xd.dims3()?;
    let m = block.fc1.weight.dim(0)?;
    if r * n == 0 {
        return Ok((xd, Tensor::zeros((r, n, m), x.dtype(), x.device())?));
    }
    let leaf_tracked = edit.is_some_and(|e| match &e.edit {
        Edit::Clamp(t) => t.track_op(),
        Edit::Probe(_) => true,
        Edit::Scale(_) => false,
    });
    let needs_backward = x.track_op() || leaf_tracked;
    let hd = d / heads;

    let qkv = block
        .qkv
        .forward(&layer_norm(&block.ln_att, &xd)?, Mode::Frozen)?
        .reshape((r, n, 3, heads, hd))?
        .permute([2, 0, 3, 1, 4])?;
    let q = qkv.get(0)?.contiguous()?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    drop(qkv);
    let scale = 1.0 / (hd as f64).sqrt();
    let p = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?;
    let o = p
        .matmul(&v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((r, n, d))?;
    let h = (&xd + block.proj.forward(&o, Mode::Frozen)?)?;
    drop(o);
    let z = block
        .fc1
        .forward(&layer_norm(&block.ln_ffn, &h)?, Mode::Frozen)?;
    let (mut a, gelu_grad) = gelu(gelu_kind, &z, needs_backward)?;
    drop(z);
    if let Some(mask) = &block.cls_mask {
        a = mask_cls(&a, mask)?;
    }
    let mut leaf: Option<Tensor> = None;
    let mut kind = None;
    if let Some(e) = edit {
        let span = e.rows.span(n, prefix);
        match &e.edit {
            Edit::Clamp(t) => {
                a = map_rows(&a, span, |_| t.detach().reshape((r, span.1, m)))?;
                leaf = Some(t.clone());
                kind = Some((e.rows, EditKind::Clamp(t.shape().clone())));
            }
            Edit::Probe(var) => {
                let t = var.as_tensor();
                a = map_rows(&a, span, |rows| {
                    rows + t.detach().reshape((r, span.1, m))?
                })?;
                leaf = Some(t.clone());
                kind = Some((e.rows, EditKind::Probe(t.shape().clone())));
            }
            Edit::Scale(f) => {
                let f = f.detach();
                a = map_rows(&a, span, |rows| rows.broadcast_mul(&f.reshape((r, 1, m))?))?;
                kind = Some((e.rows, EditKind::Scale(f)));
            }
        }
    }
    let out = (&h + block.fc2.forward(&a, Mode::Frozen)?)?;
    let (Some(gelu_grad), true) = (gelu_grad, needs_backward) else {
        return Ok((out, a));
    };
    // A binary op's fresh result: its storage is exactly the tensor, which `*_fwd` clone whole.
    if !out.is_contiguous() || out.layout().start_offset() != 0 {
        candle_core::bail!("fused device block: the output is not a fresh contiguous tensor")
    }
    let leaf = leaf.filter(|t| t.track_op());
    let saved = Saved {
        x: xd,
        q,
        k,
        v,
        p,
        h,
        gelu_grad,
        out: Mutex::new(Some(out)),
        heads,
        prefix,
        block: block.clone(),
        edit: kind,
        want_dx: x.track_op(),
    };
    let y = match leaf {
        Some(t) => x.apply_op2(&t, FusedDeviceBlock(saved))?,
        None => x.apply_op1(FusedDeviceBlock(saved))?,
    };
    Ok((y, a))
}

struct FusedDeviceBlock(Saved);

impl FusedDeviceBlock {
    /// (dL/dx, dL/d(leaf)) for output gradient `g` (R, N, D).
    fn grads(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let s = &self.0;
        let b = &s.block;
        let (r, n, d) = s.x.dims3()?;
        let m = b.fc1.weight.dim(0)?;
        let g = g.contiguous()?;
        let mut da = linear_grad(&b.fc2, &g)?;
        let mut d_leaf = None;
        if let Some((sel, kind)) = &s.edit {
            let span = sel.span(n, s.prefix);
            match kind {
                EditKind::Clamp(shape) => {
                    d_leaf = Some(da.narrow(1, span.0, span.1)?.reshape(shape)?);
                    da = map_rows(&da, span, |rows| rows.zeros_like())?;
                }
                EditKind::Probe(shape) => {
                    d_leaf = Some(da.narrow(1, span.0, span.1)?.reshape(shape)?);
                }
                EditKind::Scale(f) => {
                    da = map_rows(&da, span, |rows| rows.broadcast_mul(&f.reshape((r, 1, m))?))?;
                }
            }
        }
        if !s.want_dx {
            return Ok((None, d_leaf));
        }
        if let Some(mask) = &b.cls_mask {
            da = mask_cls(&da, mask)?;
        }
        let dz = (da * &s.gelu_grad)?;
        let dln2 = linear_grad(&b.fc1, &dz)?;
        drop(dz);
        let dh = (layer_norm_grad(&b.ln_ffn, &s.h, &dln2)? + &g)?;
        drop(dln2);
        let hd = d / s.heads;
        let d_o = linear_grad(&b.proj, &dh)?
            .reshape((r, n, s.heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        // dS = softmax_bwd(dO V^T), dQ = dS K scale, dK = dS^T Q scale, dV = P^T dO.
        let dp = d_o.matmul(&s.v.t()?)?;
        let (ds, scale) = softmax_grad(&s.p, &dp, 1.0 / (hd as f64).sqrt())?;
        drop(dp);
        let scaled = |t: Tensor| if scale == 1.0 { Ok(t) } else { t * scale };
        let dq = scaled(ds.matmul(&s.k)?)?;
        let dk = scaled(ds.t()?.matmul(&s.q)?)?;
        drop(ds);
        let dv = s.p.t()?.matmul(&d_o)?;
        drop(d_o);
        // (3, R, H, N, hd) -> (R, N, 3, H, hd): qkv's column order.
        let dqkv = Tensor::stack(&[dq, dk, dv], 0)?
            .permute([1, 3, 0, 2, 4])?
            .contiguous()?
            .reshape((r, n, 3 * d))?;
        let dln1 = linear_grad(&b.qkv, &dqkv)?;
        drop(dqkv);
        let dx = (layer_norm_grad(&b.ln_att, &s.x, &dln1)? + dh)?;
        Ok((Some(dx), d_leaf))
    }

    /// The saved output, taken: the forward runs once per node.
    fn take_out(&self) -> Result<Tensor> {
        let taken = self.0.out.lock().map(|mut o| o.take());
        match taken {
            Ok(Some(t)) => Ok(t),
            _ => candle_core::bail!("fused device block: output already taken"),
        }
    }

    fn cpu_out(&self) -> Result<(CpuStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cpu(c) => Ok((c.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("fused device block: saved output is not on the cpu"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_out(&self) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cuda(c) => Ok((c.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("fused device block: saved output is not on cuda"),
        }
    }
}

impl CustomOp1 for FusedDeviceBlock {
    fn name(&self) -> &'static str {
        "np-fused-device-block"
    }
    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu_out()
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _s: &candle_core::CudaStorage,
        _l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda_out()
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.grads(grad)?.0)
    }
}

impl CustomOp2 for FusedDeviceBlock {
    fn name(&self) -> &'static str {
        "np-fused-device-block"
    }
    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_out()
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _s1: &candle_core::CudaStorage,
        _l1: &Layout,
        _s2: &candle_core::CudaStorage,
        _l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda_out()
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _leaf: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.grads(grad)
    }
}
