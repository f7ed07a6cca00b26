#!/usr/bin/env bash
# Builds the `cuda` feature on this machine (no GPU or CUDA toolkit needed: see
# scripts/cuda_build_env.sh) and packs the two binaries scripts/gpu_check.sh runs, stripped, into
# .gpu/np-cuda.tar.xz (GPU_DIR): `neuronpath` (release) and `cuda-tests` (tests/cuda.rs). They are
# ~55 MB each (candle's CUDA kernels, twice), ~9 MB packed together. The normal target folder is
# untouched: the build goes to target-cuda/ (CARGO_TARGET_DIR).
#
#   scripts/gpu_prepare.sh    # first build ~15 min on 2 cores (nvcc compiles candle's kernels)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=cuda_build_env.sh
source scripts/cuda_build_env.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-cuda}
DEST=${GPU_DIR:-$PWD/.gpu}

nice -n 10 cargo build --release --features cuda
# Every test target compiles with the feature; the CUDA one is the binary to carry.
tests=$(nice -n 10 cargo test --release --features cuda --no-run --message-format=json)
test_bin=$(printf '%s\n' "$tests" | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cuda" and m.get("executable"):
        print(m["executable"])
')
[ -n "$test_bin" ] || { echo "tests/cuda.rs binary not found" >&2; exit 1; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp "$CARGO_TARGET_DIR/release/neuronpath" "$STAGE/neuronpath"
cp "$test_bin" "$STAGE/cuda-tests"
strip "$STAGE/neuronpath" "$STAGE/cuda-tests"
for b in "$STAGE"/neuronpath "$STAGE"/cuda-tests; do
  glibc=$(objdump -T "$b" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
  cxx=$(objdump -T "$b" | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)
  echo "$(du -h "$b" | cut -f1) $b (needs $glibc ${cxx:-no libstdc++ symbols})"
  readelf -d "$b" | grep NEEDED | sed 's/.*\[\(.*\)\]/    \1/'
done
# One xz stream (64 MiB dictionary): the second binary's copy of the kernels costs nothing.
mkdir -p "$DEST"
rm -f "$DEST"/neuronpath "$DEST"/cuda-tests
tar -C "$STAGE" -cf - neuronpath cuda-tests | xz -9e -T1 >"$DEST/np-cuda.tar.xz"
(cd "$STAGE" && sha256sum neuronpath cuda-tests) >"$DEST/SHA256SUMS"
{ git rev-parse HEAD && git status --short; } >"$DEST/COMMIT" 2>/dev/null || true
ls -la "$DEST"
