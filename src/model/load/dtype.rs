//! A loaded model in another element type: every weight converted, nothing else changed (what
//! loading with another `LoadOptions::dtype` gives, without reading the checkpoint again).
use crate::model::block::Block;
use crate::model::ops::{LayerNorm, Linear};
use crate::model::vit::Vit;
use candle_core::{DType, Result, Tensor};

fn linear(l: &Linear, dtype: DType) -> Result<Linear> {
    let bias = l.bias.as_ref().map(|b| b.to_dtype(dtype)).transpose()?;
    Ok(Linear::new(l.weight.to_dtype(dtype)?, bias))
}

fn layer_norm(ln: &LayerNorm, dtype: DType) -> Result<LayerNorm> {
    Ok(LayerNorm {
        weight: ln.weight.to_dtype(dtype)?,
        bias: ln.bias.to_dtype(dtype)?,
        eps: ln.eps,
    })
}

fn block(b: &Block, dtype: DType) -> Result<Block> {
    Ok(Block {
        ln_att: layer_norm(&b.ln_att, dtype)?,
        qkv: linear(&b.qkv, dtype)?,
        proj: linear(&b.proj, dtype)?,
        ln_ffn: layer_norm(&b.ln_ffn, dtype)?,
        fc1: linear(&b.fc1, dtype)?,
        fc2: linear(&b.fc2, dtype)?,
        cls_mask: b.cls_mask.as_ref().map(|m| m.to_dtype(dtype)).transpose()?,
    })
}

/// `model` with every weight in `dtype` (rounded to nearest when narrower), on the same device.
pub fn convert(model: &Vit, dtype: DType) -> Result<Vit> {
    let to = |t: &Tensor| t.to_dtype(dtype);
    Ok(Vit {
        cfg: model.cfg.clone(),
        patch: linear(&model.patch, dtype)?,
        prefix: to(&model.prefix)?,
        pos: to(&model.pos)?,
        pre_norm: model
            .pre_norm
            .as_ref()
            .map(|ln| layer_norm(ln, dtype))
            .transpose()?,
        blocks: model
            .blocks
            .iter()
            .map(|b| block(b, dtype))
            .collect::<Result<_>>()?,
        norm: layer_norm(&model.norm, dtype)?,
        head: linear(&model.head, dtype)?,
        head_dist: model
            .head_dist
            .as_ref()
            .map(|l| linear(l, dtype))
            .transpose()?,
        objective: model.objective.clone(),
    })
}
