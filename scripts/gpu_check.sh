#!/usr/bin/env bash
# Tests and benchmarks the CUDA build on a GPU machine that has no Rust toolchain, from binaries
# made by scripts/gpu_prepare.sh (release binary `neuronpath` and the test binary `cuda-tests`,
# stripped, packed in .gpu/np-cuda.tar.xz, or unpacked in that folder). Run from anywhere; it
# works in the repository root:
#
#   bash scripts/gpu_check.sh [BIN_DIR]      # BIN_DIR default .gpu; logs under $OUT (default gpu-out)
#
# Steps, each under `timeout`: nvidia-smi; library check (ldd); tests/cuda.rs (CUDA vs golden values
# and vs the CPU path); predict and discover on the embedded model, CUDA against CPU, and discover
# in the tf32 and bf16 modes; bench --cuda --size b16 with PyTorch on the GPU beside it, one image
# per search, then as many as the memory budget fills, with the precision rows (each mode's paths
# against f32's) and the 50,000-image estimate. About 3-5 minutes on an H100; no step runs past
# DEADLINE (default 420) seconds.
#
# The binaries need libcudart.so.13, libcublas.so.13 (and its libcublasLt.so.13), libcurand.so.10
# (CUDA 13, e.g. the nvidia-* wheels torch cu130 installs under
# site-packages/nvidia/cu13/lib, or a toolkit's lib64) and the driver's libcuda.so.1.
set -uo pipefail
export RUST_BACKTRACE=0 # stripped binaries: a backtrace would be all <unknown>
cd "$(dirname "$0")/.."
BIN=$(cd "${1:-.gpu}" && pwd)
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
TEE=$!
FAILS=()
T0=$(date +%s)
if [ ! -x "$BIN/neuronpath" ] && [ -f "$BIN/np-cuda.tar.xz" ]; then
  PACK=$BIN/np-cuda.tar.xz
  BIN=$(mktemp -d /tmp/np-gpu-bin.XXXX)
  tar -C "$BIN" -xJf "$PACK" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' "$PACK" "$BIN"
  chmod +x "$BIN"/*
  [ -f "$(dirname "$PACK")/SHA256SUMS" ] && (cd "$BIN" && sha256sum -c "$(dirname "$PACK")/SHA256SUMS")
  [ -f "$(dirname "$PACK")/COMMIT" ] && echo "built from: $(head -1 "$(dirname "$PACK")/COMMIT")"
fi

# step NAME TIMEOUT CMD...: runs CMD with its output in $OUT/NAME.log, shows the tail. No step
# runs past DEADLINE seconds after the start (default 420): a late step gets what is left.
DEADLINE=${DEADLINE:-420}
step() {
  local name=$1 limit=$2 start rc left
  shift 2
  echo
  left=$((DEADLINE - ($(date +%s) - T0)))
  if [ "$left" -lt 10 ]; then
    echo "=== $name: SKIPPED (deadline ${DEADLINE}s reached)"
    FAILS+=("$name(skipped)")
    return 1
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "=== $name (limit ${limit}s): $*"
  start=$(date +%s%N)
  timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  tail -n "${TAIL:-25}" "$OUT/$name.log" | cut -c1-220
  echo "=== $name: rc=$rc, $((($(date +%s%N) - start) / 1000000)) ms"
  [ "$rc" -eq 0 ] || FAILS+=("$name(rc=$rc)")
  return "$rc"
}

echo "=== gpu_check $(date -u +%FT%TZ) in $PWD, binaries in $BIN"
ls -la "$BIN"
step nvidia-smi 20 nvidia-smi

# --- Libraries ------------------------------------------------------------------------------
PY=${NEURONPATH_PYTHON:-python3}
SITE=$("$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)
echo "python: $PY; torch site-packages: ${SITE:-none}"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1
CANDIDATES=()
for d in "$SITE"/nvidia/cu13/lib "$SITE"/nvidia/*/lib /usr/local/cuda/lib64 \
  /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && CANDIDATES+=("$d")
done
LINKS=$(mktemp -d /tmp/np-cuda-libs.XXXX)
LIBPATH=$LINKS
for so in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do
  found=""
  for d in "${CANDIDATES[@]}"; do
    if [ -e "$d/$so" ]; then found=$d/$so; break; fi
  done
  if [ -z "$found" ]; then
    # A versioned file without the soname link (libcublas.so.13.1.0.3), here or anywhere else
    # (another Python's wheels, a toolkit elsewhere): link the soname to it.
    f=$( (for d in "${CANDIDATES[@]}"; do ls "$d/$so".* 2>/dev/null; done
      timeout 30 find / -xdev \( -path /proc -o -path /sys \) -prune -o \
        \( -name "$so" -o -name "$so.*" \) -print 2>/dev/null) | head -1)
    if [ -n "$f" ]; then ln -sf "$f" "$LINKS/$so"; found="$f (linked as $LINKS/$so)"; fi
  else
    case ":$LIBPATH:" in *":$(dirname "$found"):"*) ;; *) LIBPATH=$LIBPATH:$(dirname "$found") ;; esac
  fi
  echo "  $so -> ${found:-NOT FOUND}"
done
export LD_LIBRARY_PATH=$LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# The driver's libcuda.so.1 is normally in the loader's path; if not, look for it (never a stub).
if [[ "$(ldd "$BIN/neuronpath" 2>&1)" == *"libcuda.so.1 => not found"* ]]; then
  f=$(timeout 30 find / -xdev \( -path /proc -o -path /sys \) -prune -o -name 'libcuda.so.1' \
    -not -path '*stub*' -print 2>/dev/null | head -1)
  echo "  libcuda.so.1 not in the loader's path; found: ${f:-nothing}"
  [ -n "$f" ] && ln -sf "$f" "$LINKS/libcuda.so.1"
fi
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for b in neuronpath cuda-tests; do
  echo "ldd $b:"
  deps=$(ldd "$BIN/$b" 2>&1)
  grep -E 'cuda|cublas|curand|stdc|not found' <<<"$deps" | sed 's/^/  /'
  if [[ "$deps" == *"not found"* ]]; then FAILS+=("ldd-$b"); fi
done

# --- Correctness ----------------------------------------------------------------------------
export NEURONPATH_FIXTURES=$PWD/tests/fixtures
TAIL=40 step cuda-tests 180 "$BIN/cuda-tests" --nocapture --test-threads=1
if grep -q 'skipped: no CUDA device' "$OUT/cuda-tests.log"; then
  echo "!!! the CUDA tests found no GPU: they were skipped, not passed"
  FAILS+=("cuda-tests(skipped)")
fi

NP=$BIN/neuronpath
TAIL=3 step predict-cuda 60 sh -c '"$0" predict --cuda --json >"$1"' "$NP" "$OUT/predict-cuda.json"
TAIL=3 step predict-cpu 60 sh -c '"$0" predict --json >"$1"' "$NP" "$OUT/predict-cpu.json"
step predict-compare 30 "$PY" - "$OUT/predict-cuda.json" "$OUT/predict-cpu.json" <<'EOF'
import json, sys
def load(p):
    return json.load(open(p))["images"]
g, c = load(sys.argv[1]), load(sys.argv[2])
assert len(g) == len(c) == 100, (len(g), len(c))
err = max(abs(a - b) for x, y in zip(g, c) for a, b in zip(x["probs"], y["probs"]))
same = sum(x["prediction"] == y["prediction"] for x, y in zip(g, c))
acc = sum(x["prediction"] == x["label"] for x in g)
print(f"predict f32: {same}/100 same predictions, max |p_cuda - p_cpu| = {err:.2e}, cuda accuracy {acc}/100")
assert same == 100 and err < 1e-4
EOF

# discover on 10 embedded images (one per class), f64 on both devices, and f32 on CUDA for speed.
D=(discover --per-class 1 --no-report --methods path,activation,influence,ig,random)
rm -f "$OUT"/discover-*.jsonl
TAIL=4 step discover-cuda-f64 120 "$NP" "${D[@]}" --cuda --dtype f64 -o "$OUT/discover-cuda-f64.jsonl"
TAIL=4 step discover-cpu-f64 120 "$NP" "${D[@]}" --dtype f64 -o "$OUT/discover-cpu-f64.jsonl"
TAIL=4 step discover-cuda-f32 60 "$NP" "${D[@]}" --cuda --batch 10 -o "$OUT/discover-cuda-f32.jsonl"
step discover-compare 30 "$PY" - "$OUT/discover-cuda-f64.jsonl" "$OUT/discover-cpu-f64.jsonl" <<'EOF'
import json, sys
def load(p):
    recs = [json.loads(l) for l in open(p) if l.strip()]
    return {r["index"]: r for r in recs if r.get("kind") == "image"}
g, c = load(sys.argv[1]), load(sys.argv[2])
assert g.keys() == c.keys() and len(g) == 10, (sorted(g), sorted(c))
worst, paths = 0.0, 0
for i in g:
    for m, gm in g[i]["methods"].items():
        cm = c[i]["methods"][m]
        assert gm["path"] == cm["path"], (i, m, gm["path"], cm["path"])
        paths += 1
        # Absolute: these are sums of probability changes (order 1); a relative bound on a
        # near-zero convergence delta (~1e-7 for a random path) would magnify rounding.
        for k in ("reference", "additive", "delta"):
            worst = max(worst, abs(gm["jas"][k] - cm["jas"][k]))
        for k in ("prob_removed", "prob_enhanced"):
            worst = max(worst, abs(gm[k] - cm[k]))
print(f"discover f64: {paths} paths identical on CUDA and CPU, worst JAS/probability difference {worst:.2e}")
assert worst < 1e-12
EOF

# The reduced-precision modes end to end: the header records the mode (a resume in another
# precision is refused); bench below compares their paths with f32's.
for p in tf32 bf16; do
  TAIL=4 step "discover-cuda-$p" 60 "$NP" "${D[@]}" --cuda --precision "$p" -o "$OUT/discover-cuda-$p.jsonl" &&
    if ! grep -q "\"dtype\":\"$p\"" "$OUT/discover-cuda-$p.jsonl"; then
      echo "!!! discover-cuda-$p: the results header does not record dtype $p"
      FAILS+=("discover-cuda-$p(header)")
    fi
done

# --- Speed ------------------------------------------------------------------------------------
# One image per search: the per-image time beside PyTorch's.
TAIL=12 step bench-b16-cuda 300 env NEURONPATH_PYTHON="$PY" NEURONPATH_BENCH_TORCH="$PWD/scripts/bench_torch.py" \
  "$NP" bench --cuda --size b16 --min-secs 2 --memory-limit-mb 16384 --search-images 1 --no-precision
# Throughput when many images search together: as many as the default memory budget (half the
# free GPU memory) fills in one pass, the default of `bench --cuda` and `discover --cuda`; then
# the precision rows: each mode's paths against f32's on the embedded model and a random
# ViT-B/16, with its speed. JSON, summarised by the next step.
TAIL=3 step bench-b16-cuda-many 300 env NEURONPATH_PYTHON="$PY" NEURONPATH_BENCH_TORCH="$PWD/scripts/bench_torch.py" \
  "$NP" bench --cuda --size b16 --min-secs 1 --json
TAIL=30 step estimate 30 "$PY" - "$OUT/bench-b16-cuda-many.log" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])  # the JSON follows bench's progress lines
for r in d["neuronpath"]:
    print(f'{r["name"]:<56} {r["per_second"]:10.3f} {r["unit"]}/s')
for t in d.get("pytorch") or []:
    if t["name"].startswith("path search"):
        print(f'PyTorch {t["name"]:<48} {t["per_second"]:10.3f} images/s')
best = max(r["per_second"] for r in d["neuronpath"] if r["name"].startswith("path search"))
print(f"50,000 images (ImageNet validation) at {best:.3f} images/s in f32: {50000 / best / 3600:.2f} h on this GPU")
print("precision modes against f32 (identical paths; seconds include the clean pass):")
for a in d.get("precision") or []:
    rate = a["images"] / a["seconds"]
    rel = a["max_score_diff"] / a["max_score"] if a["max_score"] > 0 else 0.0
    est = f", 50,000 images ~{50000 / rate / 3600:.2f} h" if a["set"].startswith("random ViT") else ""
    print(f'  {a["set"]}: {a["precision"]}: {a["identical"]}/{a["images"]} identical, max |d score| {a["max_score_diff"]:.2e} ({rel:.1e} of the largest), {rate:.2f} images/s{est}')
assert d.get("precision"), "bench printed no precision rows"
EOF

echo
echo "=== done in $(($(date +%s) - T0)) s; logs in $OUT"
status=0
if [ ${#FAILS[@]} -gt 0 ]; then
  echo "FAILED: ${FAILS[*]}"
  status=1
else
  echo "ALL OK"
fi
exec >&- 2>&-
wait "$TEE" 2>/dev/null
exit "$status"
