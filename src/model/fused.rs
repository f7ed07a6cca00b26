//! One encoder block as a single autograd node with a hand-written backward (attribution on the
//! CPU). The forward runs on plain slices and keeps what the backward needs; the backward returns
//! only dL/dx and dL/d(edit leaf), never weight gradients.
//!
//! Why: built from candle ops, a block records ~25 nodes whose backward allocates a zero tensor
//! per operand and accumulates into it, and `narrow`/`get` backward pad full-size copies; here the
//! same math is ~10 GEMMs (`kernels`) and a few fused loops. It is checked against the op-by-op
//! graph (Mode::Train), finite differences and the golden values.
//!
//! Layouts: x, h, out (R, N, D); qkv (R, N, 3D) with head `h`'s query at columns `h*hd..`, key at
//! `D + h*hd..`, value at `2D + h*hd..`; attention probabilities (R, H, N, N); a (R, N, M).
use std::marker::PhantomData;

use crate::model::block::Block;
use crate::model::config::Gelu;
use crate::model::intervene::{Edit, LayerEdit, Rows};
use crate::model::kernels::{self, Acc, Dst, Mat};
use crate::model::ops::{self, Linear};
use crate::model::real::Real;
use crate::model::rows::for_rows;
use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Device, Layout, Result, Shape, Storage, StorageRef,
    Tensor, WithDType,
};
use rayon::prelude::*;

#[path = "fused_tangent.rs"]
mod tangent;
pub(crate) use tangent::add_fc2_columns;

/// A contiguous CPU tensor's elements, read-locked while this lives.
struct Host<'a, T> {
    guard: StorageRef<'a>,
    range: (usize, usize),
    _t: PhantomData<T>,
}

impl<'a, T: Real> Host<'a, T> {
    fn new(t: &'a Tensor) -> Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        let Some(range) = layout.contiguous_offsets() else {
            candle_core::bail!("fused block: expected a contiguous tensor")
        };
        match &*guard {
            Storage::Cpu(c) if c.dtype() == T::DTYPE => {}
            _ => candle_core::bail!("fused block: expected a cpu {:?} tensor", T::DTYPE),
        }
        Ok(Host {
            guard,
            range,
            _t: PhantomData,
        })
    }

    fn get(&self) -> &[T] {
        let Storage::Cpu(c) = &*self.guard else {
            unreachable!("checked in Host::new")
        };
        let all = T::cpu_storage_as_slice(c).expect("dtype checked in Host::new");
        &all[self.range.0..self.range.1]
    }
}

fn host_opt<T: Real>(t: &Option<Tensor>) -> Result<Option<Host<'_, T>>> {
    t.as_ref().map(Host::new).transpose()
}

fn bias<'a, T: Real>(h: &'a Option<Host<'_, T>>) -> Option<&'a [T]> {
    h.as_ref().map(|h| h.get())
}

fn tensor<T: Real>(v: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// What the backward (and the tangent) of one block needs.
pub(crate) struct Saved {
    x: Tensor,
    qkv: Tensor,
    /// Attention probabilities (R, H, N, N), or None: recomputed from q and k where needed (a
    /// quarter of a ViT-B/16 block's saved state, for two small GEMMs per head).
    p: Option<Tensor>,
    h: Tensor,
    /// GELU derivative at fc1's output.
    gelu_grad: Tensor,
    /// The block's output, for the autograd node (None once [`Saved::forget_output`] ran).
    out: Option<Tensor>,
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

/// Sizes of one block's batch.
#[derive(Clone, Copy)]
struct Dims {
    r: usize,
    n: usize,
    d: usize,
    m: usize,
    heads: usize,
    /// Tokens per image whose output is computed: all `n`, or 1 (CLS) in a CLS-pooled model's
    /// last block, where nothing reads the other rows (their keys and values are still needed).
    keep: usize,
}

impl Dims {
    fn hd(&self) -> usize {
        self.d / self.heads
    }
    fn scale(&self) -> f64 {
        1.0 / (self.hd() as f64).sqrt()
    }
    /// The same sizes seen from the kept rows (h, a, out have `keep` tokens per image).
    fn kept(&self) -> Dims {
        Dims {
            n: self.keep,
            ..*self
        }
    }
}

/// The first `keep` of every `n` rows (`width` wide) of `x`, or `x` itself when all are kept.
fn first_rows<T: Real>(x: &[T], n: usize, keep: usize, width: usize) -> std::borrow::Cow<'_, [T]> {
    if keep == n {
        return std::borrow::Cow::Borrowed(x);
    }
    std::borrow::Cow::Owned(take_rows(x, n, width, (0, keep)))
}

/// Multiplies token rows `s..s+len` of every image of `a` (R, N, M) unit-wise by `f` (R, M).
fn scale_rows<T: Real>(a: &mut [T], dm: Dims, (s, len): (usize, usize), f: &[T]) {
    let m = dm.m;
    for_rows(a, dm.n * m, |r, img| {
        let fr = &f[r * m..(r + 1) * m];
        for row in img[s * m..(s + len) * m].chunks_mut(m) {
            row.iter_mut().zip(fr).for_each(|(v, &k)| *v *= k);
        }
    });
}

/// Applies `op(row value, given value)` to token rows `s..s+len` of every image of `a` with
/// `vals` (R, len, M).
fn set_rows<T: Real>(
    a: &mut [T],
    dm: Dims,
    (s, len): (usize, usize),
    vals: &[T],
    op: fn(T, T) -> T,
) {
    let m = dm.m;
    for_rows(a, dm.n * m, |r, img| {
        let v = &vals[r * len * m..(r + 1) * len * m];
        img[s * m..(s + len) * m]
            .iter_mut()
            .zip(v)
            .for_each(|(a, &b)| *a = op(*a, b));
    });
}

/// Token rows `s..s+len` of every `n`-token image of `a` (rows `width` wide), as (R, len, width).
fn take_rows<T: Real>(a: &[T], n: usize, width: usize, (s, len): (usize, usize)) -> Vec<T> {
    a.chunks(n * width)
        .flat_map(|img| img[s * width..(s + len) * width].iter().copied())
        .collect()
}

/// The attention of all (image, head) pairs for the first `keep` queries of each image:
/// probabilities (R, H, keep, N) and head outputs (R, keep, D).
fn attention<T: Real>(qkv: &[T], dm: Dims) -> (Vec<T>, Vec<T>) {
    let Dims {
        r,
        n,
        d,
        heads,
        keep,
        ..
    } = dm;
    let hd = dm.hd();
    let scale = T::from_f64(dm.scale());
    let mut p = kernels::uninit::<T>(r * heads * keep * n);
    let mut o = kernels::uninit::<T>(r * keep * d);
    let o_all = Dst::new(&mut o, 0, (0, 0), d);
    let o_len = r * keep * d;
    p.par_chunks_mut(keep * n).enumerate().for_each(|(i, pi)| {
        let (img, head) = (i / heads, i % heads);
        let base = img * n * 3 * d;
        let q = Mat::new(qkv, base + head * hd, (keep, hd), (3 * d, 1));
        let k = Mat::new(qkv, base + d + head * hd, (n, hd), (3 * d, 1));
        let v = Mat::new(qkv, base + 2 * d + head * hd, (n, hd), (3 * d, 1));
        // SAFETY: `pi` is this task's own chunk; each task writes only its own head's columns
        // of its own image's rows of `o`, which outlives the parallel loop.
        unsafe {
            let pi = head_probs_into(pi, q, k, n, scale);
            let oi = o_all.at(img * keep * d + head * hd, (keep, hd), o_len);
            kernels::matmul(
                oi,
                Mat::rows(pi, keep, n),
                v,
                Acc::Overwrite,
                T::one(),
                false,
            );
        }
    });
    // SAFETY: every chunk of `p` and every (image, head) block of `o` was written above.
    unsafe { (kernels::assume_init(p), kernels::assume_init(o)) }
}

/// Writes the attention probabilities softmax(scale q k^T) (keep, N) of one (image, head) into
/// `dst`; the same products as the forward, so a recomputation gives the same values.
fn head_probs_into<'a, T: Real>(
    dst: &'a mut [std::mem::MaybeUninit<T>],
    q: Mat<T>,
    k: Mat<T>,
    n: usize,
    scale: T,
) -> &'a mut [T] {
    let keep = dst.len() / n.max(1);
    let s = Dst::new(dst, 0, (keep, n), n);
    // SAFETY: the product overwrites all of `dst`, which this call borrows exclusively.
    unsafe {
        kernels::matmul(s, q, k.t(), Acc::Overwrite, scale, false);
        let p: &mut [T] = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast(), dst.len());
        kernels::softmax_rows(p, n);
        p
    }
}

/// The probabilities (keep, N) of (image `img`, head `head`): saved, or recomputed.
fn head_probs<'a, T: Real>(
    qkv: &[T],
    p: Option<&'a [T]>,
    dm: Dims,
    (img, head): (usize, usize),
) -> std::borrow::Cow<'a, [T]> {
    let (n, d, keep, hd) = (dm.n, dm.d, dm.keep, dm.hd());
    if let Some(p) = p {
        let i = img * dm.heads + head;
        return std::borrow::Cow::Borrowed(&p[i * keep * n..(i + 1) * keep * n]);
    }
    let base = img * n * 3 * d;
    let q = Mat::new(qkv, base + head * hd, (keep, hd), (3 * d, 1));
    let k = Mat::new(qkv, base + d + head * hd, (n, hd), (3 * d, 1));
    let mut buf = kernels::uninit::<T>(keep * n);
    head_probs_into(&mut buf, q, k, n, T::from_f64(dm.scale()));
    // SAFETY: head_probs_into wrote every element.
    std::borrow::Cow::Owned(unsafe { kernels::assume_init(buf) })
}

/// Gradient w.r.t. qkv (R, N, 3D) from the gradient `d_o` (R, keep, D) of the head outputs.
fn attention_backward<T: Real>(qkv: &[T], p: Option<&[T]>, d_o: &[T], dm: Dims) -> Vec<T> {
    let Dims {
        r,
        n,
        d,
        heads,
        keep,
        ..
    } = dm;
    let hd = dm.hd();
    let scale = T::from_f64(dm.scale());
    let mut dqkv = if keep == n {
        kernels::uninit::<T>(r * n * 3 * d)
    } else {
        // Queries past `keep` get no gradient: their rows stay zero.
        vec![std::mem::MaybeUninit::new(T::zero()); r * n * 3 * d]
    };
    let all = Dst::new(&mut dqkv, 0, (0, 0), 3 * d);
    let len = r * n * 3 * d;
    (0..r * heads).into_par_iter().for_each(|i| {
        let (img, head) = (i / heads, i % heads);
        let base = img * n * 3 * d;
        let q = Mat::new(qkv, base + head * hd, (keep, hd), (3 * d, 1));
        let k = Mat::new(qkv, base + d + head * hd, (n, hd), (3 * d, 1));
        let v = Mat::new(qkv, base + 2 * d + head * hd, (n, hd), (3 * d, 1));
        let go = Mat::new(d_o, img * keep * d + head * hd, (keep, hd), (d, 1));
        let pi = head_probs(qkv, p, dm, (img, head));
        let pi = &pi[..];
        let pm = Mat::rows(pi, keep, n);
        let mut ds = kernels::uninit::<T>(keep * n);
        let ds_dst = Dst::new(&mut ds, 0, (keep, n), n);
        // SAFETY: `ds` is this task's own; each task writes only its own head's q, k and v
        // columns of its own image's rows of `dqkv`, which outlives the parallel loop.
        unsafe {
            kernels::matmul(ds_dst, go, v.t(), Acc::Overwrite, T::one(), false);
            let mut ds = kernels::assume_init(ds);
            kernels::softmax_rows_backward(pi, &mut ds, n);
            let dsm = Mat::rows(&ds, keep, n);
            let at = |col: usize, rows: usize| all.at(base + col + head * hd, (rows, hd), len);
            kernels::matmul(at(0, keep), dsm, k, Acc::Overwrite, scale, false);
            kernels::matmul(at(d, n), dsm.t(), q, Acc::Overwrite, scale, false);
            kernels::matmul(at(2 * d, n), pm.t(), go, Acc::Overwrite, T::one(), false);
        }
    });
    // SAFETY: every (image, head) wrote its k and v columns and its first `keep` q rows, which
    // with the zeroed rest tile all of `dqkv`.
    unsafe { kernels::assume_init(dqkv) }
}

/// Runs one block (Mode::Frozen, CPU): returns x' and the post-edit hidden units `a`, for every
/// token, or with `cls_only` for the CLS token alone (x' and `a` then have one token per image;
/// an edit must then touch the CLS row only).
pub(crate) fn block(
    block: &Block,
    x: &Tensor,
    edit: Option<&LayerEdit>,
    heads: usize,
    gelu: Gelu,
    prefix: usize,
    cls_only: bool,
) -> Result<(Tensor, Tensor)> {
    if cls_only && edit.is_some_and(|e| e.rows != Rows::Cls) {
        candle_core::bail!("fused block: a CLS-only block cannot edit patch rows")
    }
    let run = Run {
        heads,
        gelu,
        prefix,
        cls_only,
    };
    match x.dtype() {
        DType::F32 => block_t::<f32>(block, x, edit, run),
        DType::F64 => block_t::<f64>(block, x, edit, run),
        d => candle_core::bail!("fused block: unsupported dtype {d:?}"),
    }
}

/// How a block runs (model-wide settings, and whether only the CLS row's output is needed).
#[derive(Clone, Copy)]
pub(crate) struct Run {
    pub heads: usize,
    pub gelu: Gelu,
    pub prefix: usize,
    pub cls_only: bool,
}

fn block_t<T: Real>(
    block: &Block,
    x: &Tensor,
    edit: Option<&LayerEdit>,
    run: Run,
) -> Result<(Tensor, Tensor)> {
    let leaf = edit.and_then(|e| match &e.edit {
        Edit::Clamp(t) => t.track_op().then(|| t.clone()),
        Edit::Probe(var) => Some(var.as_tensor().clone()),
        Edit::Scale(_) => None,
    });
    let needs_backward = x.track_op() || leaf.is_some();
    let xd = x.detach().contiguous()?;
    let save = Save {
        save: needs_backward,
        want_dx: x.track_op(),
        keep_probs: true,
    };
    let (out, a, saved) = forward_saved::<T>(block, xd, edit, run, save)?;
    let Some(saved) = saved else {
        return Ok((out, a));
    };
    let y = match leaf {
        Some(t) => x.apply_op2(&t, FusedBlock(saved))?,
        None => x.apply_op1(FusedBlock(saved))?,
    };
    Ok((y, a))
}

/// What a block's forward keeps for its backward.
#[derive(Clone, Copy)]
pub(crate) struct Save {
    /// Keep anything at all.
    pub save: bool,
    /// Whether the backward returns dL/dx (false for the first block that depends on a leaf).
    pub want_dx: bool,
    /// Keep the attention probabilities (else the backward and tangent recompute them).
    pub keep_probs: bool,
}

/// One block's forward on plain slices from `xd` (detached, contiguous (R, N, D)): x' and the
/// post-edit hidden units `a`, and as `save` asks, what the backward ([`Saved::grads`]) and the
/// tangent (`fused_tangent`) need.
pub(crate) fn forward_saved<T: Real>(
    block: &Block,
    xd: Tensor,
    edit: Option<&LayerEdit>,
    run: Run,
    save: Save,
) -> Result<(Tensor, Tensor, Option<Saved>)> {
    let Run {
        heads,
        gelu,
        prefix,
        cls_only,
    } = run;
    let Save {
        save,
        want_dx,
        keep_probs,
    } = save;
    let (r, n, d) = xd.dims3()?;
    let m = block.fc1.weight.dim(0)?;
    let keep = if cls_only { n.min(1) } else { n };
    let dm = Dims {
        r,
        n,
        d,
        m,
        heads,
        keep,
    };
    let km = dm.kept();
    // Rows of the projection inputs (every token) and of everything after attention (kept ones).
    let (rows, krows) = (r * n, r * keep);
    if krows == 0 {
        // Nothing to compute (an empty chunk); the GEMM helpers size matrices by their rows.
        let none = Tensor::zeros((r, keep, m), xd.dtype(), &Device::Cpu)?;
        return Ok((xd.narrow(1, 0, keep)?, none, None));
    }

    let weights = |l: &Linear| -> Result<(Tensor, Option<Tensor>)> {
        let b = l.bias.as_ref().map(|b| b.contiguous()).transpose()?;
        Ok((l.weight_t()?.contiguous()?, b))
    };
    let (qkv_w, qkv_b) = weights(&block.qkv)?;
    let (proj_w, proj_b) = weights(&block.proj)?;
    let (fc1_w, fc1_b) = weights(&block.fc1)?;
    let (fc2_w, fc2_b) = weights(&block.fc2)?;
    let (qkv_b, proj_b) = (host_opt::<T>(&qkv_b)?, host_opt::<T>(&proj_b)?);
    let (fc1_b, fc2_b) = (host_opt::<T>(&fc1_b)?, host_opt::<T>(&fc2_b)?);

    let xh = Host::<T>::new(&xd)?;
    let xs = xh.get();
    let ln1 = block.ln_att.op()?.run(xs);
    let qkv = kernels::linear(&ln1, rows, Host::new(&qkv_w)?.get(), bias(&qkv_b), None);
    drop(ln1);
    let (p, o) = attention(&qkv, dm);
    let residual = first_rows(xs, n, keep, d);
    let h = kernels::linear(
        &o,
        krows,
        Host::new(&proj_w)?.get(),
        bias(&proj_b),
        Some(&residual),
    );
    drop((o, residual));
    let mut a = kernels::linear(
        &block.ln_ffn.op()?.run(&h),
        krows,
        Host::new(&fc1_w)?.get(),
        bias(&fc1_b),
        None,
    );
    let gelu_grad = ops::gelu_in_place(gelu, &mut a, save);
    if let Some(mask) = &block.cls_mask {
        let mask = mask.contiguous()?;
        let f: Vec<T> = Host::<T>::new(&mask)?.get().repeat(r);
        scale_rows(&mut a, km, (0, 1), &f);
    }
    let mut kind = None;
    if let Some(e) = edit {
        let span = e.rows.span(n, prefix);
        match &e.edit {
            Edit::Clamp(t) => {
                let v = t.detach().contiguous()?;
                set_rows(&mut a, km, span, Host::<T>::new(&v)?.get(), |_, b| b);
                kind = Some((e.rows, EditKind::Clamp(t.shape().clone())));
            }
            Edit::Probe(var) => {
                let v = var.as_tensor().detach().contiguous()?;
                set_rows(&mut a, km, span, Host::<T>::new(&v)?.get(), |a, b| a + b);
                kind = Some((e.rows, EditKind::Probe(var.shape().clone())));
            }
            Edit::Scale(f) => {
                let f = f.contiguous()?;
                scale_rows(&mut a, km, span, Host::<T>::new(&f)?.get());
                kind = Some((e.rows, EditKind::Scale(f)));
            }
        }
    }
    let out = kernels::linear(&a, krows, Host::new(&fc2_w)?.get(), bias(&fc2_b), Some(&h));
    let out = tensor(out, (r, keep, d))?;
    let a = tensor(a, (r, keep, m))?;
    let (Some(gelu_grad), true) = (gelu_grad, save) else {
        return Ok((out, a, None));
    };
    drop(xh);
    let saved = Saved {
        x: xd,
        qkv: tensor(qkv, (r, n, 3 * d))?,
        p: keep_probs
            .then(|| tensor(p, (r, heads, keep, n)))
            .transpose()?,
        h: tensor(h, (r, keep, d))?,
        gelu_grad: tensor(gelu_grad, (r, keep, m))?,
        out: Some(out.clone()),
        heads,
        prefix,
        block: block.clone(),
        edit: kind,
        want_dx,
    };
    Ok((out, a, Some(saved)))
}

/// A block's output on token rows whose MLP hidden units are `a` ((R, len, M), or (R, M) for
/// one row): `h_rows` (R, len, D, from [`Saved::residual_rows`]) + fc2(a), as the forward
/// computes it.
pub(crate) fn mlp_rows(block: &Block, h_rows: &Tensor, a: &Tensor) -> Result<Tensor> {
    fn run<T: Real>(block: &Block, h_rows: &Tensor, a: &Tensor) -> Result<Tensor> {
        let (r, len, d) = h_rows.dims3()?;
        let (a, h) = (a.contiguous()?, h_rows.contiguous()?);
        let w = block.fc2.weight_t()?.contiguous()?;
        let b = block
            .fc2
            .bias
            .as_ref()
            .map(|b| b.contiguous())
            .transpose()?;
        let b = host_opt::<T>(&b)?;
        let out = kernels::linear(
            Host::<T>::new(&a)?.get(),
            r * len,
            Host::new(&w)?.get(),
            bias(&b),
            Some(Host::<T>::new(&h)?.get()),
        );
        tensor(out, (r, len, d))
    }
    match h_rows.dtype() {
        DType::F32 => run::<f32>(block, h_rows, a),
        DType::F64 => run::<f64>(block, h_rows, a),
        d => candle_core::bail!("fused block: unsupported dtype {d:?}"),
    }
}

struct FusedBlock(Saved);

fn clone_storage(t: &Tensor) -> Result<(CpuStorage, Shape)> {
    let data = match t.dtype() {
        DType::F32 => f32::to_cpu_storage(Host::<f32>::new(t)?.get()),
        DType::F64 => f64::to_cpu_storage(Host::<f64>::new(t)?.get()),
        d => candle_core::bail!("fused block: unsupported dtype {d:?}"),
    };
    Ok((data, t.shape().clone()))
}

impl Saved {
    fn output_storage(&self) -> Result<(CpuStorage, Shape)> {
        match &self.out {
            Some(out) => clone_storage(out),
            None => candle_core::bail!("fused block: the output was not kept"),
        }
    }

    /// Drops the block's output (kept for the autograd node only): a saved state kept for later
    /// backward passes needs only what [`Saved::grads`] reads.
    pub(crate) fn forget_output(&mut self) {
        self.out = None;
    }

    /// The residual stream `h` (after attention, before the MLP) on the token rows `span` of
    /// every image, (R, len, D): with the MLP output of those rows, the block's output there.
    pub(crate) fn residual_rows(&self, (s, len): (usize, usize)) -> Result<Tensor> {
        let (r, keep, d) = self.h.dims3()?;
        if s + len > keep {
            candle_core::bail!("fused block: rows {s}..{} of {keep} kept", s + len)
        }
        self.h.narrow(1, s, len)?.contiguous()?.reshape((r, len, d))
    }

    /// (dL/dx, dL/d(leaf)) for output gradient `g`.
    pub(crate) fn grads(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        match g.dtype() {
            DType::F32 => self.grads_t::<f32>(g),
            DType::F64 => self.grads_t::<f64>(g),
            d => candle_core::bail!("fused block: unsupported dtype {d:?}"),
        }
    }

    fn grads_t<T: Real>(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let s = self;
        let b = &s.block;
        let (r, n, d) = s.x.dims3()?;
        let (m, keep) = (b.fc1.weight.dim(0)?, s.h.dim(1)?);
        let dm = Dims {
            r,
            n,
            d,
            m,
            heads: s.heads,
            keep,
        };
        let km = dm.kept();
        let (rows, krows) = (r * n, r * keep);
        let g = g.contiguous()?;
        let gh = Host::<T>::new(&g)?;
        let gs = gh.get();
        let w = |l: &Linear| l.weight.contiguous();
        let mut da = kernels::linear_backward(gs, krows, Host::new(&w(&b.fc2)?)?.get());
        let mut d_leaf = None;
        if let Some((sel, kind)) = &s.edit {
            let span = sel.span(n, s.prefix);
            match kind {
                EditKind::Clamp(shape) => {
                    d_leaf = Some(tensor(take_rows(&da, km.n, km.m, span), shape.clone())?);
                    let zero = vec![T::zero(); r * span.1 * m];
                    set_rows(&mut da, km, span, &zero, |_, b| b);
                }
                EditKind::Probe(shape) => {
                    d_leaf = Some(tensor(take_rows(&da, km.n, km.m, span), shape.clone())?)
                }
                EditKind::Scale(f) => scale_rows(&mut da, km, span, Host::<T>::new(f)?.get()),
            }
        }
        if !s.want_dx {
            return Ok((None, d_leaf));
        }
        if let Some(mask) = &b.cls_mask {
            let mask = mask.contiguous()?;
            let f: Vec<T> = Host::<T>::new(&mask)?.get().repeat(r);
            scale_rows(&mut da, km, (0, 1), &f);
        }
        let gg = Host::<T>::new(&s.gelu_grad)?;
        let gg = gg.get();
        for_rows(&mut da, m, |i, row| {
            let gr = &gg[i * m..(i + 1) * m];
            row.iter_mut().zip(gr).for_each(|(v, &k)| *v *= k);
        });
        let dln2 = kernels::linear_backward(&da, krows, Host::new(&w(&b.fc1)?)?.get());
        drop(da);
        let mut dh = b.ln_ffn.op()?.grad(Host::<T>::new(&s.h)?.get(), &dln2);
        add_into(&mut dh, gs);
        let d_o = kernels::linear_backward(&dh, krows, Host::new(&w(&b.proj)?)?.get());
        let p = host_opt::<T>(&s.p)?;
        let dqkv = attention_backward(Host::<T>::new(&s.qkv)?.get(), bias(&p), &d_o, dm);
        drop(p);
        drop(d_o);
        let dln1 = kernels::linear_backward(&dqkv, rows, Host::new(&w(&b.qkv)?)?.get());
        let mut dx = b.ln_att.op()?.grad(Host::<T>::new(&s.x)?.get(), &dln1);
        // The residual path: the kept rows' gradient goes straight to x.
        for_rows(&mut dx, n * d, |img, rows| {
            add_into(
                &mut rows[..keep * d],
                &dh[img * keep * d..(img + 1) * keep * d],
            );
        });
        Ok((Some(tensor(dx, (r, n, d))?), d_leaf))
    }
}

fn add_into<T: Real>(acc: &mut [T], x: &[T]) {
    let len = 1 << 12;
    for_rows(acc, len, |i, c| {
        c.iter_mut().zip(&x[i * len..]).for_each(|(a, &b)| *a += b)
    });
}

impl CustomOp1 for FusedBlock {
    fn name(&self) -> &'static str {
        "np-fused-block"
    }
    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.0.output_storage()
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.0.grads(grad)?.0)
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
        self.0.output_storage()
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _leaf: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.0.grads(grad)
    }
}
