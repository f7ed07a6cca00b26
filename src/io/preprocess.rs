//! Image decoding and the paper's preprocessing (PIL-exact bilinear resize, ToTensor, Normalize).
//!
//! The reference pipeline is `Image.open(p).convert("RGB")`, `Resize((s, s))` (PIL bilinear),
//! `ToTensor()`, `Normalize(mean, std)`. Everything here reproduces it bit for bit, except JPEG
//! decoding: `image` uses zune-jpeg, PIL uses libjpeg-turbo, and their IDCT/upsampling rounding
//! differs by a few levels on some pixels.
use std::fmt;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::{DynamicImage, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

/// Errors from decoding an image file. `image` is the file path or the caller's label.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The file could not be read.
    #[error("cannot read image {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The bytes are not a decodable PNG or JPEG.
    #[error("cannot decode image {image} (corrupt, truncated or not a PNG/JPEG?): {source}")]
    Decode {
        /// The file path or the caller's label.
        image: String,
        /// Why it failed.
        source: image::ImageError,
    },
    /// A JPEG without its end-of-image marker (PIL refuses these by default).
    #[error("truncated JPEG {image} (no end-of-image marker)")]
    TruncatedJpeg {
        /// The file path or the caller's label.
        image: String,
    },
    /// An image whose header announces more pixels than the cap, refused before decoding.
    #[error("image {image} is {width}x{height} = {} pixels, over the cap of {cap} (PIL's MAX_IMAGE_PIXELS; raise NEURONPATH_MAX_IMAGE_PIXELS if it is genuine)", *width as u64 * *height as u64)]
    TooManyPixels {
        /// The file path or the caller's label.
        image: String,
        /// Width in pixels, from the header.
        width: u32,
        /// Height in pixels, from the header.
        height: u32,
        /// The largest pixel count accepted.
        cap: u64,
    },
    /// The image decoder panicked; caught so one bad file is one error.
    #[error("image decoder crashed on {image} (corrupt file?)")]
    DecoderPanic {
        /// The file path or the caller's label.
        image: String,
    },
    /// A normalisation name that is not `imagenet`, `half` or `clip`.
    #[error("unknown normalization {0:?} (expected \"imagenet\", \"half\" or \"clip\")")]
    UnknownNormalization(String),
}

/// Per-channel normalisation applied after scaling pixels to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// torchvision's ImageNet statistics.
    ImageNet,
    /// mean 0.5, std 0.5 (maps [0, 1] to [-1, 1]), as used by the Google ViT checkpoints.
    Half,
    /// OpenAI CLIP's image statistics.
    Clip,
}

impl Normalization {
    /// `(mean, std)` per RGB channel, as the f32 values torch holds: the Python floats are
    /// doubles rounded to f32, so go through f64 rather than parse the literals as f32.
    pub fn mean_std(self) -> ([f32; 3], [f32; 3]) {
        let [mean, std] = self.mean_std_f64();
        (mean.map(|v| v as f32), std.map(|v| v as f32))
    }

    /// `[mean, std]` per RGB channel as the literals (f64).
    pub fn mean_std_f64(self) -> [[f64; 3]; 2] {
        match self {
            Normalization::ImageNet => [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]],
            Normalization::Half => [[0.5; 3], [0.5; 3]],
            Normalization::Clip => [
                [0.48145466, 0.4578275, 0.40821073],
                [0.26862954, 0.26130258, 0.27577711],
            ],
        }
    }

    /// The variant whose `[mean, std]` these are, e.g. from a checkpoint's
    /// `preprocessor_config.json`. Values stored as f32 and printed back (0.48500001430511475)
    /// still match: the tolerance is far above f32 rounding and far below any real difference.
    pub fn from_mean_std(mean_std: [[f64; 3]; 2]) -> Option<Self> {
        [
            Normalization::ImageNet,
            Normalization::Half,
            Normalization::Clip,
        ]
        .into_iter()
        .find(|n| {
            let want = n.mean_std_f64();
            (0..2).all(|i| (0..3).all(|c| (mean_std[i][c] - want[i][c]).abs() < 1e-6))
        })
    }
}

impl fmt::Display for Normalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Normalization::ImageNet => "imagenet",
            Normalization::Half => "half",
            Normalization::Clip => "clip",
        })
    }
}

impl FromStr for Normalization {
    type Err = PreprocessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("imagenet") {
            Ok(Normalization::ImageNet)
        } else if s.eq_ignore_ascii_case("half") {
            Ok(Normalization::Half)
        } else if s.eq_ignore_ascii_case("clip") {
            Ok(Normalization::Clip)
        } else {
            Err(PreprocessError::UnknownNormalization(s.to_string()))
        }
    }
}

/// Decodes a PNG or JPEG file (format sniffed from the content, as PIL does) to 8-bit RGB with
/// the same channel conversions as PIL's `convert("RGB")`. EXIF orientation is ignored, like PIL.
pub fn decode_rgb(path: &Path) -> Result<RgbImage, PreprocessError> {
    let bytes = crate::limits::read_regular(path).map_err(|source| PreprocessError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_rgb_bytes(&bytes, &path.display().to_string())
}

/// [`decode_rgb`] for an encoded image in memory; `label` names it in errors.
pub fn decode_rgb_bytes(bytes: &[u8], label: &str) -> Result<RgbImage, PreprocessError> {
    decode_rgb_bytes_capped(bytes, label, crate::limits::max_image_pixels())
}

/// [`decode_rgb_bytes`] refusing images of more than `max_pixels` pixels, from their header,
/// before any pixel is decoded.
pub fn decode_rgb_bytes_capped(
    bytes: &[u8],
    label: &str,
    max_pixels: u64,
) -> Result<RgbImage, PreprocessError> {
    let decode_err = |source| PreprocessError::Decode {
        image: label.to_string(),
        source,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(image::ImageError::IoError(e)))?;
    let (width, height) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(image::ImageError::IoError(e)))?
        .into_dimensions()
        .map_err(decode_err)?;
    if width as u64 * height as u64 > max_pixels {
        return Err(PreprocessError::TooManyPixels {
            image: label.to_string(),
            width,
            height,
            cap: max_pixels,
        });
    }
    // zune-jpeg fills in missing data silently; PIL refuses a JPEG that ends before its EOI.
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_reaches_eoi(bytes) {
        return Err(PreprocessError::TruncatedJpeg {
            image: label.to_string(),
        });
    }
    // A decoder bug on a hostile file must not abort a long run over a data set.
    let decoded = catch_unwind(AssertUnwindSafe(|| reader.decode())).map_err(|_| {
        PreprocessError::DecoderPanic {
            image: label.to_string(),
        }
    })?;
    Ok(to_rgb8_like_pil(decoded.map_err(decode_err)?))
}

/// Whether a JPEG's marker structure runs from SOI to an EOI marker within `data`: segments are
/// skipped by their length, and in entropy-coded data `FF 00` (stuffing), `FF D0..D7` (restart)
/// and `FF FF` (fill) are not markers, so the first other `FF xx` there is the next marker.
fn jpeg_reaches_eoi(data: &[u8]) -> bool {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    while i + 1 < data.len() {
        if data[i] != 0xFF || data[i + 1] == 0xFF {
            // Entropy-coded data, stray bytes (libjpeg skips them too) or fill.
            i += 1;
            continue;
        }
        match data[i + 1] {
            0xD9 => return true,
            0x00 | 0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let Some(len) = data.get(i + 2..i + 4) else {
                    return false;
                };
                i += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
        }
    }
    false
}

/// PIL's `convert("RGB")` for what the PNG/JPEG decoders produce. Alpha is dropped (not
/// composited). PIL reads 16-bit RGB(A) and gray+alpha PNGs by keeping the high byte, but
/// 16-bit gray becomes mode "I;16", whose conversion clips values above 255 to 255 instead of
/// scaling; both quirks are reproduced. CMYK/YCCK JPEGs are converted to RGB by zune-jpeg with
/// the same Adobe-inverted formula as PIL (R = C'K'/255, rounded).
fn to_rgb8_like_pil(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from_fn = |data: Vec<u8>| RgbImage::from_raw(w, h, data).expect("3 bytes per pixel");
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma8(l) => from_fn(l.iter().flat_map(|&v| [v; 3]).collect()),
        DynamicImage::ImageLumaA8(la) => {
            from_fn(la.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect())
        }
        DynamicImage::ImageRgba8(rgba) => from_fn(
            rgba.chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
        ),
        DynamicImage::ImageLuma16(l) => {
            from_fn(l.iter().flat_map(|&v| [v.min(255) as u8; 3]).collect())
        }
        DynamicImage::ImageLumaA16(la) => {
            from_fn(la.chunks_exact(2).flat_map(|p| [hi(p[0]); 3]).collect())
        }
        DynamicImage::ImageRgb16(rgb) => from_fn(rgb.iter().map(|&v| hi(v)).collect()),
        DynamicImage::ImageRgba16(rgba) => from_fn(
            rgba.chunks_exact(4)
                .flat_map(|p| [hi(p[0]), hi(p[1]), hi(p[2])])
                .collect(),
        ),
        // Float images do not come out of the PNG/JPEG decoders.
        other => other.to_rgb8(),
    }
}

fn hi(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Fixed-point precision of Pillow's 8-bit resampling (`PRECISION_BITS` in Resample.c).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per-output-pixel source window and fixed-point weights along one axis.
struct Coeffs {
    /// Stride of `weights` (Pillow's `ksize`).
    ksize: usize,
    /// `(xmin, count)`: the first source index and how many are used.
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter
/// over the full box `[0, in_size)`.
fn precompute_coeffs(in_size: u32, out_size: u32) -> Coeffs {
    const SUPPORT: f64 = 1.0;
    let triangle = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    };
    let scale = f64::from(in_size) / f64::from(out_size);
    // Downscaling widens the filter (antialiasing); upscaling keeps it at 1.
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for (xx, row) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C casts truncate toward zero; negatives are clamped to 0 right after either way.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
        let count = (xmax - xmin).clamp(0, ksize as i64) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            // Same operation order as Pillow: (x + xmin - center + 0.5) * ss.
            *kx = triangle(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            ww += *kx;
        }
        for (w, &kx) in row.iter_mut().zip(&k).take(count) {
            let kx = if ww != 0.0 { kx / ww } else { kx };
            let scaled = kx * f64::from(1u32 << PRECISION_BITS);
            *w = if kx < 0.0 {
                (scaled - 0.5) as i32
            } else {
                (scaled + 0.5) as i32
            };
        }
        bounds.push((xmin as usize, count));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

/// Pillow's `clip8`: drop the fixed-point fraction (arithmetic shift) and saturate.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One output pixel: the weighted sum of `count` source pixels `stride` bytes apart.
fn resample_pixel(src: &[u8], start: usize, stride: usize, weights: &[i32], out: &mut [u8]) {
    for (c, o) in out.iter_mut().enumerate() {
        let mut acc: i32 = 1 << (PRECISION_BITS - 1);
        for (i, &w) in weights.iter().enumerate() {
            acc += i32::from(src[start + i * stride + c]) * w;
        }
        *o = clip8(acc);
    }
}

/// PIL's `Image.resize((width, height), Image.BILINEAR)`, bit-exact (Pillow's Resample.c):
/// horizontal pass then vertical pass, each skipped when that dimension is unchanged, each
/// rounding and clipping to 8 bits.
pub fn resize_bilinear_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    if width == 0 || height == 0 {
        // Nothing to sample (Pillow's scale would be infinite).
        return RgbImage::new(width, height);
    }
    let mut cur = img.clone();
    if width != in_w {
        let co = precompute_coeffs(in_w, width);
        let src = cur.as_raw();
        let mut out = vec![0u8; width as usize * in_h as usize * 3];
        for (y, out_row) in out.chunks_exact_mut(width as usize * 3).enumerate() {
            let row = &src[y * in_w as usize * 3..(y + 1) * in_w as usize * 3];
            for (xx, px) in out_row.chunks_exact_mut(3).enumerate() {
                let (xmin, count) = co.bounds[xx];
                let w = &co.weights[xx * co.ksize..xx * co.ksize + count];
                resample_pixel(row, xmin * 3, 3, w, px);
            }
        }
        cur = RgbImage::from_raw(width, in_h, out).expect("sized above");
    }
    if height != in_h {
        let co = precompute_coeffs(in_h, height);
        let stride = width as usize * 3;
        let src = cur.as_raw();
        let mut out = vec![0u8; stride * height as usize];
        for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
            let (ymin, count) = co.bounds[yy];
            let w = &co.weights[yy * co.ksize..yy * co.ksize + count];
            for (i, px) in out_row.chunks_exact_mut(3).enumerate() {
                resample_pixel(src, ymin * stride + i * 3, stride, w, px);
            }
        }
        cur = RgbImage::from_raw(width, height, out).expect("sized above");
    }
    cur
}

/// torchvision `ToTensor()` + `Normalize(mean, std)`: a (3, H, W) row-major tensor with
/// `((v / 255) - mean) / std` evaluated in f32 in that order, as torch does.
pub fn to_normalized_chw(img: &RgbImage, norm: Normalization) -> Vec<f32> {
    let (mean, std) = norm.mean_std();
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// Resize to `(size, size)` ignoring the aspect ratio, then normalise: a (3, size, size) tensor.
pub fn preprocess_rgb(img: &RgbImage, size: u32, norm: Normalization) -> Vec<f32> {
    to_normalized_chw(&resize_bilinear_pil(img, size, size), norm)
}

/// Decode `path` and preprocess it like the reference: a (3, size, size) tensor.
pub fn load_image(
    path: &Path,
    size: u32,
    norm: Normalization,
) -> Result<Vec<f32>, PreprocessError> {
    Ok(preprocess_rgb(&decode_rgb(path)?, size, norm))
}
