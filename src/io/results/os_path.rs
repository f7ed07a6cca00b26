//! Paths that are not UTF-8 in a JSON header: their bytes in hex, decoded back exactly.
use std::path::{Path, PathBuf};

/// The path's bytes as lowercase hex.
pub fn to_hex(p: &Path) -> String {
    p.as_os_str()
        .as_encoded_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The path whose bytes `hex` spells.
pub fn from_hex(hex: &str) -> Result<PathBuf, String> {
    let bad = || format!("`paths_hex` entry {hex:?} is not a path's bytes in hex");
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(from_bytes(bytes))
}

#[cfg(unix)]
fn from_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn from_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn non_utf8_paths_round_trip() {
        let p = Path::new(std::ffi::OsStr::from_bytes(b"data\xff/cl\xe9ss"));
        assert_eq!(from_hex(&to_hex(p)).unwrap(), p);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
        assert!(from_hex("é0").is_err());
    }
}
