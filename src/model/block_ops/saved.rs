//! A block's saved state with its backend erased: what the autograd node and the prefix engine
//! hold, whichever backend ran the block.
use super::backend::Backend;
use super::forward::State;
use candle_core::{Result, Tensor};
use std::sync::Mutex;

/// A block's saved state, on whichever backend ran it.
pub(crate) struct Saved(Box<dyn SavedOps>);

/// [`State`] with its backend erased.
trait SavedOps: Send + Sync {
    fn grads(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>;
    fn tangent(&self, dx: &Tensor) -> Result<Tensor>;
    fn residual_rows(&self, span: (usize, usize)) -> Result<Tensor>;
    fn output(&self) -> &Mutex<Option<Tensor>>;
}

impl<B: Backend> SavedOps for State<B> {
    fn grads(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        State::grads(self, g)
    }
    fn tangent(&self, dx: &Tensor) -> Result<Tensor> {
        State::tangent(self, dx)
    }
    fn residual_rows(&self, (s, len): (usize, usize)) -> Result<Tensor> {
        let dm = self.dims;
        if s + len > dm.keep {
            candle_core::bail!("fused block: rows {s}..{} of {} kept", s + len, dm.keep)
        }
        let rows = B::take_rows(&self.h, dm.kept(dm.d), (s, len))?;
        B::store(rows, (dm.r, len, dm.d).into(), &self.device)
    }
    fn output(&self) -> &Mutex<Option<Tensor>> {
        &self.out
    }
}

impl Saved {
    pub(super) fn new<B: Backend>(state: State<B>) -> Saved {
        Saved(Box::new(state))
    }

    /// Puts `out` in place of the saved output (what the autograd node hands back).
    pub(super) fn replace_output(&self, out: Tensor) {
        if let Ok(mut o) = self.0.output().lock() {
            *o = Some(out);
        }
    }

    /// (dL/dx, dL/d(leaf)) for the output gradient `g`.
    pub(crate) fn grads(&self, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.0.grads(g)
    }

    /// The tangent (R, N, D) of the block's output for the input tangent `dx` (R, N, D), with the
    /// edited hidden-unit rows held fixed (a clamp is a constant; see `add_fc2_columns` for
    /// the derivative along the clamp's own entries).
    pub(crate) fn tangent(&self, dx: &Tensor) -> Result<Tensor> {
        self.0.tangent(dx)
    }

    /// The residual stream `h` (after attention, before the MLP) on the token rows `span` of
    /// every image, (R, len, D): with the MLP output of those rows, the block's output there.
    pub(crate) fn residual_rows(&self, span: (usize, usize)) -> Result<Tensor> {
        self.0.residual_rows(span)
    }

    /// Drops the block's output (kept for the autograd node only): a saved state kept for later
    /// backward passes needs only what [`Saved::grads`] reads.
    pub(crate) fn forget_output(&mut self) {
        self.take_output();
    }

    pub(super) fn take_output(&self) -> Option<Tensor> {
        self.0.output().lock().ok().and_then(|mut o| o.take())
    }
}
