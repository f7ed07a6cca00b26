"""Bad input raises ValueError, file problems OSError, both with a clear message."""

from __future__ import annotations

import numpy as np
import pytest

import neuronpath
from conftest import GOLDEN, LOADERS


@pytest.fixture(scope="module")
def model():
    return neuronpath.load(GOLDEN / "tiny_vit.npz", dtype="f64")


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        neuronpath.load(tmp_path / "nope.npz")


def test_bad_checkpoint_is_os_error(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(OSError, match="unknown checkpoint layout"):
        neuronpath.load(junk)
    with pytest.raises(OSError, match="unsafe pickle"):
        neuronpath.load(LOADERS / "malicious.pth")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dtype": "f16"}, 'dtype must be "f32" or "f64"'),
        ({"heads": 0}, "heads must be a positive integer"),
        ({"gelu": "relu"}, 'gelu must be "erf" or "tanh"'),
        ({"ln_eps": -1.0}, "ln_eps must be a positive number"),
        ({"normalize": "zscore"}, "normalize: unknown normalization"),
        ({"image_size": 20}, "image size 20 is not a positive multiple of the patch size 16"),
    ],
)
def test_bad_load_options(kwargs, message):
    with pytest.raises((ValueError, OSError), match=message):
        neuronpath.load(GOLDEN / "tiny_vit.npz", **kwargs)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((3, 32, 32), np.float32), r"shape \(N, 3, 32, 32\), not \[3, 32, 32\] \(one image: pass x\[None\]\)"),
        (np.zeros((1, 3, 16, 16), np.float32), r"shape \(N, 3, 32, 32\), not \[1, 3, 16, 16\]"),
        (np.zeros((1, 1, 32, 32), np.float32), r"shape \(N, 3, 32, 32\)"),
        (np.zeros((0, 3, 32, 32), np.float32), "holds no images"),
        (np.zeros((1, 3, 32, 32), np.int32), "x must be float32 or float64, not int32"),
        (np.full((1, 3, 32, 32), np.nan), "NaN or infinite"),
        (np.zeros((1, 3, 32, 32), np.complex64), "float32 or float64"),
        ("a string that is no file.png", "no such file|cannot read image"),
        (3.5, "images must be paths, uint8 arrays or a list of them, not float"),
    ],
)
def test_bad_images(model, x, message):
    with pytest.raises((ValueError, OSError), match=message):
        model.predict(x)


def test_bad_image_types(model, tmp_path):
    with pytest.raises(ValueError, match=r"image\[0\]: images must be file paths or uint8 arrays"):
        model.preprocess([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match=r"image\[0\]: shape \[8, 8, 2\]"):
        model.preprocess([np.zeros((8, 8, 2), np.uint8)])
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(OSError, match="cannot decode image"):
        model.preprocess(str(not_an_image))
    with pytest.raises(FileNotFoundError):
        model.preprocess([tmp_path / "missing.png"])


@pytest.mark.parametrize(
    "labels, message",
    [
        ([3], "1 labels for 2 images"),
        ([3, 10], r"labels\[1\] = 10, but the model has 10 classes \(0..9\)"),
        ([-1, 3], r"labels\[0\] = -1"),
        (["cat", 3], "labels must be a sequence of class indices"),
        (None, 'target="label" needs labels'),
    ],
)
def test_bad_labels(model, golden_x, labels, message):
    with pytest.raises(ValueError, match=message):
        model.discover(golden_x, labels, progress=False)


def test_numpy_labels_and_predicted_target(model, golden_x):
    a = model.discover(golden_x, np.array([3, 3]), methods="path", steps=4, progress=False)
    b = model.discover(golden_x, target="predicted", methods="path", steps=4, progress=False)
    assert [r["target"] for r in a] == [3, 3]
    assert [r["target"] for r in b] == [r["prediction"] for r in b]
    assert all(r["label"] is None for r in b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"methods": ["path", "lrp"]}, "unknown method `lrp` \\(known: path, activation"),
        ({"methods": []}, "methods is empty"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"top_k": 0}, r"top_k must be in 1..=64"),
        ({"top_k": 65}, r"top_k must be in 1..=64"),
        ({"target": "best"}, 'target must be "label" or "predicted"'),
        ({"batch": 0}, "batch must be at least 1"),
        ({"memory_limit_mb": 0}, "memory_limit_mb must be at least 1"),
        ({"sources": ["a"]}, "1 sources for 2 images"),
    ],
)
def test_bad_discover_options(model, golden_x, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model.discover(golden_x, [3, 3], progress=False, **kwargs)


@pytest.mark.parametrize(
    "paths, message",
    [
        ([[1, 2, 3]] * 2, r"paths must have shape \(2, 4\) .* not \[2, 3\]"),
        ([[1, 2, 3, 64]] * 2, r"paths\[0\] layer 3: neuron 64, but layers have 64 neurons"),
        ([[1, 2, 3, -1]] * 2, r"neuron -1"),
        ([[0.5, 2, 3, 4]] * 2, "integer neuron indices"),
        ([[[1, 1], [2, 3], [4, 5], [6, 7]]] * 2, "layer 0: neuron 1 twice"),
    ],
)
def test_bad_paths(model, golden_x, paths, message):
    with pytest.raises(ValueError, match=message):
        model.jas(golden_x, paths, [3, 3])
    with pytest.raises(ValueError, match=message):
        model.manipulate(golden_x, paths, [3, 3])


def test_bad_factors(model, golden_x):
    with pytest.raises(ValueError, match="factors must be a non-empty list of finite numbers"):
        model.manipulate(golden_x, [[0, 1, 2, 3]] * 2, factors=[float("inf")])


def test_neuron_module_range(model):
    assert model.neuron_module(3) == "Transformer/encoderblock_3/MlpBlock_3/Dense_0"
    with pytest.raises(ValueError, match="layer 4, but the model has 4 layers"):
        model.neuron_module(4)
