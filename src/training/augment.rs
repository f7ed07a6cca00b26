//! Training batches: random translation with zero padding and random horizontal flip, then the
//! same normalisation and gray-to-RGB replication as evaluation.
use crate::io::fashion_mnist::{normalize, FashionMnist, PIXELS, SIDE};
use candle_core::{Device, Result, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Random translation and mirroring of training images.
#[derive(Clone, Copy, Debug)]
pub struct Augment {
    /// Largest shift in pixels, each axis independently uniform in `-max_shift..=max_shift`.
    pub max_shift: usize,
    /// Mirror left-right with probability 1/2 (Fashion-MNIST classes are mirror-symmetric).
    pub flip: bool,
}

/// Images `indices` augmented, as (R, 3, 28, 28) normalised f32, and their labels (R) u32.
pub fn batch(
    data: &FashionMnist,
    indices: &[usize],
    aug: Augment,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let s = aug.max_shift as i64;
    let side = SIDE as i64;
    let background = normalize(0);
    let mut buf = Vec::with_capacity(indices.len() * 3 * PIXELS);
    let mut img = vec![0f32; PIXELS];
    for &i in indices {
        let (dx, dy) = (rng.random_range(-s..=s), rng.random_range(-s..=s));
        let flip = aug.flip && rng.random_bool(0.5);
        let src = data.image(i);
        for y in 0..side {
            for x in 0..side {
                // Output pixel (x, y) reads source (x - dx, y - dy), mirrored when flipping.
                let (sx, sy) = (x - dx, y - dy);
                let sx = if flip { side - 1 - sx } else { sx };
                let inside = (0..side).contains(&sx) && (0..side).contains(&sy);
                img[(y * side + x) as usize] = if inside {
                    normalize(src[(sy * side + sx) as usize])
                } else {
                    background
                };
            }
        }
        for _ in 0..3 {
            buf.extend_from_slice(&img);
        }
    }
    let labels: Vec<u32> = indices.iter().map(|&i| data.labels[i] as u32).collect();
    Ok((
        Tensor::from_vec(buf, (indices.len(), 3, SIDE, SIDE), device)?,
        Tensor::new(labels, device)?,
    ))
}
