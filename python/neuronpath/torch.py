"""Neuron paths inside your own PyTorch model (timm or Hugging Face ViTs).

torch is imported only when these functions run, so ``import neuronpath`` never needs it.

>>> from neuronpath.torch import edit_path
>>> with edit_path(torch_model, record["methods"]["path"], 0.0):   # remove the path
...     probs = torch_model(x).softmax(-1)

A neuron of layer ``l`` is unit ``j`` of the output of the module :func:`neuron_module` returns
(the MLP hidden units after the activation: timm ``blocks.l.mlp.act``, Hugging Face
``vit.encoder.layer.l.intermediate``, or ``vit.layers.l.mlp.activation_fn`` in transformers 5),
on the CLS token, as in neuronpath's records.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator, List, Mapping, Sequence, Union

__all__ = ["edit_path", "neuron_module", "neuron_modules"]

Path = Union[Sequence[int], Sequence[Sequence[int]], Mapping[str, Any]]


def _activation(block: Any) -> Any:
    """(module, relative name) of a block's MLP hidden units after the activation."""
    if hasattr(block, "intermediate"):  # transformers 4 ViT / DeiT: act(dense(x))
        return block.intermediate, "intermediate"
    mlp = getattr(block, "mlp", None)
    for name in ("act", "activation_fn", "activation"):  # timm; transformers 5; older DINOv2
        if mlp is not None and hasattr(mlp, name):
            return getattr(mlp, name), f"mlp.{name}"
    raise ValueError(f"{type(block).__name__}: no MLP activation module found")


def _layers(model: Any) -> List[Any]:
    """The encoder blocks of a timm or Hugging Face ViT, with how each names its neurons."""
    if hasattr(model, "blocks"):  # timm VisionTransformer (and MAE / DeiT / DINOv2 in timm)
        return [(b.mlp.act, f"blocks.{i}.mlp.act") for i, b in enumerate(model.blocks)]
    for prefix in ("vit", "deit", "dinov2", "vision_model", ""):
        base = getattr(model, prefix, None) if prefix else model
        for path in ("encoder.layer", "encoder.layers", "layers"):
            blocks = base
            for part in path.split("."):
                blocks = getattr(blocks, part, None)
            if blocks is None or not hasattr(blocks, "__len__") or len(blocks) == 0:
                continue
            dot = f"{prefix}." if prefix else ""
            out = []
            for i, block in enumerate(blocks):
                module, rel = _activation(block)
                out.append((module, f"{dot}{path}.{i}.{rel}"))
            return out
    raise ValueError(
        f"{type(model).__name__}: not a timm VisionTransformer (`blocks`) nor a Hugging Face "
        "ViT/DeiT/DINOv2/CLIP vision model; pass the module name, e.g. neuron_module(model, "
        "'blocks.3.mlp.act')"
    )


def neuron_module(model: Any, layer: Union[int, str]) -> Any:
    """The module whose output holds layer ``layer``'s MLP neurons (after the activation).

    ``layer`` is a block index, or a module name as neuronpath records it (``Model.neuron_module``,
    the ``neurons`` of a record), e.g. ``"blocks.3.mlp.act"``; a Hugging Face name of the other
    transformers generation (files: ``vit.encoder.layer.3.intermediate``, transformers 5 models:
    ``vit.layers.3.mlp.activation_fn``) finds the same block.
    """
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            # A name from another transformers version (`vit.encoder.layer.3.intermediate` in the
            # files, `vit.layers.3.mlp.activation_fn` in transformers 5's models): same block.
            m = re.search(r"(?:^|\.)(?:layer|layers|blocks)\.(\d+)\.", layer)
            if m is None:
                raise
            layer = int(m.group(1))
    blocks = _layers(model)
    if not 0 <= layer < len(blocks):
        raise ValueError(f"layer {layer}, but the model has {len(blocks)} blocks")
    return blocks[layer][0]


def neuron_modules(model: Any) -> List[str]:
    """The names of the neuron modules of every layer, as neuronpath's records give them."""
    return [name for _, name in _layers(model)]


def _sets(path: Path) -> List[List[int]]:
    if isinstance(path, Mapping):
        if "sets" in path and path["sets"] is not None:
            path = path["sets"]
        elif "path" in path:
            path = path["path"]
        else:
            raise ValueError("a path dict needs a `path` (or `sets`) entry, as in a record's methods")
    sets = []
    for l, units in enumerate(path):
        if isinstance(units, (int,)) or hasattr(units, "__index__"):
            units = [units]
        units = [int(u) for u in units]
        if any(u < 0 for u in units):
            raise ValueError(f"layer {l}: negative neuron index in {units}")
        sets.append(units)
    return sets


@contextlib.contextmanager
def edit_path(model: Any, path: Path, factor: float, *, rows: str = "cls") -> Iterator[Any]:
    """Multiplies the path's neurons by ``factor`` (0 removes, 2 enhances) while the block runs.

    ``path`` is one neuron per layer (``record["methods"]["path"]["path"]``), K neurons per layer
    (a list of lists), or a record's method entry itself. Forward hooks on every layer's neuron
    module scale those units of the CLS row (``rows="patches"``: of every patch token, the MAE
    variant) of every image in the batch, all layers in the same forward pass, so a layer sees
    the values left by the edits upstream, as neuronpath's removal/enhancement does. The hooks
    are removed on exit, also after an exception.
    """
    if rows not in ("cls", "patches"):
        raise ValueError(f'rows must be "cls" or "patches", not {rows!r}')
    sets = _sets(path)
    blocks = _layers(model)
    if len(sets) != len(blocks):
        raise ValueError(f"the path has {len(sets)} layers, the model {len(blocks)}")
    prefix = int(getattr(model, "num_prefix_tokens", 2 if hasattr(model, "deit") else 1))
    handles = []

    def make_hook(units: List[int]):
        def hook(module, inputs, output):
            import torch

            if output.shape[-1] <= max(units):
                raise ValueError(f"neuron {max(units)}, but the layer has {output.shape[-1]}")
            idx = torch.as_tensor(units, device=output.device)
            out = output.clone()
            sel = slice(0, 1) if rows == "cls" else slice(prefix, None)
            part = out[:, sel]
            part[..., idx] = part[..., idx] * factor
            out[:, sel] = part
            return out

        return hook

    try:
        for (module, _), units in zip(blocks, sets):
            handles.append(module.register_forward_hook(make_hook(units)))
        yield model
    finally:
        for h in handles:
            h.remove()
