#!/usr/bin/env bash
# Compile-only check of the `cuda` feature on a machine without a GPU or CUDA toolkit: every
# target (library, binary, tests, examples) type-checks with `--features cuda`, and the build
# scripts run nvcc on the CUDA sources (candle's kernels, src/model/cuda_kernels.cu), so a
# kernel that no longer compiles is caught too. Nothing is linked or run.
#
#   scripts/cuda_check.sh [REPO]     # REPO: the checkout to check [default: this script's]
#
# The toolchain comes from scripts/cuda_build_env.sh (CUDA 13.0 wheels in $CUDA_VENV, default
# /tmp/cuda-venv; installed once, then reused). The check builds into $CARGO_TARGET_DIR
# [default: REPO/target-cuda], never into REPO/target; several checkouts may share one
# CARGO_TARGET_DIR (cargo keeps each checkout's own crate apart, the dependencies are built once).
# First run ~15-25 min on 2 cores (nvcc on candle's kernels); then seconds to a minute.
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
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target-cuda}
echo "cuda check of $repo ($(git rev-parse --short HEAD 2>/dev/null || echo '?')) into $CARGO_TARGET_DIR, nvcc $(nvcc --version | grep -o 'release [0-9.]*')"
start=$(date +%s)
nice -n "${NICE:-10}" cargo check --release --features cuda --all-targets
echo "cuda check passed in $(($(date +%s) - start)) s"
