"""neuronpath.torch on real timm / Hugging Face models: a path removed or enhanced with forward
hooks gives the probabilities of neuronpath's records (f32, 1e-5). Skipped without torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

import neuronpath
from conftest import LOADERS, read_safetensors

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from neuronpath.torch import edit_path, neuron_module, neuron_modules  # noqa: E402


@pytest.fixture(scope="module")
def timm_model():
    timm = pytest.importorskip("timm")
    from timm.models.vision_transformer import VisionTransformer

    del timm
    m = VisionTransformer(img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=4, mlp_ratio=2.0,
                          num_classes=7)
    sd = {k: torch.from_numpy(v) for k, v in read_safetensors(LOADERS / "timm_vit.safetensors").items()}
    m.load_state_dict(sd)
    return m.eval()


@pytest.fixture(scope="module")
def hf_model():
    transformers = pytest.importorskip("transformers")
    return transformers.ViTForImageClassification.from_pretrained(str(LOADERS / "hf_vit")).eval()


def probs(model, x):
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    logits = out.logits if hasattr(out, "logits") else out
    return logits.double().softmax(-1).numpy()


def check_records(torch_model, ours, x, records, methods, top_k=1):
    for i, r in enumerate(records):
        xi = x[i : i + 1]
        t = r["target"]
        assert abs(probs(torch_model, xi)[0, t] - r["prob_target"]) < 1e-5
        for m in methods:
            entry = r["methods"][m]
            if top_k > 1:
                assert entry["sets"] is not None and len(entry["sets"][0]) == top_k
            with edit_path(torch_model, entry, 0.0):
                removed = probs(torch_model, xi)[0, t]
            with edit_path(torch_model, entry, 2.0):
                enhanced = probs(torch_model, xi)[0, t]
            assert abs(removed - entry["prob_removed"]) < 1e-5, (m, removed, entry["prob_removed"])
            assert abs(enhanced - entry["prob_enhanced"]) < 1e-5, (m, enhanced, entry["prob_enhanced"])
    # The hooks are gone after the block.
    np.testing.assert_allclose(probs(torch_model, x), ours.predict(x), atol=1e-5)


@pytest.mark.parametrize("top_k", [1, 3])
def test_edit_path_timm(timm_model, loader_x, top_k):
    ours = neuronpath.from_state_dict(timm_model.state_dict(), {"num_heads": 4})
    assert ours.info["neuron_modules"] == neuron_modules(timm_model)
    methods = ["path", "activation", "random"]
    recs = ours.discover(loader_x, target="predicted", methods=methods, top_k=top_k, progress=False)
    check_records(timm_model, ours, loader_x, recs, methods, top_k)


def test_edit_path_hugging_face(hf_model, loader_x):
    ours = neuronpath.load(LOADERS / "hf_vit")
    # The folder's names (transformers 4's modules) find the live model's blocks, whatever its
    # transformers version calls them.
    for i, name in enumerate(ours.info["neuron_modules"]):
        assert name == f"vit.encoder.layer.{i}.intermediate"
        assert neuron_module(hf_model, name) is neuron_module(hf_model, i)
    live = neuronpath.from_state_dict(hf_model.state_dict(), hf_model.config.to_dict())
    assert live.info["neuron_modules"] == neuron_modules(hf_model)
    assert [neuron_module(hf_model, n) for n in live.info["neuron_modules"]] == [
        neuron_module(hf_model, i) for i in range(3)
    ]
    recs = ours.discover(loader_x, [2, 4], methods=["path", "influence"], progress=False)
    check_records(hf_model, ours, loader_x, recs, ["path", "influence"])


def test_from_state_dict_of_a_live_hf_model(hf_model, loader_x):
    built = neuronpath.from_state_dict(hf_model.state_dict(), hf_model.config.to_dict(), dtype="f64")
    loaded = neuronpath.load(LOADERS / "hf_vit", dtype="f64")
    np.testing.assert_array_equal(built.predict(loader_x), loaded.predict(loader_x))
    expected = json.loads((LOADERS / "expected.json").read_text())["hf_vit"]
    np.testing.assert_allclose(built.predict(loader_x), np.array(expected["probs"]), atol=1e-10)


def test_neuron_module_lookup(timm_model, hf_model):
    assert neuron_module(timm_model, 1) is timm_model.blocks[1].mlp.act
    assert neuron_module(timm_model, "blocks.1.mlp.act") is timm_model.blocks[1].mlp.act
    blocks = getattr(hf_model.vit, "layers", None) or hf_model.vit.encoder.layer
    expected = getattr(blocks[2], "intermediate", None) or blocks[2].mlp.activation_fn
    assert neuron_module(hf_model, 2) is expected
    with pytest.raises(ValueError, match="layer 3, but the model has 3 blocks"):
        neuron_module(timm_model, 3)
    with pytest.raises(ValueError, match="not a timm VisionTransformer"):
        neuron_module(torch.nn.Linear(2, 2), 0)


def test_edit_path_checks_and_cleans_up(timm_model, loader_x):
    with pytest.raises(ValueError, match="the path has 2 layers, the model 3"):
        with edit_path(timm_model, [1, 2], 0.0):
            pass
    before = probs(timm_model, loader_x)
    with pytest.raises(RuntimeError):
        with edit_path(timm_model, [1, 2, 3], 0.0):
            raise RuntimeError("user code fails inside the block")
    np.testing.assert_array_equal(probs(timm_model, loader_x), before)
