#!/usr/bin/env bash
# Trains the Fashion-MNIST ViT shipped in assets/fashion-mnist/model, exports the sample images
# shipped next to it, and checks the shipped files with `neuronpath eval`.
#
#   scripts/train_embedded.sh            # train from scratch (~35 min on 2 CPU cores)
#   scripts/train_embedded.sh --resume   # continue an interrupted run from its last epoch
#
# Needs the Fashion-MNIST IDX files (Debian package `dataset-fashion-mnist`, or DATA=folder).
# Training checkpoints go to $OUT/checkpoint after every epoch; the model and its card
# (README.md, with the measured test accuracy) to $OUT/model, then into the assets.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-out/fashion-mnist}
ASSETS=assets/fashion-mnist
RESUME=()
if [[ "${1:-}" == "--resume" ]]; then RESUME=(--resume); fi

# Speed only, results are the same: candle's element-wise thread pool spin-waits, which on two
# shared cores made training 3x slower than running those ops on one thread (matmuls and
# neuronpath's own kernels still use rayon).
export CANDLE_NUM_THREADS=${CANDLE_NUM_THREADS:-1}
# Keep freed tensor memory in the process: returning it to the kernel after every op cost a
# fifth of the time in page faults.
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296

cargo build --release
BIN=target/release/neuronpath

# The recipe (also the defaults of `neuronpath train`; spelled out so the script stays valid if
# they change). The model card records the same command.
"$BIN" train --data "$DATA" --out "$OUT" --epochs 20 --batch 128 --lr 0.002 --wd 0.05 \
  --warmup-epochs 1 --seed 0 --patch-size 7 --hidden 64 --layers 6 --heads 4 --mlp-dim 256 \
  "${RESUME[@]}"

mkdir -p "$ASSETS/model"
for f in config.json model.safetensors preprocessor_config.json README.md; do
  cp "$OUT/model/$f" "$ASSETS/model/$f"
done

# The first 10 test images of each class as PNGs (samples/<class>/test-<index>.png) and
# classes.json: `neuronpath train --export-samples` trains nothing.
rm -rf "$ASSETS/samples"
"$BIN" train --data "$DATA" --export-samples "$ASSETS" --per-class 10

# The shipped files, loaded as users load them.
"$BIN" eval --model "$ASSETS/model" --data "$DATA"
