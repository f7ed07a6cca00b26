// Fused element-wise kernels of the tensor backend's block (src/model/block_ops/tensor_steps.rs on CUDA), f32 and f64.
// Compiled to PTX by build.rs with the `cuda` feature; launched by src/model/cuda_kernels.rs.
//
// Row kernels (LayerNorm, its input gradient, softmax backward): one block per row (grid.x =
// rows), any blockDim that is a multiple of 32 (<= 1024), any row width; sums are accumulated in
// the element type, the LayerNorm variance in a second pass over (x - mean).
// GELU: a grid-stride loop over the elements.
#include <cstddef>

// The sum of v over the block, returned to every thread. `shm` holds 32 values.
template <typename T>
__device__ T block_sum(T v, T *shm) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // a previous call may still be reading shm
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? shm[lane] : T(0);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// mean and 1 / sqrt(var + eps) of the row xr (cols values), two passes.
template <typename T>
__device__ void row_stats(const T *xr, int cols, T eps, T *shm, T &mean, T &inv) {
  T s = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) s += xr[i];
  mean = block_sum(s, shm) / T(cols);
  T s2 = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const T d = xr[i] - mean;
    s2 += d * d;
  }
  inv = T(1) / sqrt(block_sum(s2, shm) / T(cols) + eps);
}

// y = (x - mean) * inv * w + b per row.
template <typename T>
__device__ void layer_norm(const T *x, const T *w, const T *b, T *y, int cols, T eps) {
  __shared__ T shm[32];
  const size_t off = (size_t)blockIdx.x * cols;
  const T *xr = x + off;
  T mean, inv;
  row_stats(xr, cols, eps, shm, mean, inv);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) y[off + i] = (xr[i] - mean) * inv * w[i] + b[i];
}

// dx = inv * (dxh - mean(dxh) - xh * mean(dxh * xh)), dxh = g * w, xh = (x - mean) * inv.
template <typename T>
__device__ void layer_norm_grad(const T *x, const T *g, const T *w, T *dx, int cols, T eps) {
  __shared__ T shm[32];
  const size_t off = (size_t)blockIdx.x * cols;
  const T *xr = x + off, *gr = g + off;
  T mean, inv;
  row_stats(xr, cols, eps, shm, mean, inv);
  T s1 = 0, s2 = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const T dxh = gr[i] * w[i];
    s1 += dxh;
    s2 += dxh * ((xr[i] - mean) * inv);
  }
  const T m1 = block_sum(s1, shm) / T(cols);
  const T m2 = block_sum(s2, shm) / T(cols);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const T xh = (xr[i] - mean) * inv;
    dx[off + i] = (gr[i] * w[i] - m1 - xh * m2) * inv;
  }
}

// ds = (g - sum(p * g)) * p * scale per row.
template <typename T>
__device__ void softmax_grad(const T *p, const T *g, T *ds, int cols, T scale) {
  __shared__ T shm[32];
  const size_t off = (size_t)blockIdx.x * cols;
  const T *pr = p + off, *gr = g + off;
  T s = 0;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) s += pr[i] * gr[i];
  const T dot = block_sum(s, shm);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) ds[off + i] = (gr[i] - dot) * pr[i] * scale;
}

__device__ float erf_(float v) { return erff(v); }
__device__ double erf_(double v) { return erf(v); }

// GELU of z into out[0..n]; with `deriv`, its derivative into out[n..2n]. tanh_kind: 0 erf, 1 tanh.
template <typename T>
__device__ void gelu(const T *z, T *out, size_t n, int tanh_kind, int deriv) {
  const T half = T(0.5);
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const T v = z[i];
    T a, d;
    if (tanh_kind) {
      const T c = T(0.7978845608028654);  // sqrt(2 / pi)
      const T v2 = v * v;
      const T t = tanh((v2 * T(0.044715) + T(1)) * v * c);
      a = v * half * (t + T(1));
      const T slope = (v2 * T(3.0 * 0.044715) + T(1)) * (half * c);
      d = (t + T(1)) * half + v * ((T(1) - t * t) * slope);
    } else {
      const T cdf = (erf_(v * T(0.7071067811865476)) + T(1)) * half;  // 1 / sqrt(2)
      a = v * cdf;
      d = cdf + v * (exp(v * v * T(-0.5)) * T(0.3989422804014327));  // 1 / sqrt(2 pi)
    }
    out[i] = a;
    if (deriv) out[n + i] = d;
  }
}

#define INSTANTIATE(T, S)                                                                          \
  extern "C" __global__ void np_layer_norm_##S(const T *x, const T *w, const T *b, T *y, int cols, \
                                               T eps) {                                            \
    layer_norm(x, w, b, y, cols, eps);                                                             \
  }                                                                                                \
  extern "C" __global__ void np_layer_norm_grad_##S(const T *x, const T *g, const T *w, T *dx,     \
                                                    int cols, T eps) {                             \
    layer_norm_grad(x, g, w, dx, cols, eps);                                                       \
  }                                                                                                \
  extern "C" __global__ void np_softmax_grad_##S(const T *p, const T *g, T *ds, int cols,          \
                                                 T scale) {                                        \
    softmax_grad(p, g, ds, cols, scale);                                                           \
  }                                                                                                \
  extern "C" __global__ void np_gelu_##S(const T *z, T *out, size_t n, int tanh_kind, int deriv) { \
    gelu(z, out, n, tanh_kind, deriv);                                                             \
  }

INSTANTIATE(float, f32)
INSTANTIATE(double, f64)
