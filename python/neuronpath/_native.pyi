"""Type stubs of the native module (Rust, PyO3). Use it through ``import neuronpath``."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

PathLike = Union[str, "os.PathLike[str]"]
#: A path, an (H, W, 3) / (H, W, 4) / (H, W) uint8 image, an (N, H, W, 3) stack, or a list of them.
Images = Union[PathLike, npt.NDArray[np.uint8], Sequence[Union[PathLike, npt.NDArray[np.uint8]]]]
#: Preprocessed images (N, 3, S, S), float32 or float64, any memory order; or `Images`.
Inputs = Union[npt.NDArray[np.floating[Any]], Images]
#: Neuron indices (N, L), one per layer and image, or (N, L, K) sets.
Paths = Union[npt.ArrayLike, Sequence[Sequence[int]], Sequence[Sequence[Sequence[int]]]]
Labels = Optional[Union[Sequence[int], npt.NDArray[np.integer[Any]]]]
Progress = Union[bool, Callable[[int, int], Any], None]

class Model:
    """A Vision Transformer loaded by neuronpath (immutable; safe to share between threads)."""

    @property
    def info(self) -> Dict[str, Any]:
        """What `neuronpath inspect --json` prints: ``model``, ``layout``, ``config``,
        ``class_names``, ``forward_gflop``, plus ``normalization`` and ``neuron_modules``."""
    @property
    def class_names(self) -> Optional[List[str]]: ...
    @property
    def layers(self) -> int:
        """Encoder blocks, i.e. the length of a path."""
    @property
    def neurons(self) -> int:
        """MLP neurons per layer."""
    @property
    def num_classes(self) -> int: ...
    @property
    def image_size(self) -> int: ...
    @property
    def dtype(self) -> str:
        """``"f32"`` or ``"f64"``."""
    def neuron_module(self, layer: int) -> str:
        """The checkpoint's name of the module whose output holds layer ``layer``'s neurons."""
    def preprocess(self, images: Images) -> npt.NDArray[np.float32]:
        """The paper's preprocessing: PIL-exact bilinear resize to the model's size, [0, 1],
        the model's normalisation. Returns (N, 3, S, S) float32. A missing or undecodable
        file raises ``OSError``; a bad array ``ValueError``."""
    def predict(self, x: Inputs, *, batch: int = 32) -> npt.NDArray[np.float64]:
        """Class probabilities (N, classes)."""
    def discover(
        self,
        x: Inputs,
        labels: Labels = None,
        *,
        methods: Optional[Union[str, Sequence[str]]] = None,
        steps: int = 20,
        top_k: int = 1,
        target: str = "label",
        compat: bool = False,
        memory_limit_mb: Optional[int] = None,
        progress: Progress = None,
        seed: int = 0,
        batch: int = 4,
        sources: Optional[Sequence[str]] = None,
    ) -> List[Dict[str, Any]]:
        """Neuron paths of every image: one dict per image with the fields of a
        ``neuronpath discover`` JSON Lines record (``index``, ``source``, ``label``,
        ``label_name``, ``target``, ``prediction``, ``prob_target``, ``prob_prediction``, and
        per method ``path``, ``sets`` (K > 1), ``jas`` {reference, additive, delta},
        ``prob_removed``, ``prob_enhanced``, ``margins`` (search), ``neurons`` (module names)).

        ``methods``: any of path, activation, influence, ig, random (default all but ig).
        ``target``: ``"label"`` (needs ``labels``) or ``"predicted"``. ``compat``: the authors'
        quirks. ``progress``: ``True``/``None`` prints to stderr with an ETA, ``False`` is
        silent, a callable gets ``(done, total)`` after each batch. The random baseline of image
        ``i`` is seeded by ``seed`` and ``i`` (as the CLI's by the input index). The GIL is
        released; Ctrl-C raises ``KeyboardInterrupt`` within one pass."""
    def jas(
        self,
        x: Inputs,
        paths: Paths,
        labels: Labels = None,
        *,
        steps: int = 20,
        compat: bool = False,
        memory_limit_mb: Optional[int] = None,
        batch: int = 4,
    ) -> List[Dict[str, float]]:
        """JAS of given neuron sets, per image ``{"reference", "additive", "delta"}``; F is the
        probability of ``labels`` (default: the clean prediction)."""
    def explain(
        self,
        x: Inputs,
        paths: Paths,
        labels: Labels = None,
        *,
        steps: int = 20,
        memory_limit_mb: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """Where in the image each path looks: integrated gradients of each path neuron, and of
        F through the path alone, w.r.t. the patch embeddings. Per image ``grid``, ``steps``,
        ``neurons`` (per layer ``layer``, ``unit``, ``value``, ``baseline``, ``patches``,
        ``delta``), ``path`` (the same for F) and ``maps`` (L + 1, G, G) float64."""
    def manipulate(
        self,
        x: Inputs,
        paths: Paths,
        labels: Labels = None,
        factors: Optional[Sequence[float]] = None,
        *,
        batch: int = 16,
    ) -> Dict[str, Any]:
        """The path neurons multiplied by each factor (default ``[0.0, 2.0]``: remove,
        enhance), all layers in one pass. Returns ``factors``, ``target`` (N,), ``clean`` (N,),
        ``prob`` (N, F), ``top1`` (N, F), ``probs`` (N, F, classes)."""

def load(
    path: PathLike,
    *,
    dtype: str = "f32",
    heads: Optional[int] = None,
    image_size: Optional[int] = None,
    gelu: Optional[str] = None,
    ln_eps: Optional[float] = None,
    normalize: Optional[str] = None,
    cuda: bool = False,
) -> Model:
    """Any checkpoint the CLI reads, detected from its contents: Google ViT ``.npz``, a Hugging
    Face folder, timm ``.safetensors``, an MAE ``.pth``. File problems raise ``OSError``
    (``FileNotFoundError`` when missing), bad options ``ValueError``."""

def from_state_dict(
    tensors: Mapping[str, npt.NDArray[np.floating[Any]]],
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
    """See ``neuronpath.from_state_dict`` (which also accepts torch tensors)."""

def embedded(*, dtype: str = "f32") -> Model:
    """The Fashion-MNIST ViT compiled into neuronpath."""

def embedded_samples() -> Tuple[List[npt.NDArray[np.uint8]], List[int], List[str]]:
    """The embedded model's 100 sample images (HxWx3 uint8), their labels and names."""
