//! The slice backend (CPU tensors): neuronpath's own kernels on plain slices, the GEMMs straight
//! onto the `gemm` crate (`kernels`), element-wise work in rayon-parallel row loops, edits in
//! place. The attention of all (image, head) pairs is in `slice_attention.rs`.
use super::backend::{Backend, Dims, Grid};
use super::slice_attention::{self, SavedAttention};
use crate::model::config::Gelu;
use crate::model::kernels;
use crate::model::ops::{self, LayerNorm, Linear};
use crate::model::real::Real;
use crate::model::rows::for_rows;
use candle_core::backend::BackendStorage;
use candle_core::{Device, Result, Shape, Storage, StorageRef, Tensor};
use std::marker::PhantomData;

/// The slice backend for element type `T`.
pub(crate) struct Slices<T>(PhantomData<T>);

/// A row buffer: computed here, or a tensor's storage read in place (the block's input and
/// the gradients handed in are not copied: a saved input shares the caller's storage).
pub(crate) enum SliceBuf<T> {
    Vec(Vec<T>),
    Tensor(Tensor),
}

/// A [`SliceBuf`]'s elements, read-locked while this lives for a tensor's.
enum View<'a, T> {
    Slice(&'a [T]),
    Host(StorageRef<'a>, (usize, usize)),
}

impl<T: Real> std::ops::Deref for View<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            View::Slice(s) => s,
            View::Host(guard, (a, b)) => {
                let Storage::Cpu(c) = &**guard else {
                    unreachable!("checked in SliceBuf::view")
                };
                &T::cpu_storage_as_slice(c).expect("dtype checked in SliceBuf::view")[*a..*b]
            }
        }
    }
}

impl<T: Real> SliceBuf<T> {
    fn view(&self) -> Result<View<'_, T>> {
        match self {
            SliceBuf::Vec(v) => Ok(View::Slice(v)),
            SliceBuf::Tensor(t) => {
                let (guard, layout) = t.storage_and_layout();
                let Some(range) = layout.contiguous_offsets() else {
                    candle_core::bail!("fused block: expected a contiguous tensor")
                };
                match &*guard {
                    Storage::Cpu(c) if c.dtype() == T::DTYPE => Ok(View::Host(guard, range)),
                    _ => candle_core::bail!("fused block: expected a cpu {:?} tensor", T::DTYPE),
                }
            }
        }
    }

    /// The elements, owned (a tensor's are copied: only buffers computed here are changed).
    fn into_vec(self) -> Result<Vec<T>> {
        match self {
            SliceBuf::Vec(v) => Ok(v),
            t => {
                let v = t.view()?.to_vec();
                Ok(v)
            }
        }
    }
}

/// A contiguous CPU tensor's elements, read-locked while the closure runs.
fn with_host<T: Real, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let (guard, layout) = t.storage_and_layout();
    let Some((a, b)) = layout.contiguous_offsets() else {
        candle_core::bail!("fused block: expected a contiguous tensor")
    };
    match &*guard {
        Storage::Cpu(c) if c.dtype() == T::DTYPE => {
            let all = T::cpu_storage_as_slice(c)?;
            Ok(f(&all[a..b]))
        }
        _ => candle_core::bail!("fused block: expected a cpu {:?} tensor", T::DTYPE),
    }
}

/// A layer's `W^T` (cached contiguous by `Linear`) and bias, read-locked, for `f`.
fn with_weights<T: Real, R>(
    l: &Linear,
    bias: bool,
    f: impl FnOnce(&[T], Option<&[T]>) -> R,
) -> Result<R> {
    let w_t = l.weight_t()?.contiguous()?;
    match (&l.bias, bias) {
        (Some(b), true) => {
            let b = b.contiguous()?;
            with_host(&w_t, |w| with_host(&b, |b| f(w, Some(b))))?
        }
        _ => with_host(&w_t, |w| f(w, None)),
    }
}

/// Applies `op(row value, given value)` to token rows `s..s+len` of every image of `a` with
/// `vals` (R, len, w).
fn zip_rows<T: Real>(
    a: &mut [T],
    g: Grid,
    (s, len): (usize, usize),
    vals: &[T],
    op: fn(T, T) -> T,
) {
    let w = g.w;
    for_rows(a, g.n * w, |r, img| {
        let v = &vals[r * len * w..(r + 1) * len * w];
        img[s * w..(s + len) * w]
            .iter_mut()
            .zip(v)
            .for_each(|(a, &b)| *a = op(*a, b));
    });
}

type Buf<T> = SliceBuf<T>;

fn vec<T>(v: Vec<T>) -> Result<SliceBuf<T>> {
    Ok(SliceBuf::Vec(v))
}

impl<T: Real> Backend for Slices<T> {
    type Buf = SliceBuf<T>;
    type Attn = SavedAttention<T>;

    fn load(t: &Tensor) -> Result<Buf<T>> {
        let t = t.contiguous()?;
        // Checked here once, so that every later view is known to be good.
        SliceBuf::<T>::Tensor(t.clone()).view()?;
        Ok(SliceBuf::Tensor(t))
    }

    fn store(b: Buf<T>, shape: Shape, device: &Device) -> Result<Tensor> {
        match b {
            SliceBuf::Vec(v) => Tensor::from_vec(v, shape, device),
            SliceBuf::Tensor(t) => t.reshape(shape),
        }
    }

    fn linear(
        x: &Buf<T>,
        g: Grid,
        l: &Linear,
        bias: bool,
        residual: Option<&Buf<T>>,
    ) -> Result<Buf<T>> {
        let res = residual.map(|r| r.view()).transpose()?;
        let x = x.view()?;
        vec(with_weights(l, bias, |w, b| {
            kernels::linear(&x, g.rows(), w, b, res.as_deref())
        })?)
    }

    fn linear_grad(g: &Buf<T>, grid: Grid, l: &Linear) -> Result<Buf<T>> {
        let w = l.weight.contiguous()?;
        let g = g.view()?;
        vec(with_host(&w, |w| {
            kernels::linear_backward(&g, grid.rows(), w)
        })?)
    }

    fn layer_norm(ln: &LayerNorm, x: &Buf<T>, _: Grid) -> Result<Buf<T>> {
        vec(ln.op()?.run(&x.view()?))
    }

    fn layer_norm_grad(ln: &LayerNorm, x: &Buf<T>, dy: &Buf<T>, _: Grid) -> Result<Buf<T>> {
        vec(ln.op()?.grad(&x.view()?, &dy.view()?))
    }

    fn layer_norm_jvp(ln: &LayerNorm, x: &Buf<T>, dx: &Buf<T>, _: Grid) -> Result<Buf<T>> {
        vec(ln.op()?.jvp(&x.view()?, &dx.view()?))
    }

    fn gelu(kind: Gelu, z: Buf<T>, _: Grid, derivative: bool) -> Result<(Buf<T>, Option<Buf<T>>)> {
        let mut z = z.into_vec()?;
        let der = ops::gelu_in_place(kind, &mut z, derivative);
        Ok((SliceBuf::Vec(z), der.map(SliceBuf::Vec)))
    }

    fn attention(qkv: Buf<T>, dm: Dims, keep_probs: bool) -> Result<(SavedAttention<T>, Buf<T>)> {
        let (saved, o) = slice_attention::forward(qkv.into_vec()?, dm, keep_probs);
        Ok((saved, SliceBuf::Vec(o)))
    }

    fn attention_grad(at: &SavedAttention<T>, d_o: &Buf<T>, dm: Dims) -> Result<Buf<T>> {
        vec(slice_attention::backward(at, &d_o.view()?, dm))
    }

    fn attention_jvp(at: &SavedAttention<T>, dqkv: &Buf<T>, dm: Dims) -> Result<Buf<T>> {
        if dm.keep != dm.n {
            candle_core::bail!("fused block tangent: needs every token row")
        }
        vec(slice_attention::tangent(at, &dqkv.view()?, dm))
    }

    fn take_rows(a: &Buf<T>, g: Grid, (s, len): (usize, usize)) -> Result<Buf<T>> {
        let w = g.w;
        vec(a
            .view()?
            .chunks(g.n * w)
            .flat_map(|img| img[s * w..(s + len) * w].iter().copied())
            .collect())
    }

    fn set_rows(a: Buf<T>, g: Grid, span: (usize, usize), vals: &Buf<T>) -> Result<Buf<T>> {
        let mut a = a.into_vec()?;
        zip_rows(&mut a, g, span, &vals.view()?, |_, b| b);
        vec(a)
    }

    fn add_rows(a: Buf<T>, g: Grid, span: (usize, usize), vals: &Buf<T>) -> Result<Buf<T>> {
        let mut a = a.into_vec()?;
        zip_rows(&mut a, g, span, &vals.view()?, |a, b| a + b);
        vec(a)
    }

    fn zero_rows(a: Buf<T>, g: Grid, (s, len): (usize, usize)) -> Result<Buf<T>> {
        let (mut a, w) = (a.into_vec()?, g.w);
        for_rows(&mut a, g.n * w, |_, img| {
            img[s * w..(s + len) * w].fill(T::zero())
        });
        vec(a)
    }

    fn scale_rows(a: Buf<T>, g: Grid, (s, len): (usize, usize), f: &Buf<T>) -> Result<Buf<T>> {
        let (mut a, w, f) = (a.into_vec()?, g.w, f.view()?);
        let f: &[T] = &f;
        // One factor row per image, or one for all.
        let per_image = f.len() != w;
        for_rows(&mut a, g.n * w, |r, img| {
            let fr = if per_image { &f[r * w..(r + 1) * w] } else { f };
            for row in img[s * w..(s + len) * w].chunks_mut(w) {
                row.iter_mut().zip(fr).for_each(|(v, &k)| *v *= k);
            }
        });
        vec(a)
    }

    fn mul(a: Buf<T>, b: &Buf<T>) -> Result<Buf<T>> {
        let mut a = a.into_vec()?;
        zip_chunks(&mut a, &b.view()?, |v, &k| *v *= k);
        vec(a)
    }

    fn add(a: Buf<T>, b: &Buf<T>) -> Result<Buf<T>> {
        let mut a = a.into_vec()?;
        zip_chunks(&mut a, &b.view()?, |v, &k| *v += k);
        vec(a)
    }

    fn add_columns(
        t: Buf<T>,
        g: Grid,
        l: &Linear,
        tok: usize,
        seeds: &[&[usize]],
    ) -> Result<Buf<T>> {
        let (mut t, d) = (t.into_vec()?, g.w);
        with_weights(l, false, |w_t: &[T], _| {
            for (row, units) in seeds.iter().enumerate() {
                let at = (row * g.n + tok) * d;
                let o = &mut t[at..at + d];
                for &p in units.iter() {
                    // Column p of the weight (D, M) = row p of its transpose (M, D).
                    let col = &w_t[p * d..(p + 1) * d];
                    o.iter_mut().zip(col).for_each(|(o, &w)| *o += w);
                }
            }
        })?;
        vec(t)
    }
}

/// `f(a[i], b[i])` for every element, in parallel chunks.
fn zip_chunks<T: Real>(a: &mut [T], b: &[T], f: impl Fn(&mut T, &T) + Sync + Send) {
    let len = 1 << 12;
    for_rows(a, len, |i, c| {
        c.iter_mut().zip(&b[i * len..]).for_each(|(a, b)| f(a, b))
    });
}
