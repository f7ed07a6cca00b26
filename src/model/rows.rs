//! The chunked row loop of the CPU kernels: serial for small tensors, rayon-parallel for large.
use rayon::prelude::*;

/// Rows shorter than this are processed serially: thread hand-off costs more than the work.
pub(crate) const PAR_MIN: usize = 1 << 14;

/// Applies `f` to each chunk of `row` elements of `out`, in parallel when the tensor is large.
pub(crate) fn for_rows<T: Send, F>(out: &mut [T], row: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    if out.len() < PAR_MIN {
        out.chunks_mut(row).enumerate().for_each(|(i, r)| f(i, r));
    } else {
        out.par_chunks_mut(row)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
}
