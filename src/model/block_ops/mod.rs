//! One encoder block (Mode::Frozen) as a single autograd node with a hand-written backward, and
//! its tangent (forward mode, for the prefix search), written once over a [`backend::Backend`]:
//! the slice backend (`slices.rs`: CPU tensors, `gemm` + rayon) or the tensor backend
//! (`tensors.rs`: candle ops, cuBLAS and the fused kernels of `cuda_kernels` on CUDA). Which one
//! runs is decided here from `dispatch::block_kernels` and the element type.
//!
//! Why: built from candle ops, a block records ~25 nodes whose backward allocates a zero tensor
//! per operand and accumulates into it; here the backward is the ~10 GEMMs of the math and a few
//! element-wise passes, and returns only dL/dx and dL/d(edit leaf), never weight gradients. It is
//! checked against the op-by-op graph (Mode::Train), finite differences and the golden values;
//! the two backends against each other (tests/fused_device.rs).
//!
//! Files: `backend.rs` (the trait), `forward.rs`, `backward.rs`, `tangent.rs` (the passes),
//! `saved.rs` (the saved state, backend erased), `node.rs` (the custom op), `slices.rs` +
//! `slice_attention.rs` and `tensors.rs` + `tensor_steps.rs` (the backends).
mod backend;
mod backward;
mod forward;
mod node;
mod saved;
mod slice_attention;
mod slices;
mod tangent;
pub(crate) mod tensor_steps;
mod tensors;

use crate::model::block::Block;
use crate::model::dispatch::{block_kernels, Kernels};
use crate::model::intervene::{Edit, LayerEdit, Rows};
use candle_core::{DType, Result, Tensor};
use node::Node;
use slices::Slices;
use tensors::Tensors;

pub(crate) use forward::{Run, Save};
pub(crate) use saved::Saved;

/// Runs `$body` with `$B` the backend for blocks on the tensor `$x`: the slice backend for CPU
/// f32/f64 tensors (unless `dispatch::with_device_block`), the tensor backend otherwise.
macro_rules! on_backend {
    ($x:expr, $B:ident => $body:expr) => {
        match (block_kernels($x), $x.dtype()) {
            (Kernels::CpuSlices, DType::F32) => {
                type $B = Slices<f32>;
                $body
            }
            (Kernels::CpuSlices, DType::F64) => {
                type $B = Slices<f64>;
                $body
            }
            _ => {
                type $B = Tensors;
                $body
            }
        }
    };
}

/// One block's forward from `xd` (detached, contiguous (R, N, D)): x' and the post-edit hidden
/// units `a` (every token, or with `cls_only` the CLS row alone), and as `save` asks, what the
/// backward ([`Saved::grads`]) and the tangent ([`Saved::tangent`]) need.
pub(crate) fn forward_saved(
    block: &Block,
    xd: Tensor,
    edit: Option<&LayerEdit>,
    run: Run,
    save: Save,
) -> Result<(Tensor, Tensor, Option<Saved>)> {
    if run.cls_only && edit.is_some_and(|e| e.rows != Rows::Cls) {
        candle_core::bail!("fused block: a CLS-only block cannot edit patch rows")
    }
    on_backend!(&xd, B => {
        let (out, a, state) = forward::forward::<B>(block, xd, edit, run, save)?;
        let state = state.map(Saved::new);
        Ok((out, a, state))
    })
}

/// Runs one block (Mode::Frozen) on `x`: x' and the post-edit hidden units `a`; when `x` or an
/// edit leaf is tracked, x' is the output of one autograd node with the hand-written backward.
pub(crate) fn block(
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
    let save = Save {
        save: x.track_op() || leaf.is_some(),
        want_dx: x.track_op(),
        keep_probs: true,
    };
    let (out, a, saved) = forward_saved(block, x.detach().contiguous()?, edit, run, save)?;
    let Some(saved) = saved else {
        return Ok((out, a));
    };
    // The node's forward clones the output's whole storage: it must be exactly the tensor.
    if !out.is_contiguous() || out.layout().start_offset() != 0 {
        saved.replace_output(out.copy()?);
    }
    let node = Node(saved);
    let y = match leaf {
        Some(t) => x.apply_op2(&t, node)?,
        None => x.apply_op1(node)?,
    };
    Ok((y, a))
}

/// A block's output on token rows whose MLP hidden units are `a` ((R, len, M), or (R, M) for
/// one row): `h_rows` (R, len, D, from [`Saved::residual_rows`]) + fc2(a), as the forward
/// computes it.
pub(crate) fn mlp_rows(block: &Block, h_rows: &Tensor, a: &Tensor) -> Result<Tensor> {
    on_backend!(h_rows, B => forward::mlp_rows::<B>(block, h_rows, a))
}

/// `t` (R, N, D) plus, on token row `tok` of every image `r`, the columns `seeds[r]` of
/// `block`'s fc2: the derivative of the block's output along those entries of a clamp of that row.
pub(crate) fn add_fc2_columns(
    block: &Block,
    t: &Tensor,
    tok: usize,
    seeds: &[&[usize]],
) -> Result<Tensor> {
    on_backend!(t, B => tangent::add_fc2_columns::<B>(block, t, tok, seeds))
}
#[cfg(test)]
mod tests;
