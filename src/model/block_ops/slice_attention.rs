//! Multi-head attention on slices for the slice backend: forward, backward and tangent of all
//! (image, head) pairs as parallel single-threaded GEMMs that read one head's columns of the
//! fused q/k/v rows in place and write one head's columns of the output.
//!
//! Per (image, head): S = scale q k^T, P = softmax(S), O = P v. Backward: dS = softmax'(dO v^T),
//! dq = scale dS k, dk = scale dS^T q, dv = P^T dO. Tangent: dS = scale (dq k^T + q dk^T),
//! dP = P * (dS - rowsum(P * dS)), dO = dP v + P dv.
use super::backend::Dims;
use crate::model::kernels::{self, Acc, Dst, Mat};
use crate::model::real::Real;
use rayon::prelude::*;
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// What the attention keeps: q/k/v (R, N, 3D) and the probabilities (R, H, keep, N), or None:
/// recomputed from q and k where needed (a quarter of a ViT-B/16 block's saved state, for two
/// small GEMMs per head).
pub(crate) struct SavedAttention<T> {
    qkv: Vec<T>,
    p: Option<Vec<T>>,
}

/// The head's query (`keep` rows), key and value (`n` rows) inside `qkv`.
fn head_mats<T>(qkv: &[T], dm: Dims, (img, head): (usize, usize), keep: usize) -> [Mat<'_, T>; 3] {
    let (n, d, hd) = (dm.n, dm.d, dm.hd());
    let base = img * n * 3 * d;
    [
        Mat::new(qkv, base + head * hd, (keep, hd), (3 * d, 1)),
        Mat::new(qkv, base + d + head * hd, (n, hd), (3 * d, 1)),
        Mat::new(qkv, base + 2 * d + head * hd, (n, hd), (3 * d, 1)),
    ]
}

/// The attention of all (image, head) pairs for the first `keep` queries of each image: what
/// is kept, and the head outputs (R, keep, D).
pub(crate) fn forward<T: Real>(
    qkv: Vec<T>,
    dm: Dims,
    keep_probs: bool,
) -> (SavedAttention<T>, Vec<T>) {
    let (r, n, d, heads, keep) = (dm.r, dm.n, dm.d, dm.heads, dm.keep);
    let hd = dm.hd();
    let scale = T::from_f64(dm.scale());
    let mut p = kernels::uninit::<T>(r * heads * keep * n);
    let mut o = kernels::uninit::<T>(r * keep * d);
    let o_all = Dst::new(&mut o, 0, (0, 0), d);
    let o_len = r * keep * d;
    p.par_chunks_mut(keep * n).enumerate().for_each(|(i, pi)| {
        let (img, head) = (i / heads, i % heads);
        let [q, k, v] = head_mats(&qkv, dm, (img, head), keep);
        // SAFETY: `pi` is this task's own chunk; each task writes only its own head's columns
        // of its own image's rows of `o`, which outlives the parallel loop.
        unsafe {
            let pi = head_probs_into(pi, q, k, n, scale);
            let oi = o_all.at(img * keep * d + head * hd, (keep, hd), o_len);
            kernels::matmul(
                oi,
                Mat::rows(pi, keep, n),
                v,
                Acc::Overwrite,
                T::one(),
                false,
            );
        }
    });
    // SAFETY: every chunk of `p` and every (image, head) block of `o` was written above.
    let (p, o) = unsafe { (kernels::assume_init(p), kernels::assume_init(o)) };
    let saved = SavedAttention {
        qkv,
        p: keep_probs.then_some(p),
    };
    (saved, o)
}

/// Writes the attention probabilities softmax(scale q k^T) (keep, N) of one (image, head) into
/// `dst`; the same products as the forward, so a recomputation gives the same values.
fn head_probs_into<'a, T: Real>(
    dst: &'a mut [MaybeUninit<T>],
    q: Mat<T>,
    k: Mat<T>,
    n: usize,
    scale: T,
) -> &'a mut [T] {
    let keep = dst.len() / n.max(1);
    let s = Dst::new(dst, 0, (keep, n), n);
    // SAFETY: the product overwrites all of `dst`, which this call borrows exclusively.
    unsafe {
        kernels::matmul(s, q, k.t(), Acc::Overwrite, scale, false);
        let p: &mut [T] = std::slice::from_raw_parts_mut(dst.as_mut_ptr().cast(), dst.len());
        kernels::softmax_rows(p, n);
        p
    }
}

/// The probabilities (keep, N) of (image `img`, head `head`): saved, or recomputed.
fn head_probs<T: Real>(
    at: &SavedAttention<T>,
    dm: Dims,
    (img, head): (usize, usize),
) -> Cow<'_, [T]> {
    let (n, keep) = (dm.n, dm.keep);
    if let Some(p) = &at.p {
        let i = img * dm.heads + head;
        return Cow::Borrowed(&p[i * keep * n..(i + 1) * keep * n]);
    }
    let [q, k, _] = head_mats(&at.qkv, dm, (img, head), keep);
    let mut buf = kernels::uninit::<T>(keep * n);
    head_probs_into(&mut buf, q, k, n, T::from_f64(dm.scale()));
    // SAFETY: head_probs_into wrote every element.
    Cow::Owned(unsafe { kernels::assume_init(buf) })
}

/// Gradient w.r.t. qkv (R, N, 3D) from the gradient `d_o` (R, keep, D) of the head outputs.
pub(crate) fn backward<T: Real>(at: &SavedAttention<T>, d_o: &[T], dm: Dims) -> Vec<T> {
    let (r, n, d, heads, keep) = (dm.r, dm.n, dm.d, dm.heads, dm.keep);
    let hd = dm.hd();
    let scale = T::from_f64(dm.scale());
    let mut dqkv = if keep == n {
        kernels::uninit::<T>(r * n * 3 * d)
    } else {
        // Queries past `keep` get no gradient: their rows stay zero.
        vec![MaybeUninit::new(T::zero()); r * n * 3 * d]
    };
    let all = Dst::new(&mut dqkv, 0, (0, 0), 3 * d);
    let len = r * n * 3 * d;
    (0..r * heads).into_par_iter().for_each(|i| {
        let (img, head) = (i / heads, i % heads);
        let base = img * n * 3 * d;
        let [q, k, v] = head_mats(&at.qkv, dm, (img, head), keep);
        let go = Mat::new(d_o, img * keep * d + head * hd, (keep, hd), (d, 1));
        let pi = head_probs(at, dm, (img, head));
        let pi = &pi[..];
        let pm = Mat::rows(pi, keep, n);
        let mut ds = kernels::uninit::<T>(keep * n);
        let ds_dst = Dst::new(&mut ds, 0, (keep, n), n);
        // SAFETY: `ds` is this task's own; each task writes only its own head's q, k and v
        // columns of its own image's rows of `dqkv`, which outlives the parallel loop.
        unsafe {
            kernels::matmul(ds_dst, go, v.t(), Acc::Overwrite, T::one(), false);
            let mut ds = kernels::assume_init(ds);
            kernels::softmax_rows_backward(pi, &mut ds, n);
            let dsm = Mat::rows(&ds, keep, n);
            let at = |col: usize, rows: usize| all.at(base + col + head * hd, (rows, hd), len);
            kernels::matmul(at(0, keep), dsm, k, Acc::Overwrite, scale, false);
            kernels::matmul(at(d, n), dsm.t(), q, Acc::Overwrite, scale, false);
            kernels::matmul(at(2 * d, n), pm.t(), go, Acc::Overwrite, T::one(), false);
        }
    });
    // SAFETY: every (image, head) wrote its k and v columns and its first `keep` q rows, which
    // with the zeroed rest tile all of `dqkv`.
    unsafe { kernels::assume_init(dqkv) }
}

/// dO (R, N, D) of the attention of all (image, head) pairs for the tangent `dqkv` (R, N, 3D);
/// every query kept.
pub(crate) fn tangent<T: Real>(at: &SavedAttention<T>, dqkv: &[T], dm: Dims) -> Vec<T> {
    let Dims { r, n, d, heads, .. } = dm;
    let hd = dm.hd();
    let scale = T::from_f64(dm.scale());
    let mut o = kernels::uninit::<T>(r * n * d);
    let o_all = Dst::new(&mut o, 0, (0, 0), d);
    let len = r * n * d;
    (0..r * heads).into_par_iter().for_each(|i| {
        let (img, head) = (i / heads, i % heads);
        let [q, k, v] = head_mats(&at.qkv, dm, (img, head), n);
        let [dq, dk, dv] = head_mats(dqkv, dm, (img, head), n);
        let pi = head_probs(at, dm, (img, head));
        let pi = &pi[..];
        let mut ds = kernels::uninit::<T>(n * n);
        let ds_dst = Dst::new(&mut ds, 0, (n, n), n);
        // SAFETY: `ds` is this task's own; each task writes only its own head's columns of its
        // own image's rows of `o`, which outlives the parallel loop.
        unsafe {
            kernels::matmul(ds_dst, dq, k.t(), Acc::Overwrite, scale, false);
            kernels::matmul(ds_dst, q, dk.t(), Acc::Add, scale, false);
            let mut ds = kernels::assume_init(ds);
            // dP = P * (dS - rowsum(P * dS)): the softmax's Jacobian is symmetric.
            kernels::softmax_rows_backward(pi, &mut ds, n);
            let oi = o_all.at(img * n * d + head * hd, (n, hd), len);
            let pm = Mat::rows(pi, n, n);
            kernels::matmul(oi, Mat::rows(&ds, n, n), v, Acc::Overwrite, T::one(), false);
            kernels::matmul(oi, pm, dv, Acc::Add, T::one(), false);
        }
    });
    // SAFETY: every (image, head) wrote its own columns of its image's rows: all of `o`.
    unsafe { kernels::assume_init(o) }
}
