"""Find the neuron paths of a Hugging Face ViT with neuronpath, then remove and enhance them
inside the PyTorch model itself and compare with neuronpath's record.

    pip install ./python torch transformers
    python examples/python_edit_path.py                       # the committed tiny test ViT
    python examples/python_edit_path.py --model vit-base-patch16-224/ cat.jpg dog.jpg

Without images it runs the test inputs that go with the tiny model (tests/fixtures/loaders).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from transformers import ViTForImageClassification

import neuronpath
from neuronpath.torch import edit_path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "tests/fixtures/loaders/hf_vit",
                    help="a Hugging Face ViTForImageClassification folder")
    ap.add_argument("images", nargs="*", help="image files (default: the tiny model's test inputs)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    # The same checkpoint twice: neuronpath's engine, and the user's own PyTorch model.
    ours = neuronpath.load(args.model)
    theirs = ViTForImageClassification.from_pretrained(str(args.model)).eval()
    print(ours)

    x = ours.preprocess(args.images) if args.images else np.load(ROOT / "tests/fixtures/loaders/input.npy")
    records = ours.discover(x, target="predicted", methods=["path", "activation", "random"], steps=args.steps)

    def prob(xi: np.ndarray, target: int) -> float:
        with torch.no_grad():
            return theirs(torch.from_numpy(xi)).logits.double().softmax(-1)[0, target].item()

    print(f"\n{'image':<28} {'method':<11} {'F clean':>9} {'F removed (np / torch)':>24} "
          f"{'F enhanced (np / torch)':>25}")
    worst = 0.0
    for i, r in enumerate(records):
        xi, t = x[i : i + 1], r["target"]
        for method, m in r["methods"].items():
            with edit_path(theirs, m, 0.0):  # hooks on each layer's neuron module, CLS row
                removed = prob(xi, t)
            with edit_path(theirs, m, 2.0):
                enhanced = prob(xi, t)
            worst = max(worst, abs(removed - m["prob_removed"]), abs(enhanced - m["prob_enhanced"]))
            print(f"{r['source'][-28:]:<28} {method:<11} {r['prob_target']:>9.4f} "
                  f"{m['prob_removed']:>11.4f} / {removed:<10.4f} {m['prob_enhanced']:>11.4f} / {enhanced:<10.4f}")
        names = ", ".join(f"{n['module']}[{n['unit']}]" for n in r["methods"]["path"]["neurons"])
        print(f"  path of {r['source']}: {names}")
    print(f"\nlargest |neuronpath - PyTorch| over all edits: {worst:.2e}")


if __name__ == "__main__":
    main()
