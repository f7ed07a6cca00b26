//! Input images as small inline PNG `data:` URIs, so the report stays one self-contained file.
use crate::experiments::error::Result;
use crate::io::inputs::{Item, Preprocess};
use image::{ExtendedColorType, ImageEncoder, RgbImage};

/// Thumbnails are at most this many pixels wide (small inputs stay as they are).
const MAX_SIDE: u32 = 112;

/// The preprocessed image (model size), de-normalised to 8-bit RGB.
pub fn rgb_image(item: &Item, pre: &Preprocess) -> Result<RgbImage> {
    let px = item.load(pre)?;
    let s = pre.size as u32;
    let (mean, std) = pre.norm.mean_std();
    let plane = (s * s) as usize;
    Ok(RgbImage::from_fn(s, s, |x, y| {
        let i = (y * s + x) as usize;
        image::Rgb(std::array::from_fn(|c| {
            ((px[c * plane + i] * std[c] + mean[c]).clamp(0.0, 1.0) * 255.0).round() as u8
        }))
    }))
}

/// The preprocessed image, de-normalised, as a PNG (small images) or JPEG data URI.
pub fn data_uri(item: &Item, pre: &Preprocess) -> Result<String> {
    encode(&small(rgb_image(item, pre)?))
}

/// The image in light grey (so heat-map colours over it read true, also over dark images), as
/// [`data_uri`] encodes it.
pub fn grey_data_uri(item: &Item, pre: &Preprocess) -> Result<String> {
    let img = small(rgb_image(item, pre)?);
    let grey = image::imageops::grayscale(&img);
    let light = RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let v = 110 + (f64::from(grey.get_pixel(x, y).0[0]) * 145.0 / 255.0).round() as u8;
        image::Rgb([v, v, v])
    });
    encode(&light)
}

/// At most [`MAX_SIDE`] pixels wide.
fn small(img: RgbImage) -> RgbImage {
    if img.width() > MAX_SIDE {
        let h = (img.height() * MAX_SIDE / img.width()).max(1);
        image::imageops::resize(&img, MAX_SIDE, h, image::imageops::FilterType::Triangle)
    } else {
        img
    }
}

/// A PNG (up to 64 px: lossless for small inputs) or JPEG (photographs) `data:` URI.
fn encode(img: &RgbImage) -> Result<String> {
    let (w, h, raw) = (img.width(), img.height(), img.as_raw());
    let mut bytes = Vec::new();
    if w <= 64 {
        return png_data_uri(raw, (w, h), ExtendedColorType::Rgb8);
    }
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85).write_image(
        raw,
        w,
        h,
        ExtendedColorType::Rgb8,
    )?;
    Ok(format!("data:image/jpeg;base64,{}", base64(&bytes)))
}

/// Raw pixels of `color` type as a lossless PNG `data:` URI.
pub fn png_data_uri(raw: &[u8], (w, h): (u32, u32), color: ExtendedColorType) -> Result<String> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(raw, w, h, color)?;
    Ok(format!("data:image/png;base64,{}", base64(&bytes)))
}

/// Signed values on a `grid` x `grid` patch grid as a transparent PNG `data:` URI, one pixel
/// per patch: red positive, blue negative, opacity growing with |v| / `max` (drawn scaled up
/// with pixelated rendering over the grey image).
pub fn heat_data_uri(values: &[f64], grid: usize, max: f64) -> Result<String> {
    let g = grid as u32;
    let mut rgba = Vec::with_capacity(values.len() * 4);
    for &v in values.iter().take(grid * grid) {
        let (fill, alpha) = super::diverging::diverging(v, max);
        let c = u32::from_str_radix(&fill[1..], 16).unwrap_or(0);
        rgba.extend([
            (c >> 16) as u8,
            (c >> 8) as u8,
            c as u8,
            (alpha * 255.0).round() as u8,
        ]);
    }
    rgba.resize((g * g * 4) as usize, 0);
    png_data_uri(&rgba, (g, g), ExtendedColorType::Rgba8)
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
