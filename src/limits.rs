//! Caps on what reading an input may allocate, checked against declared sizes before allocating.
//!
//! The defaults admit every real checkpoint and image the tool is meant for while keeping a small
//! hostile file (a zip or deflate bomb, a pickle whose memo doubles, a 20000x20000 PNG) from
//! exhausting memory. The binary raises them from environment variables (see [`Limits::from_env`]).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Allocation caps for one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes decoded from one checkpoint (tensor data, pickle, zip members together).
    pub max_decoded_bytes: u64,
    /// Most bytes decoded per byte of the file on disk, beyond a fixed 256 MiB allowance: real
    /// weights barely compress, a deflate bomb expands up to 1032 times.
    pub max_expansion: u64,
    /// Most pixels (width x height) of one image, checked from its header before decoding.
    pub max_image_pixels: u64,
}

/// PIL's `Image.MAX_IMAGE_PIXELS` (1024 * 1024 * 1024 // 4 // 3), the reference behaviour.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;
/// 16 GiB: a ViT-H/14 in f32 is 2.5 GB, ViT-G/14 7.5 GB.
pub const DEFAULT_MAX_DECODED_BYTES: u64 = 16 << 30;
/// Expansion of compressed data over its size on disk.
pub const DEFAULT_MAX_EXPANSION: u64 = 64;
/// Decoding allowance granted to any file regardless of its size.
pub const EXPANSION_ALLOWANCE: u64 = 256 << 20;

/// Environment variables that raise (or lower) the caps, with the field each sets.
pub const ENV_VARS: [&str; 3] = [
    "NEURONPATH_MAX_DECODED_BYTES",
    "NEURONPATH_MAX_EXPANSION",
    "NEURONPATH_MAX_IMAGE_PIXELS",
];

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            max_expansion: DEFAULT_MAX_EXPANSION,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

impl Limits {
    /// The defaults, overridden by `NEURONPATH_MAX_DECODED_BYTES`, `NEURONPATH_MAX_EXPANSION`
    /// and `NEURONPATH_MAX_IMAGE_PIXELS` (positive integers) when set; `var` reads a variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Limits, String> {
        let mut l = Limits::default();
        let fields: [&mut u64; 3] = [
            &mut l.max_decoded_bytes,
            &mut l.max_expansion,
            &mut l.max_image_pixels,
        ];
        for (name, field) in ENV_VARS.iter().zip(fields) {
            if let Some(text) = var(name) {
                *field = match text.trim().parse::<u64>() {
                    Ok(v) if v > 0 => v,
                    _ => return Err(format!("{name}={text:?}: expected a positive integer")),
                };
            }
        }
        Ok(l)
    }

    /// [`Limits::from_vars`] over the process environment.
    pub fn from_env() -> Result<Limits, String> {
        Limits::from_vars(|k| std::env::var(k).ok())
    }

    /// How many bytes may be decoded from a file of `file_len` bytes.
    pub fn decode_budget(&self, file_len: u64) -> u64 {
        file_len
            .saturating_mul(self.max_expansion)
            .saturating_add(EXPANSION_ALLOWANCE)
            .min(self.max_decoded_bytes)
    }
}

static MAX_IMAGE_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_IMAGE_PIXELS);

/// Makes `limits` the caps of the calls that take none (image decoding); the binary calls this
/// once with [`Limits::from_env`].
pub fn set_process_limits(limits: &Limits) {
    MAX_IMAGE_PIXELS.store(limits.max_image_pixels, Ordering::Relaxed);
}

/// The image pixel cap of this process.
pub fn max_image_pixels() -> u64 {
    MAX_IMAGE_PIXELS.load(Ordering::Relaxed)
}

/// Opens a regular file for reading, refusing FIFOs, devices and folders (a symlink to
/// `/dev/zero` included) before anything is read from them.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (devices, FIFOs and folders are never read)",
        ));
    }
    File::open(path)
}

/// The bytes of a regular file.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = open_regular(path)?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

/// A running count of decoded bytes against a budget, charged before each allocation.
#[derive(Debug)]
pub struct Budget {
    left: u64,
    total: u64,
}

impl Budget {
    /// A budget of `bytes` bytes, none spent.
    pub fn new(bytes: u64) -> Budget {
        Budget {
            left: bytes,
            total: bytes,
        }
    }

    /// Takes `bytes` from the budget, or says what would have been exceeded.
    pub fn charge(&mut self, bytes: u64, what: &str) -> Result<(), String> {
        if bytes > self.left {
            return Err(format!(
                "{what} needs {bytes} bytes, over the decoding cap of {} bytes for this file \
                 (raise NEURONPATH_MAX_DECODED_BYTES / NEURONPATH_MAX_EXPANSION if it is genuine)",
                self.total
            ));
        }
        self.left -= bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_validated_and_applied() {
        let l = Limits::from_vars(|k| (k == "NEURONPATH_MAX_IMAGE_PIXELS").then(|| "100".into()))
            .unwrap();
        assert_eq!(l.max_image_pixels, 100);
        assert_eq!(l.max_decoded_bytes, DEFAULT_MAX_DECODED_BYTES);
        for bad in ["0", "-3", "lots", ""] {
            let e = Limits::from_vars(|k| (k == "NEURONPATH_MAX_EXPANSION").then(|| bad.into()))
                .unwrap_err();
            assert!(e.starts_with("NEURONPATH_MAX_EXPANSION="), "{e}");
        }
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir();
        assert!(read_regular(&dir).is_err());
        if Path::new("/dev/zero").exists() {
            let e = read_regular(Path::new("/dev/zero")).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
    }

    #[test]
    fn budget_scales_with_the_file_and_is_capped() {
        let l = Limits::default();
        assert_eq!(l.decode_budget(1 << 20), (64 << 20) + (256 << 20));
        assert_eq!(l.decode_budget(u64::MAX), DEFAULT_MAX_DECODED_BYTES);
        let mut b = Budget::new(10);
        b.charge(6, "x").unwrap();
        assert!(b
            .charge(5, "tensor `a`")
            .unwrap_err()
            .contains("tensor `a` needs 5"));
        b.charge(4, "x").unwrap();
    }
}
