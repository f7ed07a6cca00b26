//! Input images as small inline PNG `data:` URIs, so the report stays one self-contained file.
use crate::io::inputs::{Item, Preprocess};
use anyhow::Result;
use image::{ImageEncoder, RgbImage};

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
    let img = rgb_image(item, pre)?;
    let s = pre.size as u32;
    let img = if s > MAX_SIDE {
        image::imageops::resize(
            &img,
            MAX_SIDE,
            MAX_SIDE,
            image::imageops::FilterType::Triangle,
        )
    } else {
        img
    };
    let (w, h, raw) = (img.width(), img.height(), img.as_raw());
    let mut bytes = Vec::new();
    // Photographs compress far better as JPEG; small (e.g. 28 px) images stay lossless.
    let mime = if s > 64 {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85).write_image(
            raw,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?;
        "jpeg"
    } else {
        image::codecs::png::PngEncoder::new(&mut bytes).write_image(
            raw,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?;
        "png"
    };
    Ok(format!("data:image/{mime};base64,{}", base64(&bytes)))
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
