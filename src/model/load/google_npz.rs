//! Google ViT `.npz` (ViT-B_16-224, B_32, L_32 layout) -> canonical tensors.
use super::archive::Archive;
use super::npy::parse_header;
use super::{ModelError, Raw};
use crate::limits::Limits;
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;
use std::path::Path;

/// Every array of an `.npz`, each member's declared sizes checked (zip entry, `.npy` header,
/// decoding budget) before its data is read, and its CRC verified.
pub(crate) fn read_npz(
    path: &Path,
    limits: &Limits,
) -> Result<HashMap<String, Tensor>, ModelError> {
    let mut ar = Archive::open(path, limits)?;
    let mut out = HashMap::new();
    for name in ar.names() {
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        let bytes = ar.read(&name, None)?;
        let bad = |msg: String| ModelError::format(path, format!("array `{key}`: {msg}"));
        let h = parse_header(&bytes).map_err(&bad)?;
        let (dtype, size) = match h.descr.as_str() {
            "<f8" => (DType::F64, 8),
            "<f4" => (DType::F32, 4),
            "<f2" => (DType::F16, 2),
            "<i8" => (DType::I64, 8),
            "<i4" => (DType::I32, 4),
            "<i2" => (DType::I16, 2),
            "|u1" | "|b1" => (DType::U8, 1),
            other => return Err(bad(format!("unsupported dtype {other:?}"))),
        };
        let data = &bytes[h.data_offset..];
        let want = h.numel().and_then(|n| n.checked_mul(size));
        if want != Some(data.len()) {
            return Err(bad(format!(
                "header declares shape {:?} of {} ({} bytes) but the member holds {} data bytes",
                h.shape,
                h.descr,
                want.map_or("too many".to_string(), |w| w.to_string()),
                data.len()
            )));
        }
        let t = if h.fortran_order {
            // Column-major: the reversed shape in row-major order, transposed back.
            let rev: Vec<usize> = h.shape.iter().rev().copied().collect();
            let perm: Vec<usize> = (0..rev.len()).rev().collect();
            Tensor::from_raw_buffer(data, dtype, &rev, &Device::Cpu)
                .and_then(|t| t.permute(perm))
                .and_then(|t| t.contiguous())
        } else {
            Tensor::from_raw_buffer(data, dtype, &h.shape, &Device::Cpu)
        }
        .map_err(ModelError::tensor(path))?;
        out.insert(key.to_string(), t);
    }
    Ok(out)
}

pub(crate) fn read(path: &Path, limits: &Limits) -> Result<Raw, ModelError> {
    let t = ModelError::tensor(path);
    let src = read_npz(path, limits)?;
    // An .npz of a timm state dict (as numpy.savez of `state_dict()`) is read as timm.
    if !src.contains_key("embedding/kernel") && src.contains_key("cls_token") {
        return super::torch_pickle::timm_raw(path, src);
    }
    let get = |name: &str| {
        src.get(name).cloned().ok_or_else(|| ModelError::Missing {
            path: path.to_path_buf(),
            name: name.to_string(),
        })
    };
    let rank = |name: &str, tensor: &Tensor, r: usize| {
        if tensor.rank() == r {
            Ok(())
        } else {
            Err(ModelError::format(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, expected rank {r}",
                    tensor.dims()
                ),
            ))
        }
    };
    let mut out = HashMap::new();
    let kernel = get("embedding/kernel")?;
    rank("embedding/kernel", &kernel, 4)?;
    // HWIO -> OIHW.
    out.insert(
        "patch_embed.proj.weight".into(),
        kernel
            .permute([3, 2, 0, 1])
            .and_then(|k| k.contiguous())
            .map_err(&t)?,
    );
    out.insert("patch_embed.proj.bias".into(), get("embedding/bias")?);
    out.insert("cls_token".into(), get("cls")?);
    out.insert(
        "pos_embed".into(),
        get("Transformer/posembed_input/pos_embedding")?,
    );
    out.insert("norm.weight".into(), get("Transformer/encoder_norm/scale")?);
    out.insert("norm.bias".into(), get("Transformer/encoder_norm/bias")?);
    let head = get("head/kernel")?;
    rank("head/kernel", &head, 2)?;
    out.insert(
        "head.weight".into(),
        head.t().and_then(|h| h.contiguous()).map_err(&t)?,
    );
    out.insert("head.bias".into(), get("head/bias")?);
    let dense = |name: &str| -> Result<Tensor, ModelError> {
        let k = get(name)?;
        rank(name, &k, 2)?;
        k.t().and_then(|k| k.contiguous()).map_err(&t)
    };
    let mut heads = None;
    for i in 0.. {
        let b = format!("Transformer/encoderblock_{i}");
        if !src.contains_key(&format!("{b}/LayerNorm_0/scale")) {
            break;
        }
        let c = format!("blocks.{i}");
        let att = format!("{b}/MultiHeadDotProductAttention_1");
        let mut ws = Vec::new();
        let mut bs = Vec::new();
        for part in ["query", "key", "value"] {
            let name = format!("{att}/{part}/kernel");
            let k = get(&name)?;
            rank(&name, &k, 3)?;
            let (dm, h, hd) = k.dims3().map_err(&t)?;
            heads = Some(h);
            // (D, heads, hd) -> (D, D) -> (out, in).
            ws.push(k.reshape((dm, h * hd)).and_then(|k| k.t()).map_err(&t)?);
            bs.push(
                get(&format!("{att}/{part}/bias"))?
                    .flatten_all()
                    .map_err(&t)?,
            );
        }
        out.insert(
            format!("{c}.attn.qkv.weight"),
            Tensor::cat(&ws, 0).map_err(&t)?,
        );
        out.insert(
            format!("{c}.attn.qkv.bias"),
            Tensor::cat(&bs, 0).map_err(&t)?,
        );
        let o_name = format!("{att}/out/kernel");
        let o = get(&o_name)?;
        rank(&o_name, &o, 3)?;
        let dm = o.dim(D::Minus1).map_err(&t)?;
        out.insert(
            format!("{c}.attn.proj.weight"),
            o.reshape((o.elem_count() / dm, dm))
                .and_then(|o| o.t())
                .and_then(|o| o.contiguous())
                .map_err(&t)?,
        );
        out.insert(
            format!("{c}.attn.proj.bias"),
            get(&format!("{att}/out/bias"))?,
        );
        for (ln, dst) in [("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")] {
            out.insert(
                format!("{c}.{dst}.weight"),
                get(&format!("{b}/{ln}/scale"))?,
            );
            out.insert(format!("{c}.{dst}.bias"), get(&format!("{b}/{ln}/bias"))?);
        }
        for (dense_name, dst) in [("Dense_0", "fc1"), ("Dense_1", "fc2")] {
            out.insert(
                format!("{c}.mlp.{dst}.weight"),
                dense(&format!("{b}/MlpBlock_3/{dense_name}/kernel"))?,
            );
            out.insert(
                format!("{c}.mlp.{dst}.bias"),
                get(&format!("{b}/MlpBlock_3/{dense_name}/bias"))?,
            );
        }
    }
    // LayerNorm eps 1e-6 and exact erf GELU, as the paper's PyTorch port of these checkpoints.
    Ok(Raw {
        heads,
        ..Raw::new(super::Family::Vit, out)
    })
}
