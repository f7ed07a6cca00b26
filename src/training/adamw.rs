//! AdamW (decoupled weight decay, the same update as `candle_nn::AdamW` and PyTorch's), with
//! two things candle's lacks: weight decay only on the parameters marked for it, and moments that
//! can be saved and restored, so that `--resume` continues exactly.
use super::params::Params;
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};
use std::collections::HashMap;

/// AdamW (decoupled weight decay) over a model's [`Params`].
pub struct AdamW {
    /// Learning rate of the next step (set by the schedule every step).
    pub lr: f64,
    /// Decay of the first-moment estimate.
    pub beta1: f64,
    /// Decay of the second-moment estimate.
    pub beta2: f64,
    /// Added to the root of the second moment to avoid division by zero.
    pub eps: f64,
    /// Decoupled decay, applied only to parameters marked `decay`.
    pub weight_decay: f64,
    /// Steps taken (for the bias correction).
    pub t: usize,
    /// First and second moments, one per parameter in `Params::list` order.
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    /// An optimizer with zero moments for every parameter of `params`.
    pub fn new(params: &Params, lr: f64, weight_decay: f64) -> Result<Self> {
        let zeros = || {
            params
                .list
                .iter()
                .map(|p| p.var.zeros_like())
                .collect::<Result<Vec<_>>>()
        };
        Ok(AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            m: zeros()?,
            v: zeros()?,
        })
    }

    /// Updates every parameter from its gradient in `grads` (parameters without one are left as they are).
    pub fn step(&mut self, params: &Params, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let (b1, b2, lr) = (self.beta1, self.beta2, self.lr);
        let c1 = 1.0 / (1.0 - b1.powi(self.t as i32));
        let c2 = 1.0 / (1.0 - b2.powi(self.t as i32));
        for (i, p) in params.list.iter().enumerate() {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m * c1)? / ((&v * c2)?.sqrt()? + self.eps)?)?;
            let decay = if p.decay { lr * self.weight_decay } else { 0.0 };
            let theta = ((p.var.as_tensor() * (1.0 - decay))? - (update * lr)?)?;
            p.var.set(&theta)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments as `adam_m.<param>` / `adam_v.<param>` tensors, for a checkpoint.
    pub fn state(&self, params: &Params) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, p) in params.list.iter().enumerate() {
            out.insert(format!("adam_m.{}", p.name), self.m[i].clone());
            out.insert(format!("adam_v.{}", p.name), self.v[i].clone());
        }
        out
    }

    /// Restores the moments saved by [`AdamW::state`] and the step count.
    pub fn restore(
        &mut self,
        params: &Params,
        tensors: &HashMap<String, Tensor>,
        t: usize,
    ) -> std::result::Result<(), String> {
        for (i, p) in params.list.iter().enumerate() {
            for (kind, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let name = format!("adam_{kind}.{}", p.name);
                let got = tensors
                    .get(&name)
                    .ok_or_else(|| format!("missing tensor `{name}`"))?;
                if got.dims() != p.var.dims() {
                    return Err(format!("tensor `{name}` has shape {:?}", got.dims()));
                }
                *slot = got.to_device(p.var.device()).map_err(|e| e.to_string())?;
            }
        }
        self.t = t;
        Ok(())
    }
}
