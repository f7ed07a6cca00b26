#!/usr/bin/env bash
# Compile-only check of the `cuda` feature on a machine without a GPU or CUDA toolkit: every
# target (library, binary, tests, examples) type-checks with `--features cuda`, and the build
# scripts run nvcc on the CUDA sources: candle's PTX kernels and our src/model/cuda_kernels.cu,
# so a kernel of ours that no longer compiles is caught too. Nothing is linked or run.
#
#   scripts/cuda_check.sh [REPO]     # REPO: the checkout to check [default: this script's]
#
# The toolchain comes from scripts/cuda_build_env.sh (CUDA 13.0 wheels in $CUDA_VENV, default
# /tmp/cuda-venv; installed once, then reused). The check builds into $CARGO_TARGET_DIR
# [default: REPO/target-cuda-check], never into REPO/target; several checkouts may share one
# CARGO_TARGET_DIR (cargo keeps each checkout's own crate apart and builds the dependencies once).
#
# candle-kernels also compiles its quantized-model kernels (GGUF matmuls, MoE: 15 heavy files,
# ~2 hours of nvcc on 2 busy cores) into a static library that only a linked binary uses, and a
# check links nothing; neuronpath never calls them. So here nvcc is wrapped: those 15 files become
# empty objects, everything else is compiled by the real nvcc. CUDA_CHECK_FULL=1 compiles them for
# real. Never build binaries into a check's target folder (the stubs would be linked: undefined
# symbols); scripts/gpu_prepare.sh builds into target-cuda/ with the real nvcc.
#
# First run ~10 min on 2 cores (candle's PTX kernels, the dependencies); then about a minute.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "${1:-$here/..}" && pwd)
cd "$repo"
[ -f Cargo.toml ] && grep -q '^name = "neuronpath"' Cargo.toml ||
  { echo "$repo: not a neuronpath checkout" >&2; exit 2; }
# The env script of this checkout when it has one, else the one beside this script.
env_script=$repo/scripts/cuda_build_env.sh
[ -f "$env_script" ] || env_script=$here/cuda_build_env.sh
# shellcheck source=cuda_build_env.sh
source "$env_script" >/dev/null
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target-cuda-check}
mkdir -p "$CARGO_TARGET_DIR"
if [ "${CUDA_CHECK_FULL:-0}" != 1 ]; then
  # A toolkit-shaped folder (cudaforge takes include/ from beside nvcc's bin/).
  fake=$CARGO_TARGET_DIR/nvcc-check
  mkdir -p "$fake/bin"
  ln -sfn "$CUDA_HOME/include" "$fake/include"
  ln -sfn "$CUDA_HOME/lib" "$fake/lib64"
  wrapper=$fake/bin/nvcc
  cat >"$wrapper" <<EOF
#!/usr/bin/env bash
# Written by scripts/cuda_check.sh: candle-kernels' statically linked quantized kernels become
# empty objects (a check links nothing); every other call goes to the real nvcc.
out=""; src=""; prev=""
for a in "\$@"; do
  [ "\$prev" = -o ] && out=\$a
  case "\$a" in src/moe/*.cu | src/mmq_gguf/*.cu | src/mmvq_gguf.cu | */src/moe/*.cu | */src/mmq_gguf/*.cu | */src/mmvq_gguf.cu) src=\$a ;; esac
  prev=\$a
done
if [ -n "\$src" ] && [ -n "\$out" ] && [[ "\$PWD/\$src" == *candle-kernels-* ]]; then
  exec cc -c -x c /dev/null -o "\$out"
fi
exec "$CUDA_HOME/bin/nvcc" "\$@"
EOF
  chmod +x "$wrapper"
  export NVCC=$wrapper
fi
echo "cuda check of $repo ($(git rev-parse --short HEAD 2>/dev/null || echo '?')) into $CARGO_TARGET_DIR, nvcc $(nvcc --version | grep -o 'release [0-9.]*')"
start=$(date +%s)
nice -n "${NICE:-10}" cargo check --release --features cuda --all-targets
echo "cuda check passed in $(($(date +%s) - start)) s"
