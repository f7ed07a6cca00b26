//! Batched clamped passes: dF/d(clamp) for every clamped block at once, split into chunks of rows
//! so that peak memory stays under a limit. F is the model's objective (by default the softmax
//! probability) of a target per row.
use crate::model::intervene::{Edit, LayerEdit, Rows};
use crate::model::mode::Mode;
use crate::model::vit::Vit;
use crate::model::Pool;
use candle_core::{DType, Result, Tensor, Var};

/// Default peak-memory budget of one attribution chunk (fits a laptop beside the OS).
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 30;

/// The default budget on `device`: [`DEFAULT_MEMORY_LIMIT`] on the CPU, half the GPU's free
/// memory on a GPU (a 2 GiB budget cuts a ViT-B/16 pass into 10-row chunks that leave it idle).
pub fn default_memory_limit(device: &candle_core::Device) -> usize {
    #[cfg(feature = "cuda")]
    if let candle_core::Device::Cuda(d) = device {
        if let Ok((free, _total)) = d.cuda_stream().context().mem_get_info() {
            return (free / 2).max(DEFAULT_MEMORY_LIMIT);
        }
    }
    let _ = device;
    DEFAULT_MEMORY_LIMIT
}

/// A batch of clamped rows: row `r` is image `image_of_row[r]` with clamp values `clamps[i].1[r]`
/// at block `clamps[i].0`, scored on class `targets[r]`.
pub struct ClampBatch<'a> {
    /// Input images (I, C, S, S).
    pub images: &'a Tensor,
    /// For each row, the index of its image in `images`.
    pub image_of_row: &'a [usize],
    /// Which token rows the clamps replace.
    pub rows: Rows,
    /// (block, values (R, M) for CLS or (R, N-1, M) for patches), blocks in increasing order.
    pub clamps: &'a [(usize, Tensor)],
    /// The score column F reads, per row.
    pub targets: &'a [usize],
    /// Add the values as zero-valued probes instead of clamping: the gradients are then the
    /// total derivatives dF/da of the rows (influence pattern), not those of a clamped leaf.
    pub probe: bool,
}

/// F per row and, per clamp, dF/d(clamp) flattened row-major (same shape as the clamp; indexed
/// by [`ClampLayout`](crate::model::ClampLayout) when the rows are images times steps).
#[derive(Clone, Debug, Default)]
pub struct ClampGrads {
    /// F of each row (the objective's score of its target).
    pub probs: Vec<f64>,
    /// Per clamp, in `ClampBatch::clamps` order, dF/d(clamp) flattened like the clamp.
    pub grads: Vec<Vec<f64>>,
}

/// Sizes of one row's tensors, in elements: (N D, N M, H N N, D, M, H N) and the dtype's bytes.
struct RowSizes {
    nd: usize,
    nm: usize,
    hnn: usize,
    d: usize,
    m: usize,
    hn: usize,
    bytes: usize,
    layers: usize,
    /// Whether the last block computes the CLS row only (a CLS-pooled head).
    cls_only: bool,
}

fn sizes(model: &Vit) -> RowSizes {
    let c = &model.cfg;
    let n = c.tokens();
    RowSizes {
        nd: n * c.hidden,
        nm: n * c.mlp_dim,
        hnn: c.heads * n * n,
        d: c.hidden,
        m: c.mlp_dim,
        hn: c.heads * n,
        bytes: model.dtype().size_in_bytes(),
        layers: c.layers,
        cls_only: c.pool == Pool::Cls,
    }
}

impl RowSizes {
    /// A block's saved state (`fused::Saved`) without its input: q/k/v, the residual `h`, the
    /// GELU derivative, the attention probabilities when kept; the CLS-only last block keeps
    /// q/k/v of every token and one row of the rest.
    fn block(&self, last: bool, probs: bool) -> usize {
        let p = if probs { self.hnn } else { 0 };
        match last && self.cls_only {
            true => 3 * self.nd + self.d + self.m + if probs { self.hn } else { 0 },
            false => 4 * self.nd + self.nm + p,
        }
    }

    /// The largest transient of a block's backward or tangent beside the saved states: the
    /// incoming gradient, d(q/k/v), the hidden-unit gradient and the LayerNorm gradients.
    fn transient(&self) -> usize {
        7 * self.nd + self.nm
    }
}

/// Bytes one row keeps alive at the peak of a clamped forward + backward with every block
/// clamped, the reference engine's pass (CPU fused blocks): every block's input, a copy of its
/// output held by its autograd node, its saved state with the attention probabilities, and the
/// transient buffers of one block's backward. ViT-B/16 f32: 96 MB (`tests/memory_estimate.rs`
/// compares both engines' estimates with measured peaks).
pub fn bytes_per_row(model: &Vit) -> usize {
    let z = sizes(model);
    let blocks: usize = (0..z.layers)
        .map(|l| {
            let last = l + 1 == z.layers;
            // Input, plus the node's output copy (one row in the CLS-only last block).
            let io = z.nd + if last && z.cls_only { z.d } else { z.nd };
            io + z.block(last, true)
        })
        .sum();
    z.bytes * (blocks + z.transient())
}

/// Bytes one row keeps alive at the peak of the prefix engine's step at block `layer`: the
/// saved states of blocks `layer..L` without attention probabilities (block `layer`'s input is
/// the prefix), the prefix and its tangent, and one block's transient buffers. ViT-B/16 f32:
/// 69 MB at step 0.
pub fn prefix_step_bytes_per_row(model: &Vit, layer: usize) -> usize {
    let z = sizes(model);
    let blocks: usize = (layer..z.layers)
        .map(|l| (l > layer) as usize * z.nd + z.block(l + 1 == z.layers, false))
        .sum();
    let tangent = if layer > 0 { z.nd } else { 0 };
    z.bytes * (blocks + z.nd + tangent + z.transient())
}

/// The most bytes one row keeps alive in any step of the prefix engine (step 0's, which holds
/// every block).
pub fn prefix_peak_bytes_per_row(model: &Vit) -> usize {
    (0..model.cfg.layers)
        .map(|l| prefix_step_bytes_per_row(model, l))
        .max()
        .unwrap_or(0)
}

/// How many rows fit in one chunk under `memory_limit` bytes (at least one).
pub fn chunk_rows(model: &Vit, memory_limit: usize) -> usize {
    (memory_limit / bytes_per_row(model).max(1)).max(1)
}

fn to_f64_vec(t: &Tensor) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()
}

/// Runs the batch in chunks of at most `chunk` rows; the result does not depend on `chunk`.
pub fn clamp_gradients(model: &Vit, batch: &ClampBatch, chunk: usize) -> Result<ClampGrads> {
    let total = batch.image_of_row.len();
    let mut out = ClampGrads {
        probs: Vec::with_capacity(total),
        grads: vec![Vec::new(); batch.clamps.len()],
    };
    let mut start = 0;
    while start < total {
        let len = chunk.max(1).min(total - start);
        let part = one_chunk(model, batch, start, len)?;
        out.probs.extend(part.probs);
        for (acc, g) in out.grads.iter_mut().zip(part.grads) {
            acc.extend(g);
        }
        start += len;
    }
    Ok(out)
}

fn one_chunk(model: &Vit, batch: &ClampBatch, start: usize, len: usize) -> Result<ClampGrads> {
    let dev = model.device();
    let idx: Vec<u32> = batch.image_of_row[start..start + len]
        .iter()
        .map(|&i| i as u32)
        .collect();
    let images = batch.images.index_select(&Tensor::new(idx, dev)?, 0)?;
    let mut vars = Vec::with_capacity(batch.clamps.len());
    let mut edits = vec![None; model.cfg.layers];
    for (layer, values) in batch.clamps {
        let var = Var::from_tensor(&values.narrow(0, start, len)?.to_dtype(model.dtype())?)?;
        let edit = if batch.probe {
            Edit::Probe(var.clone())
        } else {
            Edit::Clamp(var.as_tensor().clone())
        };
        edits[*layer] = Some(LayerEdit {
            rows: batch.rows,
            edit,
        });
        vars.push(var);
    }
    let logits = model.forward(&images, &edits, None, Mode::Frozen)?.logits;
    let probs = model.objective.scores(&logits)?;
    let onehot = one_hot(
        &batch.targets[start..start + len],
        model.score_width(),
        model,
    )?;
    let picked = (probs * onehot)?.sum(1)?;
    let store = picked.sum_all()?.backward()?;
    let mut grads = Vec::with_capacity(vars.len());
    for var in &vars {
        // A clamp no path reaches the output through has a zero gradient.
        grads.push(match store.get(var.as_tensor()) {
            Some(g) => to_f64_vec(g)?,
            None => vec![0.0; var.elem_count()],
        });
    }
    Ok(ClampGrads {
        probs: to_f64_vec(&picked)?,
        grads,
    })
}

/// (R, C) one-hot rows in the model's dtype.
pub fn one_hot(targets: &[usize], classes: usize, model: &Vit) -> Result<Tensor> {
    let mut data = vec![0f64; targets.len() * classes];
    for (r, &t) in targets.iter().enumerate() {
        data[r * classes + t] = 1.0;
    }
    Tensor::from_vec(data, (targets.len(), classes), model.device())?.to_dtype(model.dtype())
}
