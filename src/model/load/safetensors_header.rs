//! Our own bounded check of a `.safetensors` header before candle / the safetensors crate parse
//! the file: the declared header length against the file and a cap, every tensor's offsets
//! inside the data, and its dtype x shape equal to its byte length (checked arithmetic). A
//! crafted header is then an error naming the file and the tensor, whatever the parser behind
//! it would have done with it.
use super::ModelError;
use candle_core::{Device, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// Largest header accepted (the safetensors format's own limit): names, dtypes, shapes and
/// offsets of every tensor, a few hundred bytes each.
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Bytes per element of each safetensors dtype.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Checks a header (`header`, the JSON text) for a file whose data section is `data_len` bytes.
pub fn check_header(header: &[u8], data_len: u64) -> Result<(), String> {
    let v: Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not valid JSON: {e}"))?;
    let Some(map) = v.as_object() else {
        return Err("header is not a JSON object".into());
    };
    for (name, entry) in map {
        if name == "__metadata__" {
            continue;
        }
        let what = |msg: String| format!("tensor `{name}`: {msg}");
        let dtype = entry["dtype"]
            .as_str()
            .ok_or_else(|| what("no dtype".into()))?;
        let size = dtype_size(dtype).ok_or_else(|| what(format!("unknown dtype `{dtype}`")))?;
        let shape = entry["shape"]
            .as_array()
            .ok_or_else(|| what("no shape".into()))?;
        let mut elements: u64 = 1;
        for d in shape {
            let d = d
                .as_u64()
                .ok_or_else(|| what(format!("shape entry {d} is not a size")))?;
            elements = elements
                .checked_mul(d)
                .ok_or_else(|| what("shape overflows".into()))?;
        }
        let bytes = elements
            .checked_mul(size)
            .ok_or_else(|| what("byte length overflows".into()))?;
        let offsets: Vec<u64> = entry["data_offsets"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let [begin, end] = offsets[..] else {
            return Err(what("data_offsets is not [begin, end]".into()));
        };
        if begin > end || end > data_len {
            return Err(what(format!(
                "data_offsets [{begin}, {end}] outside the {data_len} bytes of data"
            )));
        }
        if end - begin != bytes {
            return Err(what(format!(
                "{dtype} {shape:?} needs {bytes} bytes but data_offsets span {}",
                end - begin
            )));
        }
    }
    Ok(())
}

/// Checks the 8-byte length, the header and its tensors of a whole file held in `bytes`.
pub fn check_bytes(bytes: &[u8]) -> Result<(), String> {
    let (n, rest) = declared(bytes.len() as u64, bytes.get(..8))?;
    check_header(&bytes[8..8 + n as usize], rest)
}

/// The declared header length, checked against the file's length and the cap, and the data
/// length after the header.
fn declared(file_len: u64, first8: Option<&[u8]>) -> Result<(u64, u64), String> {
    let Some(first8) = first8.filter(|b| b.len() == 8) else {
        return Err(format!(
            "{file_len} bytes: shorter than the 8-byte header length"
        ));
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(first8);
    let n = u64::from_le_bytes(len);
    let after = file_len - 8;
    if n > MAX_HEADER_BYTES {
        return Err(format!(
            "declares a header of {n} bytes, over the cap of {MAX_HEADER_BYTES}"
        ));
    }
    if n > after {
        return Err(format!(
            "declares a header of {n} bytes but only {after} bytes follow the length"
        ));
    }
    Ok((n, after - n))
}

/// Reads a `.safetensors` file: a regular file, its header checked here first, then loaded by
/// candle.
pub fn read(path: &Path) -> Result<HashMap<String, Tensor>, ModelError> {
    let bad = |msg: String| ModelError::format(path, format!("unreadable safetensors: {msg}"));
    let io = |cause| ModelError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut f = super::archive::open_regular(path)?;
    let file_len = f.metadata().map_err(io)?.len();
    let mut first8 = Vec::with_capacity(8);
    (&mut f).take(8).read_to_end(&mut first8).map_err(io)?;
    let (n, data_len) = declared(file_len, Some(&first8)).map_err(bad)?;
    let mut header = Vec::with_capacity(n as usize);
    (&mut f).take(n).read_to_end(&mut header).map_err(io)?;
    if header.len() as u64 != n {
        return Err(bad("the file changed while it was read".into()));
    }
    check_header(&header, data_len).map_err(bad)?;
    drop(f);
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| bad(e.to_string()))
}

/// [`read`] of a file held in memory (the embedded model); `label` names it.
pub fn read_bytes(label: &Path, bytes: &[u8]) -> Result<HashMap<String, Tensor>, ModelError> {
    let bad = |msg: String| ModelError::format(label, format!("unreadable safetensors: {msg}"));
    check_bytes(bytes).map_err(bad)?;
    candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: usize) -> Vec<u8> {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.resize(b.len() + data, 0);
        b
    }

    #[test]
    fn a_consistent_header_passes() {
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F16","shape":[],"data_offsets":[24,26]}}"#;
        check_bytes(&file(h, 26)).unwrap();
    }

    #[test]
    fn crafted_headers_are_refused() {
        let t = |dtype: &str, shape: &str, off: &str| {
            format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{off}}}}}"#)
        };
        let cases = [
            (t("F32", "[2,3]", "[0,24]"), 10, "outside the 10 bytes"),
            (t("F32", "[2,3]", "[0,20]"), 24, "needs 24 bytes"),
            (t("F32", "[4294967296,4294967296]", "[0,0]"), 0, "overflows"),
            (t("F32", "[2,3]", "[24,0]"), 24, "outside"),
            (t("Q4", "[1]", "[0,1]"), 1, "unknown dtype"),
            (t("F32", "[-1]", "[0,4]"), 4, "not a size"),
            (t("F32", "[1]", "[0]"), 4, "data_offsets"),
            ("[1,2]".to_string(), 0, "not a JSON object"),
            ("{\"t\":".to_string(), 0, "not valid JSON"),
        ];
        for (h, data, needle) in cases {
            let e = check_bytes(&file(&h, data)).unwrap_err();
            assert!(e.contains(needle), "{h}: {e}");
        }
        assert!(check_bytes(b"\x01\x02").unwrap_err().contains("shorter"));
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(check_bytes(&huge).unwrap_err().contains("over the cap"));
        let mut long = 50u64.to_le_bytes().to_vec();
        long.extend_from_slice(b"{}");
        assert!(check_bytes(&long)
            .unwrap_err()
            .contains("only 2 bytes follow"));
    }
}
