//! The trainable parameters of a [`Vit`]: one [`Var`] per tensor, named like timm, and a `Vit`
//! whose tensors are those variables (so its `Mode::Train` forward pass has weight gradients).
use crate::model::block::Block;
use crate::model::config::{Pool, VitConfig};
use crate::model::ops::{LayerNorm, Linear};
use crate::model::vit::Vit;
use candle_core::{DType, Device, Result, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A named trainable tensor.
pub struct Param {
    /// Tensor name (timm-style), the key in checkpoints.
    pub name: String,
    /// The trainable values.
    pub var: Var,
    /// Weight decay applies to matrices only (timm's convention: not to biases, LayerNorm
    /// parameters, the CLS token or the position embedding).
    pub decay: bool,
}

/// All parameters of a ViT, in a fixed order.
pub struct Params {
    /// The architecture the parameters belong to.
    pub cfg: VitConfig,
    /// Every parameter, in the fixed initialisation order.
    pub list: Vec<Param>,
}

/// How a parameter starts.
enum Init {
    /// Normal(0, std) truncated at two standard deviations.
    TruncNormal(f64),
    Zeros,
    Ones,
}

/// Standard normal sample (Box-Muller; rand 0.9 itself has no normal distribution).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn trunc_normal(rng: &mut ChaCha8Rng, std: f64) -> f32 {
    loop {
        let z = standard_normal(rng);
        if z.abs() <= 2.0 {
            return (z * std) as f32;
        }
    }
}

/// (name, shape, init, decay) of every parameter, timm names and the `Vit` struct's shapes.
fn layout(cfg: &VitConfig) -> Vec<(String, Vec<usize>, Init, bool)> {
    let (d, m) = (cfg.hidden, cfg.mlp_dim);
    let patch_in = cfg.channels * cfg.patch_size * cfg.patch_size;
    let w = || Init::TruncNormal(0.02);
    let mut v = vec![
        (
            "patch_embed.proj.weight".into(),
            vec![d, patch_in],
            w(),
            true,
        ),
        ("patch_embed.proj.bias".into(), vec![d], Init::Zeros, false),
        // timm: normal(std 1e-6) for the CLS token, trunc-normal(0.02) for the position table.
        (
            "cls_token".into(),
            vec![1, d],
            Init::TruncNormal(1e-6),
            false,
        ),
        ("pos_embed".into(), vec![cfg.tokens(), d], w(), false),
    ];
    for i in 0..cfg.layers {
        let b = format!("blocks.{i}");
        for (name, out, inp) in [
            ("attn.qkv", 3 * d, d),
            ("attn.proj", d, d),
            ("mlp.fc1", m, d),
            ("mlp.fc2", d, m),
        ] {
            v.push((format!("{b}.{name}.weight"), vec![out, inp], w(), true));
            v.push((format!("{b}.{name}.bias"), vec![out], Init::Zeros, false));
        }
        for name in ["norm1", "norm2"] {
            v.push((format!("{b}.{name}.weight"), vec![d], Init::Ones, false));
            v.push((format!("{b}.{name}.bias"), vec![d], Init::Zeros, false));
        }
    }
    v.push(("norm.weight".into(), vec![d], Init::Ones, false));
    v.push(("norm.bias".into(), vec![d], Init::Zeros, false));
    v.push(("head.weight".into(), vec![cfg.num_classes, d], w(), true));
    v.push((
        "head.bias".into(),
        vec![cfg.num_classes],
        Init::Zeros,
        false,
    ));
    v
}

impl Params {
    /// Freshly initialised parameters, drawn from `rng` in `layout` order.
    pub fn init(cfg: &VitConfig, rng: &mut ChaCha8Rng, device: &Device) -> Result<Self> {
        assert!(
            cfg.prefix_tokens == 1 && cfg.pool == Pool::Cls,
            "training builds CLS-pooled ViTs"
        );
        let list = layout(cfg)
            .into_iter()
            .map(|(name, shape, init, decay)| {
                let n: usize = shape.iter().product();
                let data: Vec<f32> = match init {
                    Init::TruncNormal(std) => (0..n).map(|_| trunc_normal(rng, std)).collect(),
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                };
                let var = Var::from_tensor(&Tensor::from_vec(data, shape, device)?)?;
                Ok(Param { name, var, decay })
            })
            .collect::<Result<_>>()?;
        Ok(Params {
            cfg: cfg.clone(),
            list,
        })
    }

    /// Parameters with the values of `tensors` (a checkpoint), checked for names and shapes.
    pub fn from_tensors(
        cfg: &VitConfig,
        tensors: &std::collections::HashMap<String, Tensor>,
        device: &Device,
    ) -> std::result::Result<Self, String> {
        let list = layout(cfg)
            .into_iter()
            .map(|(name, shape, _, decay)| {
                let t = tensors
                    .get(&name)
                    .ok_or_else(|| format!("missing tensor `{name}`"))?;
                if t.dims() != shape.as_slice() {
                    return Err(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.dims()
                    ));
                }
                let t = t.to_dtype(DType::F32).and_then(|t| t.to_device(device));
                let var = t
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(|e| e.to_string())?;
                Ok(Param { name, var, decay })
            })
            .collect::<std::result::Result<_, String>>()?;
        Ok(Params {
            cfg: cfg.clone(),
            list,
        })
    }

    /// Total number of scalars.
    pub fn count(&self) -> usize {
        self.list.iter().map(|p| p.var.elem_count()).sum()
    }

    /// A `Vit` over the variables themselves (not copies): optimizer steps update it in place.
    pub fn vit(&self) -> Vit {
        self.build(|v| v.as_tensor().clone())
    }

    /// A `Vit` over detached tensors (sharing the storage): evaluating it records no graph.
    pub fn frozen_vit(&self) -> Vit {
        self.build(|v| v.as_tensor().detach())
    }

    /// A frozen `Vit` whose every tensor is `f(parameter)` (another dtype, perturbed values: the
    /// tests build random models of any shape this way).
    pub fn frozen_vit_with(
        &self,
        mut f: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Vit> {
        let mut mapped = Vec::with_capacity(self.list.len());
        for p in &self.list {
            mapped.push(f(&p.var.as_tensor().detach())?);
        }
        let mut it = mapped.into_iter();
        Ok(self.build(|_| it.next().expect("one tensor per parameter")))
    }

    fn build(&self, mut tensor: impl FnMut(&Var) -> Tensor) -> Vit {
        let mut it = self.list.iter().map(|p| tensor(&p.var));
        let mut next = || it.next().expect("layout order");
        let eps = self.cfg.ln_eps;
        let patch = Linear::new(next(), Some(next()));
        let prefix = next();
        let pos = next();
        let blocks = (0..self.cfg.layers)
            .map(|_| {
                let mut lin = || Linear::new(next(), Some(next()));
                let (qkv, proj, fc1, fc2) = (lin(), lin(), lin(), lin());
                let mut ln = || LayerNorm {
                    weight: next(),
                    bias: next(),
                    eps,
                };
                let (ln_att, ln_ffn) = (ln(), ln());
                Block {
                    ln_att,
                    qkv,
                    proj,
                    ln_ffn,
                    fc1,
                    fc2,
                    cls_mask: None,
                }
            })
            .collect();
        let norm = LayerNorm {
            weight: next(),
            bias: next(),
            eps,
        };
        let head = Linear::new(next(), Some(next()));
        Vit {
            pre_norm: None,
            head_dist: None,
            objective: Default::default(),
            cfg: self.cfg.clone(),
            patch,
            prefix,
            pos,
            blocks,
            norm,
            head,
        }
    }
}
