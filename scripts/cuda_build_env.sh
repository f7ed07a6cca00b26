# Source this file (bash) to build the `cuda` feature on a machine without a CUDA toolkit or GPU:
#
#   source scripts/cuda_build_env.sh
#   CARGO_TARGET_DIR=target-cuda cargo build --release --features cuda
#   CARGO_TARGET_DIR=target-cuda cargo test --release --features cuda --no-run
#
# It installs CUDA 13.0 from PyPI wheels into a virtual environment ($CUDA_VENV, default
# /tmp/cuda-venv; nothing system-wide): nvcc, headers, and the runtime libraries to link against.
# 13.0 on purpose: candle-kernels embeds PTX, which a driver only loads when it is at least as new
# as the nvcc that wrote it (driver 580 = CUDA 13.0); the binaries then need libcudart.so.13,
# libcublas.so.13, libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 (the wheels torch cu130
# installs, under site-packages/nvidia/cu13/lib) and the driver's libcuda.so.1 at run time.
#
# candle switches on cudarc's `dynamic-linking`, so the linker needs libcuda.so, which only a
# driver or a full toolkit ships: a stub with every driver symbol cudarc declares is made here
# (lib/stubs/libcuda.so, soname libcuda.so.1), like the toolkit's own stubs. CUDA_COMPUTE_CAP=90
# (H100/H200) spares the build nvidia-smi.

CUDA_VENV=${CUDA_VENV:-/tmp/cuda-venv}
_np_cuda_pkgs=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35
)
if [ ! -x "$CUDA_VENV/bin/python" ]; then
  python3 -m venv "$CUDA_VENV" || return 1
fi
_np_cuda_root=$("$CUDA_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
if [ ! -x "$_np_cuda_root/bin/nvcc" ] || [ ! -f "$_np_cuda_root/lib/libcublas.so.13" ]; then
  "$CUDA_VENV/bin/pip" install -q "${_np_cuda_pkgs[@]}" || return 1
fi

# Unversioned names for the linker.
for _np_lib in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
  ln -sf "lib$_np_lib" "$_np_cuda_root/lib/lib${_np_lib%.so.*}.so"
done

# libcuda.so stub from cudarc's driver bindings. Every function returns CUDA_ERROR_NO_DEVICE
# (100), so that the binaries also run here, on the CPU, with
# LD_LIBRARY_PATH=$CUDA_HOME/lib:$CUDA_HOME/lib/stubs (Device::new_cuda fails cleanly).
if [ ! -f "$_np_cuda_root/lib/stubs/libcuda.so.1" ]; then
  _np_cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -1)
  if [ -z "$_np_cudarc" ]; then
    echo "cudarc sources not found: run 'cargo fetch' first" >&2
    return 1
  fi
  mkdir -p "$_np_cuda_root/lib/stubs"
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$_np_cudarc/src/driver/sys/mod.rs" |
    awk '{print "int " $4 "(void) { return 100; }"}' | sort -u >"$_np_cuda_root/lib/stubs/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$_np_cuda_root/lib/stubs/libcuda.so" \
    "$_np_cuda_root/lib/stubs/libcuda_stub.c" || return 1
  ln -sf libcuda.so "$_np_cuda_root/lib/stubs/libcuda.so.1"
fi

export CUDA_ROOT=$_np_cuda_root CUDA_PATH=$_np_cuda_root CUDA_HOME=$_np_cuda_root
export PATH=$_np_cuda_root/bin:$PATH
export CUDA_COMPUTE_CAP=90
unset _np_cuda_pkgs _np_cuda_root _np_lib _np_cudarc
nvcc --version | tail -2
