//! One encoder block as a single autograd node with a hand-written backward (attribution on the
//! CPU). The forward runs on detached tensors and keeps what the backward needs; the backward
//! returns only dL/dx and dL/d(edit leaf), never weight gradients.
//!
//! Why: built from candle ops, a block records ~25 nodes whose backward allocates a zero tensor
//! per operand and accumulates into it, and `narrow`/`get` backward pad full-size copies; with
//! this node the same math is ~10 GEMMs and a few fused kernels. It is checked against the
//! op-by-op graph (Mode::Train), finite differences and the golden values.
use crate::model::intervene::{replace_rows, Edit, LayerEdit, Rows};
use crate::model::ops::{self, Gelu, Mode};
use crate::model::vit::Block;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor,
};

/// What the backward of one block needs.
struct Saved {
    x: Tensor,
    /// Scaled queries, keys, values (R, H, N, hd).
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Attention probabilities (R, H, N, N).
    p: Tensor,
    h: Tensor,
    /// GELU derivative at fc1's output.
    gelu_grad: Tensor,
    out: Tensor,
    scale: f64,
    heads: usize,
    prefix: usize,
    block: Block,
    edit: Option<(Rows, EditKind)>,
    /// Whether dL/dx is wanted (false for the first block that depends on a leaf).
    want_dx: bool,
}

#[derive(Clone)]
enum EditKind {
    Clamp,
    Probe,
    Scale(Tensor),
}

fn multiply_rows(a: &Tensor, rows: Rows, prefix: usize, f: &Tensor) -> Result<Tensor> {
    let (r, n, m) = a.dims3()?;
    let (s, len) = rows.span(n, prefix);
    let sel = a.narrow(1, s, len)?.broadcast_mul(&f.reshape((r, 1, m))?)?;
    replace_rows(a, s, len, &sel)
}

fn cls_mask(block: &Block, a: &Tensor) -> Result<Tensor> {
    match &block.cls_mask {
        Some(mask) => {
            let r = a.dim(0)?;
            let f = mask.unsqueeze(0)?.broadcast_as((r, mask.dim(0)?))?;
            multiply_rows(a, Rows::Cls, 0, &f)
        }
        None => Ok(a.clone()),
    }
}

/// Runs one block (Mode::Frozen, CPU): returns x' and the post-edit hidden units `a`.
pub(crate) fn block(
    block: &Block,
    x: &Tensor,
    edit: Option<&LayerEdit>,
    heads: usize,
    gelu: Gelu,
    prefix: usize,
) -> Result<(Tensor, Tensor)> {
    let mode = Mode::Frozen;
    let xd = x.detach();
    let (r, n, d) = xd.dims3()?;
    let hd = d / heads;
    let qkv = block
        .qkv
        .forward(&block.ln_att.forward(&xd, mode)?, mode)?
        .reshape((r, n, 3, heads, hd))?
        .permute([2, 0, 3, 1, 4])?;
    let scale = 1.0 / (hd as f64).sqrt();
    let q = (qkv.get(0)?.contiguous()? * scale)?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    let p = ops::softmax(&q.matmul(&k.t()?)?, mode)?;
    let o = p.matmul(&v)?.permute([0, 2, 1, 3])?.reshape((r, n, d))?;
    let h = (&xd + block.proj.forward(&o, mode)?)?;
    let z = block.fc1.forward(&block.ln_ffn.forward(&h, mode)?, mode)?;
    let leaf_tracked = edit.is_some_and(|e| match &e.edit {
        Edit::Clamp(t) => t.track_op(),
        Edit::Probe(_) => true,
        Edit::Scale(_) => false,
    });
    let needs_backward = x.track_op() || leaf_tracked;
    // The derivative costs a second erf per unit: only when a backward will use it.
    let (a, gelu_grad) = if needs_backward {
        let (a, g) = ops::gelu_with_derivative(&z, gelu)?;
        (a, Some(g))
    } else {
        (ops::gelu(&z, gelu, mode)?, None)
    };
    let mut a = cls_mask(block, &a)?;
    let mut leaf: Option<Tensor> = None;
    let mut kind = None;
    if let Some(e) = edit {
        let (s, len) = e.rows.span(n, prefix);
        let m = a.dim(2)?;
        match &e.edit {
            Edit::Clamp(t) => {
                a = replace_rows(&a, s, len, &t.detach().reshape((r, len, m))?)?;
                leaf = Some(t.clone());
                kind = Some((e.rows, EditKind::Clamp));
            }
            Edit::Probe(var) => {
                let t = var.as_tensor();
                let rows = (a.narrow(1, s, len)? + t.detach().reshape((r, len, m))?)?;
                a = replace_rows(&a, s, len, &rows)?;
                leaf = Some(t.clone());
                kind = Some((e.rows, EditKind::Probe));
            }
            Edit::Scale(f) => {
                a = multiply_rows(&a, e.rows, prefix, f)?;
                kind = Some((e.rows, EditKind::Scale(f.clone())));
            }
        }
    }
    let out = (&h + block.fc2.forward(&a, mode)?)?.contiguous()?;
    let (Some(gelu_grad), true) = (gelu_grad, needs_backward) else {
        return Ok((out, a));
    };
    let leaf = leaf.filter(|t| t.track_op());
    let saved = Saved {
        x: xd,
        q,
        k,
        v,
        p,
        h,
        gelu_grad,
        out,
        scale,
        heads,
        prefix,
        block: block.clone(),
        edit: kind,
        want_dx: x.track_op(),
    };
    let y = match leaf {
        Some(t) => x.apply_op2(&t, FusedBlock(saved))?,
        None => x.apply_op1(FusedBlock(saved))?,
    };
    Ok((y, a))
}

struct FusedBlock(Saved);

fn clone_storage(t: &Tensor) -> Result<(CpuStorage, Shape)> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("fused block: expected a cpu tensor")
    };
    let Some((a, b)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused block: expected a contiguous tensor")
    };
    let data = match cpu.dtype() {
        DType::F32 => CpuStorage::F32(cpu.as_slice::<f32>()?[a..b].to_vec()),
        DType::F64 => CpuStorage::F64(cpu.as_slice::<f64>()?[a..b].to_vec()),
        d => candle_core::bail!("fused block: unsupported dtype {d:?}"),
    };
    Ok((data, layout.shape().clone()))
}

impl FusedBlock {
    /// (dL/dx, dL/d(leaf)) for output gradient `g`.
    fn grads(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let s = &self.0;
        let b = &s.block;
        let (r, n, d) = s.x.dims3()?;
        let mut da = b.fc2.backward(g)?;
        let m = da.dim(2)?;
        let mut d_leaf = None;
        if let Some((rows, kind)) = &s.edit {
            let (st, len) = rows.span(n, s.prefix);
            match kind {
                EditKind::Clamp => {
                    d_leaf = Some(da.narrow(1, st, len)?);
                    let zero = Tensor::zeros((r, len, m), da.dtype(), da.device())?;
                    da = replace_rows(&da, st, len, &zero)?;
                }
                EditKind::Probe => d_leaf = Some(da.narrow(1, st, len)?),
                EditKind::Scale(f) => da = multiply_rows(&da, *rows, s.prefix, f)?,
            }
        }
        let d_leaf = match d_leaf {
            Some(t) if t.dim(1)? == 1 => Some(t.squeeze(1)?),
            other => other,
        };
        if !s.want_dx {
            return Ok((None, d_leaf));
        }
        let da = cls_mask(b, &da)?;
        let dz = (da * &s.gelu_grad)?;
        let dh = (g + b.ln_ffn.backward(&s.h, &b.fc1.backward(&dz)?)?)?;
        let hd = d / s.heads;
        let d_o = b
            .proj
            .backward(&dh)?
            .reshape((r, n, s.heads, hd))?
            .permute([0, 2, 1, 3])?
            .contiguous()?;
        let dp = d_o.matmul(&s.v.t()?)?;
        let dv = s.p.t()?.matmul(&d_o)?;
        let ds = ops::softmax_backward(&s.p, &dp)?;
        let dq = (ds.matmul(&s.k)? * s.scale)?;
        let dk = ds.t()?.matmul(&s.q)?;
        let dqkv = Tensor::stack(&[dq, dk, dv], 0)?
            .permute([1, 3, 0, 2, 4])?
            .reshape((r, n, 3 * d))?;
        let dx = (dh + b.ln_att.backward(&s.x, &b.qkv.backward(&dqkv)?)?)?;
        Ok((Some(dx), d_leaf))
    }
}

impl CustomOp1 for FusedBlock {
    fn name(&self) -> &'static str {
        "np-fused-block"
    }
    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        clone_storage(&self.0.out)
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.grads(grad)?.0)
    }
}

impl CustomOp2 for FusedBlock {
    fn name(&self) -> &'static str {
        "np-fused-block"
    }
    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        clone_storage(&self.0.out)
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
