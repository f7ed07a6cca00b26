//! One block's forward (Mode::Frozen), written once for any [`Backend`]: x' and the post-edit
//! hidden units `a`, and what the backward (`backward.rs`) and the tangent (`tangent.rs`) need.
use super::backend::{Backend, Dims};
use crate::model::block::Block;
use crate::model::config::Gelu;
use crate::model::intervene::{Edit, LayerEdit, Rows};
use candle_core::{Device, Result, Shape, Tensor};
use std::sync::Mutex;

/// How a block runs (model-wide settings, and whether only the CLS row's output is needed).
#[derive(Clone, Copy)]
pub(crate) struct Run {
    pub heads: usize,
    pub gelu: Gelu,
    pub prefix: usize,
    /// Only the CLS row's output (x' and `a` then have one token per image; an edit must then
    /// touch the CLS row only).
    pub cls_only: bool,
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

/// What the backward and the tangent of one block need.
pub(crate) struct State<B: Backend> {
    pub x: B::Buf,
    pub attn: B::Attn,
    /// The residual stream after attention (R, keep, D).
    pub h: B::Buf,
    /// GELU derivative at fc1's output (R, keep, M).
    pub gelu_grad: B::Buf,
    /// The block's output, for the autograd node (None once taken or forgotten).
    pub out: Mutex<Option<Tensor>>,
    pub dims: Dims,
    pub prefix: usize,
    pub block: Block,
    pub edit: Option<(Rows, EditKind<B>)>,
    /// Whether dL/dx is wanted (false for the first block that depends on a leaf).
    pub want_dx: bool,
    /// Where the block runs (and its gradients are stored).
    pub device: Device,
}

pub(crate) enum EditKind<B: Backend> {
    /// The leaf's shape, which its gradient takes.
    Clamp(Shape),
    Probe(Shape),
    /// Unit factors (R, M).
    Scale(B::Buf),
}

/// One block's forward from `xd` (detached, contiguous (R, N, D)): x' (R, keep, D), the
/// post-edit hidden units `a` (R, keep, M), and as `save` asks, the saved state.
pub(crate) fn forward<B: Backend>(
    block: &Block,
    xd: Tensor,
    edit: Option<&LayerEdit>,
    run: Run,
    save: Save,
) -> Result<(Tensor, Tensor, Option<State<B>>)> {
    let (r, n, d) = xd.dims3()?;
    let m = block.fc1.weight.dim(0)?;
    let keep = if run.cls_only { n.min(1) } else { n };
    let dm = Dims {
        r,
        n,
        d,
        m,
        heads: run.heads,
        keep,
    };
    let (all_d, kept_d, kept_m) = (dm.all(d), dm.kept(d), dm.kept(m));
    if r * keep == 0 {
        // Nothing to compute (an empty chunk); the GEMM helpers size matrices by their rows.
        let none = Tensor::zeros((r, keep, m), xd.dtype(), xd.device())?;
        return Ok((xd.narrow(1, 0, keep)?, none, None));
    }

    let x = B::load(&xd)?;
    let ln1 = B::layer_norm(&block.ln_att, &x, all_d)?;
    let qkv = B::linear(&ln1, all_d, &block.qkv, true, None)?;
    drop(ln1);
    let (attn, o) = B::attention(qkv, dm, save.keep_probs)?;
    let first;
    let residual = if keep == n {
        &x
    } else {
        first = B::take_rows(&x, all_d, (0, keep))?;
        &first
    };
    let h = B::linear(&o, kept_d, &block.proj, true, Some(residual))?;
    drop(o);
    let ln2 = B::layer_norm(&block.ln_ffn, &h, kept_d)?;
    let z = B::linear(&ln2, kept_d, &block.fc1, true, None)?;
    drop(ln2);
    let (mut a, gelu_grad) = B::gelu(run.gelu, z, kept_m, save.save)?;
    if let Some(mask) = &block.cls_mask {
        a = B::scale_rows(a, kept_m, (0, 1), &B::load(mask)?)?;
    }
    let mut kind = None;
    if let Some(e) = edit {
        let span = e.rows.span(n, run.prefix);
        match &e.edit {
            Edit::Clamp(t) => {
                a = B::set_rows(a, kept_m, span, &B::load(&t.detach())?)?;
                kind = Some((e.rows, EditKind::Clamp(t.shape().clone())));
            }
            Edit::Probe(var) => {
                let v = B::load(&var.as_tensor().detach())?;
                a = B::add_rows(a, kept_m, span, &v)?;
                kind = Some((e.rows, EditKind::Probe(var.shape().clone())));
            }
            Edit::Scale(f) => {
                let f = B::load(&f.detach())?;
                a = B::scale_rows(a, kept_m, span, &f)?;
                kind = Some((e.rows, EditKind::Scale(f)));
            }
        }
    }
    let out = B::linear(&a, kept_m, &block.fc2, true, Some(&h))?;
    let out = B::store(out, (r, keep, d).into(), xd.device())?;
    let a = B::store(a, (r, keep, m).into(), xd.device())?;
    let (Some(gelu_grad), true) = (gelu_grad, save.save) else {
        return Ok((out, a, None));
    };
    let state = State {
        x,
        attn,
        h,
        gelu_grad,
        out: Mutex::new(Some(out.clone())),
        dims: dm,
        prefix: run.prefix,
        block: block.clone(),
        edit: kind,
        want_dx: save.want_dx,
        device: xd.device().clone(),
    };
    Ok((out, a, Some(state)))
}

/// A block's output on token rows whose MLP hidden units are `a` ((R, len, M), or (R, M) for
/// one row): `h_rows` (R, len, D) + fc2(a), as the forward computes it.
pub(crate) fn mlp_rows<B: Backend>(block: &Block, h_rows: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (r, len, d) = h_rows.dims3()?;
    let m = block.fc1.weight.dim(0)?;
    let g = super::backend::Grid { r, n: len, w: m };
    let out = B::linear(&B::load(a)?, g, &block.fc2, true, Some(&B::load(h_rows)?))?;
    B::store(out, (r, len, d).into(), h_rows.device())
}
