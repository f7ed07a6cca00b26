//! A block as one autograd node (a candle custom op, once for both backends): its forward hands
//! back the output the block's forward already computed, its backward is the block's backward.
use super::saved::Saved;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Storage, Tensor};

pub(super) struct Node(pub Saved);

impl Node {
    /// The saved output, taken: the forward runs once per node.
    fn take_out(&self) -> Result<Tensor> {
        match self.0.take_output() {
            Some(t) => Ok(t),
            None => candle_core::bail!("fused block: output already taken"),
        }
    }

    fn cpu_out(&self) -> Result<(CpuStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cpu(c) => Ok((c.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("fused block: saved output is not on the cpu"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_out(&self) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = self.take_out()?;
        let (storage, layout) = out.storage_and_layout();
        match &*storage {
            Storage::Cuda(c) => Ok((c.try_clone(layout)?, layout.shape().clone())),
            _ => candle_core::bail!("fused block: saved output is not on cuda"),
        }
    }
}

impl CustomOp1 for Node {
    fn name(&self) -> &'static str {
        "np-fused-block"
    }
    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.cpu_out()
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _s: &candle_core::CudaStorage,
        _l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda_out()
    }
    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.0.grads(grad)?.0)
    }
}

impl CustomOp2 for Node {
    fn name(&self) -> &'static str {
        "np-fused-block"
    }
    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.cpu_out()
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _s1: &candle_core::CudaStorage,
        _l1: &Layout,
        _s2: &candle_core::CudaStorage,
        _l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        self.cuda_out()
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _leaf: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.0.grads(grad)
    }
}
