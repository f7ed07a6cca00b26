//! The names the prefix engine (`fused_prefix.rs`) imports, now from `block_ops`; kept until
//! that engine calls `block_ops` itself.
use crate::model::block::Block;
use crate::model::intervene::LayerEdit;
use crate::model::real::Real;
use candle_core::{Result, Tensor};

pub(crate) use crate::model::block_ops::{add_fc2_columns, mlp_rows, Run, Save, Saved};

/// [`crate::model::block_ops::forward_saved`] (the element type `T` is read from `xd`).
pub(crate) fn forward_saved<T: Real>(
    block: &Block,
    xd: Tensor,
    edit: Option<&LayerEdit>,
    run: Run,
    save: Save,
) -> Result<(Tensor, Tensor, Option<Saved>)> {
    crate::model::block_ops::forward_saved(block, xd, edit, run, save)
}
