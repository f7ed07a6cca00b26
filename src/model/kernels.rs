//! Matrix products on plain slices for the fused CPU block, straight onto the `gemm` crate that
//! candle's own CPU matmul calls.
//!
//! Why not `Tensor::matmul`: candle zero-fills every product's output, adds biases and residuals
//! in separate passes, and needs contiguous operands, so the attention heads had to be copied out
//! of the fused q/k/v projection and back. Here a product may read strided operands (one head of
//! the q/k/v rows), write a strided destination (one head's columns), accumulate into what the
//! destination already holds (bias + residual), and the attention products of all (row, head)
//! pairs run as parallel single-threaded GEMMs. ViT-B/16 attribution pass: see `neuronpath bench`.
use gemm::Parallelism;
use std::mem::MaybeUninit;

use crate::model::real::Real;
use crate::model::rows::for_rows;

/// A matrix inside a slice: element (i, j) at `off + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    data: &'a [T],
    off: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// Panics if the matrix reaches past the slice (a programming error, never a data error).
    pub fn new(
        data: &'a [T],
        off: usize,
        (rows, cols): (usize, usize),
        (rs, cs): (usize, usize),
    ) -> Self {
        assert!(
            rows == 0 || cols == 0 || off + (rows - 1) * rs + (cols - 1) * cs < data.len(),
            "matrix view out of bounds"
        );
        Mat {
            data,
            off,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// A contiguous row-major (rows, cols) matrix.
    pub fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix size");
        Mat::new(data, 0, (rows, cols), (cols, 1))
    }

    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn ptr(&self) -> *const T {
        self.data[self.off..].as_ptr()
    }
}

/// The destination of a product: a raw pointer because parallel tasks write disjoint, interleaved
/// parts of one buffer (one head's columns each).
#[derive(Clone, Copy)]
pub(crate) struct Dst<T> {
    ptr: *mut T,
    rows: usize,
    cols: usize,
    rs: usize,
}

// SAFETY: a `Dst` is only a pointer into a buffer that outlives the parallel region it is used
// in; the tasks sharing one write disjoint elements (see each use).
unsafe impl<T: Send> Send for Dst<T> {}
unsafe impl<T: Send> Sync for Dst<T> {}

impl<T> Dst<T> {
    /// The row-major (rows, cols) matrix at `off` with row stride `rs` in `buf`.
    pub fn new(
        buf: &mut [MaybeUninit<T>],
        off: usize,
        (rows, cols): (usize, usize),
        rs: usize,
    ) -> Self {
        assert!(
            rows == 0 || cols == 0 || off + (rows - 1) * rs + cols <= buf.len(),
            "destination out of bounds"
        );
        Dst {
            ptr: buf[off..].as_mut_ptr().cast(),
            rows,
            cols,
            rs,
        }
    }

    /// The same buffer, `off` elements further on (another head's columns or another image).
    pub fn at(self, off: usize, (rows, cols): (usize, usize), span: usize) -> Self {
        assert!(
            rows == 0 || cols == 0 || off + (rows - 1) * self.rs + cols <= span,
            "destination out of bounds"
        );
        // SAFETY: within the `span` elements the caller's buffer holds past `self.ptr`.
        Dst {
            ptr: unsafe { self.ptr.add(off) },
            rows,
            cols,
            ..self
        }
    }
}

/// How a product treats its destination.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Acc {
    /// dst = scale * a b (dst may be uninitialised).
    Overwrite,
    /// dst += scale * a b.
    Add,
}

/// dst = [dst +] scale * a b, with gemm's own threads when `parallel`.
///
/// # Safety
/// `dst` must point into a live buffer with room for its (rows, cols, rs) matrix, not read or
/// written by anyone else during the call; with `Acc::Add` it must be initialised.
pub(crate) unsafe fn matmul<T: Real>(
    dst: Dst<T>,
    a: Mat<T>,
    b: Mat<T>,
    acc: Acc,
    scale: T,
    parallel: bool,
) {
    assert!(
        a.cols == b.rows && dst.rows == a.rows && dst.cols == b.cols,
        "matmul shapes"
    );
    let par = if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    gemm::gemm(
        dst.rows,
        dst.cols,
        a.cols,
        dst.ptr,
        1,
        dst.rs as isize,
        acc == Acc::Add,
        a.ptr(),
        a.cs as isize,
        a.rs as isize,
        b.ptr(),
        b.cs as isize,
        b.rs as isize,
        T::one(),
        scale,
        false,
        false,
        false,
        par,
    );
}

/// A buffer of `n` elements whose every element the caller writes before reading.
pub(crate) fn uninit<T>(n: usize) -> Vec<MaybeUninit<T>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: MaybeUninit needs no initialisation.
    unsafe { v.set_len(n) };
    v
}

/// # Safety
/// Every element of `v` has been written.
pub(crate) unsafe fn assume_init<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    Vec::from_raw_parts(v.as_mut_ptr().cast(), v.len(), v.capacity())
}

/// `x W^T + b [+ residual]` for `x` (rows, in) and `w_t` = W^T (in, out): the bias (and
/// residual) fill the output, then one GEMM accumulates into it.
pub(crate) fn linear<T: Real>(
    x: &[T],
    rows: usize,
    w_t: &[T],
    bias: Option<&[T]>,
    residual: Option<&[T]>,
) -> Vec<T> {
    let inp = x.len() / rows.max(1);
    let out = w_t.len() / inp.max(1);
    assert_eq!(inp * out, w_t.len(), "linear weight size");
    let mut y = uninit::<T>(rows * out);
    let b = |j: usize| bias.map_or(T::zero(), |b| b[j]);
    match residual {
        Some(r) => {
            assert_eq!(r.len(), rows * out, "residual size");
            for_rows(&mut y, out, |i, row| {
                for (j, v) in row.iter_mut().enumerate() {
                    v.write(r[i * out + j] + b(j));
                }
            });
        }
        None => for_rows(&mut y, out, |_, row| {
            for (j, v) in row.iter_mut().enumerate() {
                v.write(b(j));
            }
        }),
    }
    let dst = Dst::new(&mut y, 0, (rows, out), out);
    // SAFETY: `y` is initialised above and owned here.
    unsafe {
        matmul(
            dst,
            Mat::rows(x, rows, inp),
            Mat::rows(w_t, inp, out),
            Acc::Add,
            T::one(),
            true,
        );
        assume_init(y)
    }
}

/// `g W` for `g` (rows, out) and `w` (out, in): the input gradient of a linear layer.
pub(crate) fn linear_backward<T: Real>(g: &[T], rows: usize, w: &[T]) -> Vec<T> {
    let out = g.len() / rows.max(1);
    let inp = w.len() / out.max(1);
    assert_eq!(inp * out, w.len(), "linear weight size");
    let mut y = uninit::<T>(rows * inp);
    let dst = Dst::new(&mut y, 0, (rows, inp), inp);
    // SAFETY: the product overwrites all of `y`, owned here.
    unsafe {
        matmul(
            dst,
            Mat::rows(g, rows, out),
            Mat::rows(w, out, inp),
            Acc::Overwrite,
            T::one(),
            true,
        );
        assume_init(y)
    }
}

/// Row-wise softmax in place.
pub(crate) fn softmax_rows<T: Real>(x: &mut [T], n: usize) {
    for row in x.chunks_mut(n) {
        let max = row
            .iter()
            .fold(T::neg_infinity(), |m, &v| num_traits::Float::max(m, v));
        let mut sum = T::zero();
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
    }
}

/// Row-wise softmax backward in place: g <- y * (g - sum(y * g)).
pub(crate) fn softmax_rows_backward<T: Real>(y: &[T], g: &mut [T], n: usize) {
    for (ys, gs) in y.chunks(n).zip(g.chunks_mut(n)) {
        let dot = ys
            .iter()
            .zip(gs.iter())
            .fold(T::zero(), |s, (&a, &b)| s + a * b);
        for (g, &a) in gs.iter_mut().zip(ys) {
            *g = a * (*g - dot);
        }
    }
}
