//! Where in the image a path looks: integrated gradients of each path neuron, and of F through
//! the path alone, with respect to the patch embeddings (beyond the paper, which has no such view).
//!
//! Convention. The input of the attribution is the patch embedding `E` (G*G, D): the patch
//! projection's output, bias included, before the prefix tokens and position embeddings are
//! added. Only `E` is scaled: step k feeds the tokens `[prefix + pos_0, alpha_k E_i + pos_i]`
//! (alpha_k = k/m, k = 0..m-1, the left Riemann sum of the JAS), so the baseline keeps the CLS
//! token and every position embedding and removes all patch content. Patch i's attribution is
//! `(1/m) sum_k sum_d E_id * d(target)/d(e_id)` at `alpha_k E`: summed over the embedding
//! dimension, signed. Completeness: the attributions sum to `target(E) - target(0)`; `delta` is
//! what the Riemann sum misses (it shrinks like 1/m).
//!
//! Targets:
//! - a path neuron (layer l, unit p_l): its CLS activation (or the row the run's neurons live on;
//!   MAE variant: summed over the patch tokens);
//! - the path as a whole: `G(E) = Phi(v(E))`, F with every other hidden unit of the neurons' rows
//!   held at its clean value (the clamped function of the JAS) and the path neurons set to
//!   `v(E)`, their values on the input. The image reaches F through the path neurons only, so
//!   the map shows which patches drive F *through the path*. `G(E) = F(clean)`; `G(0)` is F with
//!   the path neurons at their values on the zero-patch input.
use super::Activations;
use crate::model::gradients::{clamp_gradients, ClampBatch};
use crate::model::{Mode, Rows, Vit};
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};

/// One target's attribution per patch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PatchMap {
    /// Block (0-based); `None` for the whole path.
    pub layer: Option<usize>,
    /// MLP unit; `None` for the whole path.
    pub unit: Option<usize>,
    /// The target on the image: the neuron's clean activation, or F.
    pub value: f64,
    /// The target at the baseline (zero patch embeddings).
    pub baseline: f64,
    /// Signed attribution of every patch, row-major over the G x G grid.
    pub patches: Vec<f64>,
    /// `value - baseline - sum(patches)`: the Riemann sum's completeness error.
    pub delta: f64,
}

/// Patch maps of one image's path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Spatial {
    /// Patches per side.
    pub grid: usize,
    /// Riemann steps m of the integrated gradients.
    pub steps: usize,
    /// One map per layer's path neuron.
    pub neurons: Vec<PatchMap>,
    /// F through the path alone.
    pub path: PatchMap,
}

impl Spatial {
    /// All maps as one (L+1, G, G) array, the path's last, in f64.
    pub fn to_array(&self) -> Vec<f64> {
        self.neurons
            .iter()
            .chain(std::iter::once(&self.path))
            .flat_map(|m| m.patches.iter().copied())
            .collect()
    }
}

fn f64s(t: &Tensor) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()
}

/// Rows `alpha * e` for each alpha: (len, P, D) in e's dtype.
fn scaled(e: &Tensor, alphas: &[f64]) -> Result<Tensor> {
    let (_, p, d) = e.dims3()?;
    let a =
        Tensor::from_vec(alphas.to_vec(), (alphas.len(), 1, 1), e.device())?.to_dtype(e.dtype())?;
    e.broadcast_as((alphas.len(), p, d))?.broadcast_mul(&a)
}

/// Per step k (input `alpha_k E`), the objective `sum_l sum_t w[k][l][t] a_l[t, units[l]]` and
/// `s[k][i] = sum_d E_id d(objective)/d(e_id)`. Layers with all-zero weights are not read;
/// `model` may be truncated to the blocks that are.
fn weighted_pass(
    model: &Vit,
    e: &Tensor,
    alphas: &[f64],
    units: &[usize],
    weights: &[Vec<Vec<f64>>],
    rows: Rows,
    chunk: usize,
) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let (_, p, _) = e.dims3()?;
    let (mut obj, mut s) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < alphas.len() {
        let len = chunk.max(1).min(alphas.len() - start);
        let var = Var::from_tensor(&scaled(e, &alphas[start..start + len])?)?;
        let tokens = model.assemble_tokens(var.as_tensor(), Mode::Train)?;
        let out = model.forward_tokens(&tokens, &[], Some(rows), Mode::Train)?;
        let mut total: Option<Tensor> = None;
        for (l, h) in out.hidden.iter().enumerate() {
            let w: Vec<f64> = (start..start + len)
                .flat_map(|k| weights[k][l].iter().copied())
                .collect();
            if w.iter().all(|&x| x == 0.0) {
                continue;
            }
            // One row: h (len, M) -> (len, 1); patches: h (len, T, M) -> (len, T).
            let col = h.narrow(h.rank() - 1, units[l], 1)?.flatten_from(1)?;
            let wt = Tensor::from_vec(w, col.shape(), e.device())?.to_dtype(e.dtype())?;
            let term = (col * wt)?.sum(1)?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
        let Some(total) = total else {
            obj.extend(std::iter::repeat_n(0.0, len));
            s.extend(std::iter::repeat_n(vec![0.0; p], len));
            start += len;
            continue;
        };
        let grads = total.sum_all()?.backward()?;
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        };
        let per_patch = g.broadcast_mul(e)?.sum(2)?; // (len, P)
        obj.extend(f64s(&total)?);
        for row in f64s(&per_patch)?.chunks(p) {
            s.push(row.to_vec());
        }
        start += len;
    }
    Ok((obj, s))
}

fn riemann(s: &[Vec<f64>], p: usize) -> Vec<f64> {
    let m = s.len() as f64;
    (0..p)
        .map(|i| s.iter().map(|r| r[i]).sum::<f64>() / m)
        .collect()
}

/// One image's path to attribute.
pub struct PathInput<'a> {
    /// (1, C, S, S), preprocessed.
    pub image: &'a Tensor,
    /// The class F is the probability of.
    pub target: usize,
    /// `path[l]` = the unit of layer l.
    pub path: &'a [usize],
    /// The image's clean pass (see [`super::clean_pass`]).
    pub acts: &'a Activations,
    /// F on the clean pass.
    pub clean_prob: f64,
    /// The rows the neurons live on (as in the run: CLS, distillation token, or all patches).
    pub rows: Rows,
}

/// Patch maps of one image's path, with `steps` Riemann steps and at most `chunk` rows per pass.
pub fn spatial_attribution(
    model: &Vit,
    input: &PathInput,
    steps: usize,
    chunk: usize,
) -> Result<Spatial> {
    let PathInput {
        image,
        target,
        path,
        acts,
        clean_prob,
        rows,
    } = *input;
    let (layers, m) = (model.cfg.layers, steps.max(1));
    if path.len() != layers || acts.layers.len() != 1 {
        candle_core::bail!("spatial attribution: one image and one unit per layer expected");
    }
    let (tokens, mlp) = (acts.tokens, acts.mlp);
    let e = model.patch_embeddings(image, Mode::Frozen)?;
    let p = e.dim(1)?;
    let alphas: Vec<f64> = (0..m).map(|k| k as f64 / m as f64).collect();
    let mut neurons = Vec::with_capacity(layers);
    for (l, &unit) in path.iter().enumerate() {
        let mut upto = model.clone();
        upto.blocks.truncate(l + 1);
        let weights: Vec<Vec<Vec<f64>>> = (0..m)
            .map(|_| {
                (0..=l)
                    .map(|j| vec![if j == l { 1.0 } else { 0.0 }; tokens])
                    .collect()
            })
            .collect();
        let (obj, s) = weighted_pass(&upto, &e, &alphas, path, &weights, rows, chunk)?;
        let patches = riemann(&s, p);
        let value = acts.unit_sum(0, l, unit);
        neurons.push(PatchMap {
            layer: Some(l),
            unit: Some(unit),
            value,
            baseline: obj[0],
            delta: value - obj[0] - patches.iter().sum::<f64>(),
            patches,
        });
    }
    // The path's values v(alpha_k E) on every selected token.
    let mut v = Vec::with_capacity(m); // [k][l][t]
    let mut start = 0;
    while start < m {
        let len = chunk.max(1).min(m - start);
        let tok = model.assemble_tokens(&scaled(&e, &alphas[start..start + len])?, Mode::Frozen)?;
        let out = model.forward_tokens(&tok, &[], Some(rows), Mode::Frozen)?;
        let hidden: Vec<Vec<f64>> = out.hidden.iter().map(f64s).collect::<Result<_>>()?;
        for r in 0..len {
            v.push(
                (0..layers)
                    .map(|l| {
                        (0..tokens)
                            .map(|t| hidden[l][(r * tokens + t) * mlp + path[l]])
                            .collect::<Vec<f64>>()
                    })
                    .collect::<Vec<_>>(),
            );
        }
        start += len;
    }
    // Phi's gradient at v: every selected row clamped to its clean values, the path units to v.
    let tm = tokens * mlp;
    let clamps = (0..layers)
        .map(|l| {
            let mut vals = Vec::with_capacity(m * tm);
            for vk in &v {
                let mut row = acts.layers[0][l].clone();
                for t in 0..tokens {
                    row[t * mlp + path[l]] = vk[l][t];
                }
                vals.extend(row);
            }
            let shape = if rows.single() {
                vec![m, mlp]
            } else {
                vec![m, tokens, mlp]
            };
            let t = Tensor::from_vec(vals, shape, model.device())?.to_dtype(model.dtype())?;
            Ok((l, t))
        })
        .collect::<Result<Vec<_>>>()?;
    let batch = ClampBatch {
        images: image,
        image_of_row: &vec![0; m],
        rows,
        clamps: &clamps,
        targets: &vec![target; m],
        probe: false,
    };
    let phi = clamp_gradients(model, &batch, chunk)?;
    let weights: Vec<Vec<Vec<f64>>> = (0..m)
        .map(|k| {
            (0..layers)
                .map(|l| {
                    (0..tokens)
                        .map(|t| phi.grads[l][k * tm + t * mlp + path[l]])
                        .collect()
                })
                .collect()
        })
        .collect();
    let (_, s) = weighted_pass(model, &e, &alphas, path, &weights, rows, chunk)?;
    let patches = riemann(&s, p);
    let path_map = PatchMap {
        layer: None,
        unit: None,
        value: clean_prob,
        baseline: phi.probs[0],
        delta: clean_prob - phi.probs[0] - patches.iter().sum::<f64>(),
        patches,
    };
    Ok(Spatial {
        grid: model.cfg.grid(),
        steps: m,
        neurons,
        path: path_map,
    })
}
