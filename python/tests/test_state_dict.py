"""A model built with `from_state_dict` from a checkpoint's arrays equals the loaded checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

import neuronpath
from conftest import GOLDEN, LOADERS, read_safetensors


def assert_same_model(a: neuronpath.Model, b: neuronpath.Model, x: np.ndarray, labels):
    assert a.info["config"] == b.info["config"]
    assert a.class_names == b.class_names
    assert a.info["neuron_modules"] == b.info["neuron_modules"]
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    ra = a.discover(x, labels, steps=5, progress=False)
    rb = b.discover(x, labels, steps=5, progress=False)
    for r in ra + rb:
        r.pop("source")
    assert ra == rb


def test_timm_names(loader_x):
    arrays = read_safetensors(LOADERS / "timm_vit.safetensors")
    loaded = neuronpath.load(LOADERS / "timm_vit.safetensors", dtype="f64", heads=4)
    built = neuronpath.from_state_dict(arrays, {"num_heads": 4}, dtype="f64")
    assert_same_model(built, loaded, loader_x, [1, 5])
    assert built.neuron_module(2) == "blocks.2.mlp.act"


def test_hugging_face_names(loader_x):
    arrays = read_safetensors(LOADERS / "hf_vit" / "model.safetensors")
    config = json.loads((LOADERS / "hf_vit" / "config.json").read_text())
    loaded = neuronpath.load(LOADERS / "hf_vit", dtype="f64")
    built = neuronpath.from_state_dict(arrays, config, dtype="f64")
    assert_same_model(built, loaded, loader_x, [0, 6])
    assert built.class_names == [f"LABEL_{i}" for i in range(7)]
    assert built.neuron_module(0) == "vit.encoder.layer.0.intermediate"
    # And both equal the transformers model's own probabilities (made by the fixture script).
    expected = json.loads((LOADERS / "expected.json").read_text())["hf_vit"]
    np.testing.assert_allclose(built.predict(loader_x), np.array(expected["probs"]), rtol=0, atol=1e-10)


def test_hugging_face_deit_names(loader_x):
    arrays = read_safetensors(LOADERS / "hf_deit" / "model.safetensors")
    config = json.loads((LOADERS / "hf_deit" / "config.json").read_text())
    loaded = neuronpath.load(LOADERS / "hf_deit", dtype="f64")
    built = neuronpath.from_state_dict(arrays, config, dtype="f64")
    assert_same_model(built, loaded, loader_x, [0, 1])
    assert built.neuron_module(1) == "deit.encoder.layer.1.intermediate"


def test_mae_state_dict_mean_pooling(golden_x):
    """timm names with fc_norm: mean pooling over patch tokens (the MAE variant)."""
    with np.load(GOLDEN / "tiny_mae_state_dict.npz") as f:
        arrays = {k: f[k] for k in f.files}
    loaded = neuronpath.load(GOLDEN / "tiny_mae_state_dict.npz", dtype="f64", heads=4)
    built = neuronpath.from_state_dict(arrays, {"num_heads": 4, "global_pool": "avg"}, dtype="f64")
    assert built.info["config"]["pool"] == "mean_patch"
    assert loaded.info["layout"] == "timm_npz" and loaded.neuron_module(0) == "blocks.0.mlp.act"
    assert_same_model(built, loaded, golden_x, [3, 3])


def test_f32_state_dict_into_f64_model_is_exact(loader_x):
    arrays = read_safetensors(LOADERS / "timm_vit.safetensors")
    as64 = {k: v.astype(np.float64) for k, v in arrays.items()}
    a = neuronpath.from_state_dict(arrays, {"num_heads": 4}, dtype="f64")
    b = neuronpath.from_state_dict(as64, {"num_heads": 4}, dtype="f64")
    np.testing.assert_array_equal(a.predict(loader_x), b.predict(loader_x))


def test_config_sets_normalisation_and_names():
    arrays = read_safetensors(LOADERS / "timm_vit.safetensors")
    m = neuronpath.from_state_dict(
        arrays,
        {"num_heads": 4, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "class_names": list("abcdefg"),
         "url": "ignored", "input_size": [3, 32, 32]},
    )
    assert m.info["normalization"] == "half"
    assert m.class_names == list("abcdefg")


def test_integer_buffers_are_skipped(loader_x):
    arrays = read_safetensors(LOADERS / "timm_vit.safetensors")
    arrays["some_buffer"] = np.arange(4)
    m = neuronpath.from_state_dict(arrays, {"num_heads": 4})
    assert m.predict(loader_x).shape == (2, 7)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("blocks.1.mlp.fc2.bias"), "missing tensor `blocks.1.mlp.fc2.bias`"),
        (lambda d: d.__setitem__("blocks.1.mlp.fc2.weight", np.zeros((24, 5), np.float32)),
         "`blocks.1.mlp.fc2.weight` has shape [24, 5], expected [24, 48]"),
        (lambda d: d["head.bias"].__setitem__(0, np.nan), 'tensors["head.bias"] contains NaN'),
    ],
)
def test_bad_tensors_raise_value_error(change, message):
    arrays = read_safetensors(LOADERS / "timm_vit.safetensors")
    change(arrays)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        neuronpath.from_state_dict(arrays, {"num_heads": 4})


@pytest.mark.parametrize(
    "config, message",
    [
        ({"num_heads": 0}, "`num_heads` must be a positive integer"),
        ({"num_heads": 5}, "cannot split hidden size 24 into 5 heads"),
        ({"num_heads": 4, "global_pool": "max"}, "`global_pool` `max` is not supported"),
        ({"num_heads": 4, "mean": [0.5, 0.5]}, "`mean` must be three numbers"),
        ({"num_heads": 4, "std": [0.5, 0.5, 0.5]}, "a std without a mean"),
        ({"num_heads": 4, "hidden_act": "relu"}, "`hidden_act` `relu` is not supported"),
    ],
)
def test_bad_config_raises_value_error(config, message):
    arrays = read_safetensors(LOADERS / "timm_vit.safetensors")
    with pytest.raises(ValueError, match=message):
        neuronpath.from_state_dict(arrays, config)


def test_unknown_names_raise_value_error():
    with pytest.raises(ValueError, match="neither timm .* nor Hugging Face"):
        neuronpath.from_state_dict({"encoder.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match=r'tensors\["a"\] must be a numpy array'):
        neuronpath._native.from_state_dict({"a": [1.0, 2.0]})
