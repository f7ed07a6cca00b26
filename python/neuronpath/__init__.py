"""neuronpath: influential neuron paths of Vision Transformers, from Python.

The ICLR 2025 method "Discovering Influential Neuron Path in Vision Transformers" (Wang et al.):
for an image and a class, the chain of one MLP neuron per layer that most drives the model's
decision, found by the layer-progressive search on the Joint Attribution Score (JAS), with the
paper's baselines. The computation is neuronpath's Rust library (the same code as the
``neuronpath`` command line, which this module never calls); arrays go in and out as numpy.

>>> import neuronpath
>>> model = neuronpath.embedded()                    # or neuronpath.load("vit-folder/")
>>> images, labels, _ = neuronpath.embedded_samples()
>>> x = model.preprocess(images[:2])                 # (2, 3, S, S) float32
>>> records = model.discover(x, labels[:2], methods=["path", "activation"], progress=False)
>>> len(records[0]["methods"]["path"]["path"]) == model.layers
True

Records are dicts with the fields of a ``neuronpath discover`` JSON Lines record;
:func:`to_dataframe` flattens them, :mod:`neuronpath.torch` applies a path to a PyTorch model.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Optional

# candle's element-wise CPU ops get one thread unless the user says otherwise: its pool's workers
# spin-wait and compete with the matmul threads (the CLI's setting too; see src/runtime.rs).
os.environ.setdefault("CANDLE_NUM_THREADS", "1")

from ._native import Model, __version__, embedded, embedded_samples, load
from ._native import from_state_dict as _from_state_dict

__all__ = [
    "Model",
    "__version__",
    "embedded",
    "embedded_samples",
    "from_state_dict",
    "load",
    "to_dataframe",
]


def _as_array(name: str, value: Any) -> Any:
    """A float32/float64 numpy array from a numpy array or a torch tensor; None to skip."""
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point() and str(value.dtype) not in ("torch.float32", "torch.float64"):
            value = value.float()  # half / bfloat16 have no exact numpy twin
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        return None  # integer buffers (position ids, counters) are not weights
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    return arr


def from_state_dict(
    tensors: Mapping[str, Any],
    config: Optional[Mapping[str, Any]] = None,
    *,
    dtype: str = "f32",
    heads: Optional[int] = None,
    image_size: Optional[int] = None,
    gelu: Optional[str] = None,
    ln_eps: Optional[float] = None,
    normalize: Optional[str] = None,
    name: str = "state_dict",
    cuda: bool = False,
) -> Model:
    """A model from tensors already in memory, with timm, Hugging Face or open_clip names.

    ``tensors`` is a state dict: ``model.state_dict()`` itself (torch tensors are moved to the
    CPU and converted; half precision becomes float32) or ``{k: v.detach().cpu().numpy() ...}``.
    Non-floating entries (integer buffers) are skipped.

    ``config`` says what the names cannot:

    * Hugging Face names (``vit.*`` / ``deit.*``, ``classifier.*``; the files' names and
      transformers 5's in-memory names ``vit.layers.N.*`` alike): the model's config,
      ``model.config.to_dict()`` (heads, LayerNorm epsilon, activation, class names); add
      ``image_mean`` / ``image_std`` to set the normalisation.
    * timm names (``blocks.*``): ``num_heads`` (default hidden/64), ``layer_norm_eps`` (1e-6),
      ``hidden_act`` (``gelu`` or ``gelu_tanh``), ``global_pool`` (``token`` or ``avg``, detected
      from ``fc_norm.*``), ``mean`` + ``std`` (ImageNet's by default), ``class_names``. timm's
      ``model.pretrained_cfg`` can be passed as is (keys it does not list are ignored).
    * open_clip names (a whole CLIP's ``visual.*``, or the image tower's own ``conv1``,
      ``transformer.resblocks.*``, ...): the contents of ``open_clip_config.json`` (its
      ``model_cfg`` and ``preprocess_cfg``); without ``model_cfg``, open_clip's defaults.

    Bad names, shapes or values raise ``ValueError`` naming the tensor.
    """
    if config is not None:
        import json

        # Through JSON: int keys (id2label) become strings, objects (torch dtypes) their names.
        config = json.loads(json.dumps(dict(config), default=str))
    arrays = {}
    for k, v in tensors.items():
        a = _as_array(k, v)
        if a is not None:
            arrays[k] = a
    return _from_state_dict(
        arrays,
        config,
        dtype=dtype,
        heads=heads,
        image_size=image_size,
        gelu=gelu,
        ln_eps=ln_eps,
        normalize=normalize,
        name=name,
        cuda=cuda,
    )


def to_dataframe(records: Iterable[Mapping[str, Any]]) -> Any:
    """One row per (image, method) of ``Model.discover`` records (or records read from a
    ``discover`` JSON Lines file), as a pandas DataFrame.

    Columns: ``index``, ``source``, ``label``, ``label_name``, ``target``, ``prediction``,
    ``prob_target``, ``prob_prediction``, ``method``, ``path`` (list), ``jas`` (the paper's
    reference form), ``jas_additive``, ``jas_delta``, ``prob_removed``, ``prob_enhanced``,
    ``margins`` (search only), ``sets`` (top-K runs), ``neurons`` (module names, when recorded).
    Records of failed images (with an ``error``) and header lines are skipped.
    """
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_dataframe needs pandas: pip install pandas") from e
    rows = []
    for r in records:
        if r.get("kind", "image") != "image" or "methods" not in r:
            continue
        for method, m in r["methods"].items():
            jas = m.get("jas", {})
            rows.append(
                {
                    "index": r.get("index"),
                    "source": r.get("source"),
                    "label": r.get("label"),
                    "label_name": r.get("label_name"),
                    "target": r.get("target"),
                    "prediction": r.get("prediction"),
                    "prob_target": r.get("prob_target"),
                    "prob_prediction": r.get("prob_prediction"),
                    "method": method,
                    "path": m.get("path"),
                    "jas": jas.get("reference"),
                    "jas_additive": jas.get("additive"),
                    "jas_delta": jas.get("delta"),
                    "prob_removed": m.get("prob_removed"),
                    "prob_enhanced": m.get("prob_enhanced"),
                    "margins": m.get("margins"),
                    "sets": m.get("sets"),
                    "neurons": m.get("neurons"),
                }
            )
    return pd.DataFrame(rows)
