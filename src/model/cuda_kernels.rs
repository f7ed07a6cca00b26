//! Fused CUDA kernels for the element-wise steps of the tensor backend's block
//! (`block_ops/tensor_steps.rs` on a GPU):
//! LayerNorm forward, its input gradient, GELU with its derivative, softmax backward; f32 and f64.
//! The kernels are `cuda_kernels.cu`, compiled to PTX by build.rs and loaded through candle's
//! CUDA device; each is a candle custom op without a backward (`apply_op*_no_bwd`) and without
//! a CPU implementation: `tensor_steps.rs` calls these only for tensors on a CUDA device.
use crate::model::config::Gelu;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{kernel_name, Map1, Map2, Map3, WrapErr};
use candle_core::{
    CpuStorage, CudaDevice, CudaStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result,
    Shape, Tensor, WithDType,
};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/cuda_kernels.ptx"));
const MODULE: &str = "neuronpath_kernels";

/// y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimension.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3_no_bwd(
        &weight.contiguous()?,
        &bias.contiguous()?,
        &LayerNormFwd(eps),
    )
}

/// dL/dx of [`layer_norm`] for the output gradient `g` (without the weight and bias gradients).
pub fn layer_norm_grad(x: &Tensor, g: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3_no_bwd(&g.contiguous()?, &weight.contiguous()?, &LayerNormGrad(eps))
}

/// GELU of `z` and, when asked for, its derivative, from one kernel.
pub fn gelu(kind: Gelu, z: &Tensor, derivative: bool) -> Result<(Tensor, Option<Tensor>)> {
    let op = GeluOp { kind, derivative };
    let out = z.contiguous()?.apply_op1_no_bwd(&op)?;
    if !derivative {
        return Ok((out, None));
    }
    Ok((out.get(0)?, Some(out.get(1)?)))
}

/// p * (g - sum(p * g)) * scale over the last dimension: the softmax backward for the
/// probabilities `p` and their gradient `g`, scaled.
pub fn softmax_grad(p: &Tensor, g: &Tensor, scale: f64) -> Result<Tensor> {
    p.contiguous()?
        .apply_op2_no_bwd(&g.contiguous()?, &SoftmaxGrad(scale))
}

fn check_dtype(dtype: DType, what: &str) -> Result<()> {
    match dtype {
        DType::F32 | DType::F64 => Ok(()),
        _ => candle_core::bail!("{what}: only f32 and f64 ({dtype:?})"),
    }
}

/// The contiguous part of `s` that `l` covers.
fn view<'a, T: DeviceRepr>(
    s: &'a CudaSlice<T>,
    l: &Layout,
    what: &str,
) -> Result<candle_core::cuda_backend::cudarc::driver::CudaView<'a, T>> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(s.slice(a..b)),
        None => candle_core::bail!("{what}: input is not contiguous"),
    }
}

/// (rows, width of the last dimension).
fn rows_cols(l: &Layout) -> Result<(usize, usize)> {
    let cols = l.dims().last().copied().unwrap_or(1);
    let rows = l.shape().elem_count().checked_div(cols).unwrap_or(0);
    if rows > i32::MAX as usize || cols > i32::MAX as usize {
        candle_core::bail!("cuda kernels: {rows} rows of {cols} too large")
    }
    Ok((rows, cols))
}

/// One block per row, 32 to 256 threads (a multiple of 32, as the kernels' reductions need).
fn row_config(rows: usize, cols: usize) -> LaunchConfig {
    let threads = match cols {
        0..=64 => 32,
        65..=512 => 128,
        _ => 256,
    };
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn no_cpu<T>(what: &str) -> Result<T> {
    candle_core::bail!("{what}: CUDA only")
}

struct LayerNormFwd(f64);
struct LayerNormGrad(f64);
struct SoftmaxGrad(f64);
struct GeluOp {
    kind: Gelu,
    derivative: bool,
}

/// The row kernel `root` on (a, b, c) -> out of a's shape, with the scalar `s` last.
struct Row3 {
    root: &'static str,
    s: f64,
}

impl Map3 for Row3 {
    fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
        &self,
        a: &CudaSlice<T>,
        la: &Layout,
        b: &CudaSlice<T>,
        lb: &Layout,
        c: &CudaSlice<T>,
        lc: &Layout,
        dev: &CudaDevice,
    ) -> Result<CudaSlice<T>> {
        let (rows, cols) = rows_cols(la)?;
        let (a, b, c) = (
            view(a, la, self.root)?,
            view(b, lb, self.root)?,
            view(c, lc, self.root)?,
        );
        // x (rows, cols) and, for the gradient, g (rows, cols) or weight / bias (cols).
        let b_len = lb.shape().elem_count();
        if (b_len != cols && b_len != rows * cols) || lc.shape().elem_count() != cols {
            candle_core::bail!(
                "{}: operand shapes {:?} {:?} {:?}",
                self.root,
                la.shape(),
                lb.shape(),
                lc.shape()
            )
        }
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * cols)? };
        if rows == 0 {
            return Ok(out);
        }
        let f = dev.get_or_load_custom_func(&kernel_name::<T>(self.root), MODULE, PTX)?;
        let mut builder = f.builder();
        builder.arg(&a);
        builder.arg(&b);
        builder.arg(&c);
        builder.arg(&out);
        candle_core::builder_arg!(builder, cols as i32, T::from_f64(self.s));
        // SAFETY: the kernel reads rows * cols of a (and of b when it is g), cols of the rest.
        unsafe { builder.launch(row_config(rows, cols)) }.w()?;
        Ok(out)
    }
}

impl CustomOp3 for LayerNormFwd {
    fn name(&self) -> &'static str {
        "np-cuda-layer-norm"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        w: &CudaStorage,
        lw: &Layout,
        b: &CudaStorage,
        lb: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        check_dtype(x.dtype(), self.name())?;
        if lb.shape().elem_count() != lw.shape().elem_count() {
            candle_core::bail!("{}: weight and bias differ in size", self.name())
        }
        let dev = x.device().clone();
        let op = Row3 {
            root: "np_layer_norm",
            s: self.0,
        };
        let slice = op.map(&x.slice, lx, &w.slice, lw, &b.slice, lb, &dev)?;
        Ok((CudaStorage { slice, device: dev }, lx.shape().clone()))
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "np-cuda-layer-norm-grad"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }
    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        lx: &Layout,
        g: &CudaStorage,
        lg: &Layout,
        w: &CudaStorage,
        lw: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        check_dtype(x.dtype(), self.name())?;
        if lx.shape() != lg.shape() {
            candle_core::bail!("{}: x {:?} vs g {:?}", self.name(), lx.shape(), lg.shape())
        }
        let dev = x.device().clone();
        let op = Row3 {
            root: "np_layer_norm_grad",
            s: self.0,
        };
        let slice = op.map(&x.slice, lx, &g.slice, lg, &w.slice, lw, &dev)?;
        Ok((CudaStorage { slice, device: dev }, lx.shape().clone()))
    }
}

impl Map2 for SoftmaxGrad {
    fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
        &self,
        p: &CudaSlice<T>,
        lp: &Layout,
        g: &CudaSlice<T>,
        lg: &Layout,
        dev: &CudaDevice,
    ) -> Result<CudaSlice<T>> {
        if lp.shape() != lg.shape() {
            candle_core::bail!("softmax grad: p {:?} vs g {:?}", lp.shape(), lg.shape())
        }
        let (rows, cols) = rows_cols(lp)?;
        let (p, g) = (view(p, lp, "softmax grad")?, view(g, lg, "softmax grad")?);
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * cols)? };
        if rows == 0 {
            return Ok(out);
        }
        let f = dev.get_or_load_custom_func(&kernel_name::<T>("np_softmax_grad"), MODULE, PTX)?;
        let mut builder = f.builder();
        builder.arg(&p);
        builder.arg(&g);
        builder.arg(&out);
        candle_core::builder_arg!(builder, cols as i32, T::from_f64(self.0));
        // SAFETY: p, g and out hold rows * cols elements.
        unsafe { builder.launch(row_config(rows, cols)) }.w()?;
        Ok(out)
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "np-cuda-softmax-grad"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }
    fn cuda_fwd(
        &self,
        p: &CudaStorage,
        lp: &Layout,
        g: &CudaStorage,
        lg: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        check_dtype(p.dtype(), self.name())?;
        let dev = p.device().clone();
        let slice = self.map(&p.slice, lp, &g.slice, lg, &dev)?;
        Ok((CudaStorage { slice, device: dev }, lp.shape().clone()))
    }
}

impl Map1 for GeluOp {
    fn f<T: DeviceRepr + WithDType + ValidAsZeroBits>(
        &self,
        z: &CudaSlice<T>,
        dev: &CudaDevice,
        lz: &Layout,
    ) -> Result<CudaSlice<T>> {
        let n = lz.shape().elem_count();
        let z = view(z, lz, "gelu")?;
        let parts = if self.derivative { 2 } else { 1 };
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(parts * n)? };
        if n == 0 {
            return Ok(out);
        }
        let f = dev.get_or_load_custom_func(&kernel_name::<T>("np_gelu"), MODULE, PTX)?;
        let mut builder = f.builder();
        builder.arg(&z);
        builder.arg(&out);
        let tanh_kind = matches!(self.kind, Gelu::Tanh) as i32;
        candle_core::builder_arg!(builder, n, tanh_kind, self.derivative as i32);
        // A grid-stride loop: at most 65535 blocks of 256.
        let blocks = n.div_ceil(256).min(65535) as u32;
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: z holds n elements, out parts * n.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(out)
    }
}

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "np-cuda-gelu"
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        no_cpu(self.name())
    }
    fn cuda_fwd(&self, z: &CudaStorage, lz: &Layout) -> Result<(CudaStorage, Shape)> {
        check_dtype(z.dtype(), self.name())?;
        let dev = z.device().clone();
        let slice = self.map(&z.slice, &dev, lz)?;
        let shape = if self.derivative {
            let mut dims = vec![2];
            dims.extend_from_slice(lz.dims());
            Shape::from(dims)
        } else {
            lz.shape().clone()
        };
        Ok((CudaStorage { slice, device: dev }, shape))
    }
}
