//! Canonical tensors -> a checked [`Vit`]: configuration detected from shapes, every tensor's
//! name, shape and values verified, position embedding resized when asked.
use super::{posemb, LoadOptions, ModelError, Raw};
use crate::model::block::Block;
use crate::model::config::{Pool, VitConfig};
use crate::model::ops::{LayerNorm, Linear};
use crate::model::vit::Vit;
use candle_core::{DType, Tensor};
use std::path::{Path, PathBuf};

struct Checker<'a> {
    path: &'a Path,
    raw: &'a Raw,
    opts: &'a LoadOptions,
    /// The largest |value| of the tensors taken so far, and its tensor (named when the weights
    /// overflow).
    largest: std::cell::RefCell<(f64, String)>,
}

impl Checker<'_> {
    /// The file and the tensor name to report for canonical `name` (the file's own name for it
    /// when the layout renames tensors).
    fn origin(&self, name: &str) -> (PathBuf, String) {
        match &self.raw.origin {
            Some((file, names)) => (
                file.clone(),
                names.get(name).cloned().unwrap_or_else(|| name.to_string()),
            ),
            None => (self.path.to_path_buf(), name.to_string()),
        }
    }

    fn get(&self, name: &str) -> Result<&Tensor, ModelError> {
        self.raw.tensors.get(name).ok_or_else(|| {
            let (path, name) = self.origin(name);
            ModelError::Missing { path, name }
        })
    }

    fn shape_error(&self, name: &str, got: &[usize], expected: &[usize]) -> ModelError {
        let (path, name) = self.origin(name);
        ModelError::Shape {
            path,
            name,
            got: got.to_vec(),
            expected: expected.to_vec(),
        }
    }

    /// The tensor, checked for shape and finiteness, in the requested dtype and device.
    fn take(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        let t = self.get(name)?;
        if t.dims() != shape {
            return Err(self.shape_error(name, t.dims(), shape));
        }
        if !t.dtype().is_float() {
            let (path, name) = self.origin(name);
            return Err(ModelError::format(
                &path,
                format!(
                    "tensor `{name}` has integer dtype {:?}; weights must be floating point",
                    t.dtype()
                ),
            ));
        }
        self.finite(name, t)?;
        t.to_dtype(self.opts.dtype)
            .and_then(|t| t.to_device(&self.opts.device))
            .map_err(ModelError::tensor(self.path))
    }

    fn finite(&self, name: &str, t: &Tensor) -> Result<(), ModelError> {
        let abs = t
            .to_dtype(DType::F64)
            .and_then(|t| t.abs())
            .and_then(|t| t.flatten_all())
            .map_err(ModelError::tensor(self.path))?;
        let (sum, max) = abs
            .sum_all()
            .and_then(|s| s.to_scalar::<f64>())
            .and_then(|s| Ok((s, abs.max(0)?.to_scalar::<f64>()?)))
            .map_err(ModelError::tensor(self.path))?;
        if sum.is_finite() {
            let mut largest = self.largest.borrow_mut();
            if max > largest.0 {
                *largest = (max, self.origin(name).1);
            }
            Ok(())
        } else {
            let (path, name) = self.origin(name);
            Err(ModelError::NonFinite { path, name })
        }
    }

    fn dims(&self, name: &str, rank: usize) -> Result<Vec<usize>, ModelError> {
        let d = self.get(name)?.dims().to_vec();
        if d.len() != rank {
            let (path, name) = self.origin(name);
            return Err(ModelError::format(
                &path,
                format!(
                    "tensor `{name}` has rank {} ({d:?}), expected rank {rank}",
                    d.len()
                ),
            ));
        }
        Ok(d)
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear, ModelError> {
        Ok(Linear::new(
            self.take(&format!("{prefix}.weight"), &[out, inp])?,
            Some(self.take(&format!("{prefix}.bias"), &[out])?),
        ))
    }

    /// `prefix` with its output scaled by the LayerScale vector `gamma` (see `build`).
    fn scaled_linear(
        &self,
        prefix: &str,
        out: usize,
        inp: usize,
        gamma: &str,
    ) -> Result<Linear, ModelError> {
        let f64 = |name: &str, shape: &[usize]| -> Result<Tensor, ModelError> {
            let t = self.get(name)?;
            if t.dims() != shape {
                return Err(self.shape_error(name, t.dims(), shape));
            }
            self.finite(name, t)?;
            t.to_dtype(DType::F64)
                .map_err(ModelError::tensor(self.path))
        };
        let g = f64(gamma, &[out])?;
        let w = f64(&format!("{prefix}.weight"), &[out, inp])?;
        let b = f64(&format!("{prefix}.bias"), &[out])?;
        let t = ModelError::tensor(self.path);
        let cast = |x: Tensor| {
            x.to_dtype(self.opts.dtype)
                .and_then(|x| x.to_device(&self.opts.device))
                .map_err(ModelError::tensor(self.path))
        };
        let w = w.broadcast_mul(&g.unsqueeze(1).map_err(&t)?).map_err(&t)?;
        let b = (b * g).map_err(&t)?;
        Ok(Linear::new(cast(w)?, Some(cast(b)?)))
    }

    fn norm(&self, prefix: &str, d: usize, eps: f64) -> Result<LayerNorm, ModelError> {
        Ok(LayerNorm {
            weight: self.take(&format!("{prefix}.weight"), &[d])?,
            bias: self.take(&format!("{prefix}.bias"), &[d])?,
            eps,
        })
    }
}

pub(crate) fn build(path: &Path, raw: Raw, opts: &LoadOptions) -> Result<Vit, ModelError> {
    let ck = Checker {
        path,
        raw: &raw,
        opts,
        largest: Default::default(),
    };
    let pe = ck.dims("patch_embed.proj.weight", 4)?;
    let (hidden, channels, patch) = (pe[0], pe[1], pe[2]);
    if hidden == 0 || channels == 0 || patch == 0 {
        return Err(ModelError::format(
            path,
            format!("patch_embed.proj.weight has shape {pe:?}: a zero-sized patch kernel"),
        ));
    }
    if pe[3] != patch {
        return Err(ModelError::format(
            path,
            format!("non-square patch kernel {pe:?}"),
        ));
    }
    let prefix_tokens = ck.dims("cls_token", 3)?[1];
    let pos_dims = ck.dims("pos_embed", 3)?;
    let grid_rows = pos_dims[1].saturating_sub(prefix_tokens);
    let old_grid = (grid_rows as f64).sqrt().round() as usize;
    if old_grid == 0 || old_grid * old_grid != grid_rows {
        return Err(ModelError::format(
            path,
            format!(
                "pos_embed has {} rows, not a square grid plus {prefix_tokens} prefix token(s)",
                pos_dims[1]
            ),
        ));
    }
    let image_size = opts.image_size.unwrap_or(old_grid * patch);
    if !image_size.is_multiple_of(patch) || image_size == 0 {
        return Err(ModelError::format(
            path,
            format!("image size {image_size} is not a positive multiple of the patch size {patch}"),
        ));
    }
    if image_size / patch > MAX_GRID {
        return Err(ModelError::format(
            path,
            format!(
                "image size {image_size} gives a {0}x{0} patch grid; at most {MAX_GRID}x{MAX_GRID} (image size {1})",
                image_size / patch,
                MAX_GRID * patch
            ),
        ));
    }
    // Every block index any tensor names: a block missing some tensors (even its first) is
    // reported by name below, not read as a shorter model.
    let layers = raw
        .tensors
        .keys()
        .filter_map(|k| {
            k.strip_prefix("blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |last| last + 1);
    if layers == 0 {
        return Err(ModelError::Missing {
            path: path.to_path_buf(),
            name: "blocks.0.norm1.weight".into(),
        });
    }
    if let Some(name) = raw.tensors.keys().find(|k| unknown_block_tensor(k)) {
        return Err(ModelError::format(
            path,
            format!(
                "tensor `{name}` belongs to a block option neuronpath does not implement (e.g. qk-norm, relative position bias, a gated MLP); loading without it would compute another model"
            ),
        ));
    }
    let mlp_dim = ck.dims("blocks.0.mlp.fc1.weight", 2)?[0];
    // No head: a backbone whose output is its final embedding (an identity head).
    let headless = !raw.tensors.contains_key("head.weight");
    let num_classes = if headless {
        hidden
    } else {
        ck.dims("head.weight", 2)?[0]
    };
    if mlp_dim == 0 || num_classes == 0 {
        return Err(ModelError::format(
            path,
            format!("zero-sized model: MLP width {mlp_dim}, {num_classes} classes"),
        ));
    }
    let ln_eps = opts.ln_eps.unwrap_or(raw.ln_eps);
    if !(ln_eps.is_finite() && ln_eps > 0.0) {
        let source = match opts.ln_eps {
            Some(_) => "the LayerNorm epsilon option (--ln-eps)",
            None => "the checkpoint's layer_norm_eps",
        };
        return Err(ModelError::format(
            path,
            format!("{source} is {ln_eps}; it must be a positive finite number"),
        ));
    }
    let heads = opts.heads.or(raw.heads).unwrap_or(hidden / 64);
    if heads == 0 || hidden % heads != 0 {
        return Err(ModelError::format(
            path,
            format!("cannot split hidden size {hidden} into {heads} heads; pass the head count"),
        ));
    }
    let pool = raw
        .pool
        .unwrap_or(if raw.tensors.contains_key("fc_norm.weight") {
            Pool::MeanPatch
        } else if raw.tensors.contains_key("head_dist.weight") {
            Pool::ClsDist
        } else if !headless && raw.tensors["head.weight"].dims().get(1) == Some(&(2 * hidden)) {
            // DINOv2's [CLS, mean of patches] head, as `prune --save-model` writes it.
            Pool::ClsMeanPatch
        } else {
            Pool::Cls
        });
    let needed_prefix = match pool {
        Pool::ClsDist => 2,
        _ => 1,
    };
    if prefix_tokens < needed_prefix + raw.registers {
        return Err(ModelError::format(
            path,
            format!(
                "cls_token holds {prefix_tokens} prefix token(s), the model needs {}",
                needed_prefix + raw.registers
            ),
        ));
    }
    let layer_scale = raw.tensors.contains_key("blocks.0.ls1.gamma");
    let cfg = VitConfig {
        image_size,
        patch_size: patch,
        channels,
        hidden,
        mlp_dim,
        heads,
        layers,
        num_classes,
        prefix_tokens,
        ln_eps,
        gelu: opts.gelu.unwrap_or(raw.gelu),
        pool,
        double_fc_norm: opts.double_fc_norm,
        registers: raw.registers,
        // A head without bias is a projection (CLIP's), its output an embedding.
        embedding: headless || raw.embedding || !raw.tensors.contains_key("head.bias"),
        pre_norm: raw.tensors.contains_key("norm_pre.weight"),
        layer_scale,
    };
    let eps = cfg.ln_eps;
    let pos = ck.take("pos_embed", &[1, grid_rows + prefix_tokens, hidden])?;
    let pos = if cfg.grid() != old_grid {
        let pos = pos.squeeze(0).map_err(ModelError::tensor(path))?;
        posemb::resize_pos_embed(raw.pos_resize, &pos, prefix_tokens, cfg.grid())
            .map_err(ModelError::tensor(path))?
    } else {
        pos.squeeze(0).map_err(ModelError::tensor(path))?
    };
    let patch_w = ck.take("patch_embed.proj.weight", &[hidden, channels, patch, patch])?;
    let blocks = (0..layers)
        .map(|i| {
            let p = format!("blocks.{i}");
            // LayerScale multiplies a branch's output, so it folds exactly into the branch's last
            // linear map: diag(g) (W x + b) = (diag(g) W) x + g b. The MLP hidden units (the
            // neurons) and every gradient with respect to them are unchanged.
            let scaled = |name: &str, gamma: &str, inp: usize| -> Result<Linear, ModelError> {
                if !layer_scale {
                    return ck.linear(name, hidden, inp);
                }
                ck.scaled_linear(name, hidden, inp, gamma)
            };
            Ok(Block {
                ln_att: ck.norm(&format!("{p}.norm1"), hidden, eps)?,
                qkv: ck.linear(&format!("{p}.attn.qkv"), 3 * hidden, hidden)?,
                proj: scaled(&format!("{p}.attn.proj"), &format!("{p}.ls1.gamma"), hidden)?,
                ln_ffn: ck.norm(&format!("{p}.norm2"), hidden, eps)?,
                fc1: ck.linear(&format!("{p}.mlp.fc1"), mlp_dim, hidden)?,
                fc2: scaled(&format!("{p}.mlp.fc2"), &format!("{p}.ls2.gamma"), mlp_dim)?,
                cls_mask: match raw.tensors.contains_key(&format!("{p}.mlp.cls_mask")) {
                    true => Some(ck.take(&format!("{p}.mlp.cls_mask"), &[mlp_dim])?),
                    false => None,
                },
            })
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    let norm_name = match pool {
        Pool::MeanPatch => "fc_norm",
        _ => "norm",
    };
    let t = ModelError::tensor(path);
    let head_in = match pool {
        Pool::ClsMeanPatch => 2 * hidden,
        _ => hidden,
    };
    let head = if headless {
        let eye = Tensor::eye(hidden, opts.dtype, &opts.device).map_err(&t)?;
        Linear::new(eye, None)
    } else if raw.tensors.contains_key("head.bias") {
        ck.linear("head", num_classes, head_in)?
    } else {
        Linear::new(ck.take("head.weight", &[num_classes, head_in])?, None)
    };
    let head_dist = match pool {
        Pool::ClsDist => Some(ck.linear("head_dist", num_classes, hidden)?),
        _ => None,
    };
    let pre_norm = match cfg.pre_norm {
        true => Some(ck.norm("norm_pre", hidden, eps)?),
        false => None,
    };
    let vit = Vit {
        patch: Linear::new(
            patch_w
                .reshape((hidden, channels * patch * patch))
                .map_err(&t)?,
            Some(ck.take("patch_embed.proj.bias", &[hidden])?),
        ),
        prefix: ck
            .take("cls_token", &[1, prefix_tokens, hidden])?
            .squeeze(0)
            .map_err(&t)?,
        pos,
        blocks,
        norm: ck.norm(norm_name, hidden, eps)?,
        head,
        head_dist,
        pre_norm,
        objective: Default::default(),
        cfg,
    };
    let (largest, name) = ck.largest.take();
    check_output(path, &vit, largest, &name)?;
    Ok(vit)
}

/// Whether `name` is a tensor of an encoder block (`blocks.{i}.*`) that is not one the block
/// reads: a checkpoint with such a tensor has an architecture option the model lacks, and
/// ignoring the tensor would silently compute a different function.
fn unknown_block_tensor(name: &str) -> bool {
    const KNOWN: [&str; 15] = [
        "norm1.weight",
        "norm1.bias",
        "attn.qkv.weight",
        "attn.qkv.bias",
        "attn.proj.weight",
        "attn.proj.bias",
        "norm2.weight",
        "norm2.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
        "ls1.gamma",
        "ls2.gamma",
        "mlp.cls_mask",
    ];
    let Some(rest) = name.strip_prefix("blocks.") else {
        return false;
    };
    match rest.split_once('.') {
        Some((i, field)) => i.parse::<usize>().is_ok() && !KNOWN.contains(&field),
        None => false,
    }
}

/// Most patches per side (`--image-size` / patch): 256 is 65,536 tokens, far beyond any
/// checkpoint's training resolution, and keeps the resized position table's allocation bounded.
pub const MAX_GRID: usize = 256;

/// Finite weights can still overflow (a value of 3e38 in f32): the model's output on a probe
/// image (a fixed pattern over the range of normalised pixels, -2.5..2.5) must be finite, else
/// the file is refused naming its largest weight. (An overflow on some other input is caught
/// per image by `discover`.)
fn check_output(path: &Path, vit: &Vit, largest: f64, name: &str) -> Result<(), ModelError> {
    let c = &vit.cfg;
    let t = ModelError::tensor(path);
    let n = c.channels * c.image_size * c.image_size;
    // A fixed low-discrepancy sequence: every value of the range, no randomness.
    let golden = 0.618_033_988_749_895_f64;
    let pattern: Vec<f64> = (0..n)
        .map(|i| 5.0 * ((i as f64 * golden).fract() - 0.5))
        .collect();
    let x = Tensor::from_vec(
        pattern,
        (1, c.channels, c.image_size, c.image_size),
        vit.device(),
    )
    .and_then(|x| x.to_dtype(vit.dtype()))
    .map_err(&t)?;
    let edits = vec![None; c.layers];
    let out = vit
        .forward(&x, &edits, None, crate::model::Mode::Frozen)
        .and_then(|o| {
            o.logits
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()
        })
        .map_err(&t)?;
    if out.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    Err(ModelError::format(
        path,
        format!(
            "the model's output on a probe image is NaN or infinite in {:?}: the weights overflow (largest |value| {largest:.3e}, in tensor `{name}`)",
            vit.dtype()
        ),
    ))
}
