#!/usr/bin/env python3
"""Generate tiny ViT checkpoint fixtures for the neuronpath Rust loaders.

Writes into tests/fixtures/loaders/ (all tiny, well under 1 MB in total):

  hf_vit/               HF transformers ViTForImageClassification folder
                        (config.json + model.safetensors, classic
                        `vit.encoder.layer.{i}.attention.attention.query...` keys)
  hf_deit/              HF DeiTForImageClassification folder (plain, non-distilled
                        head; note HF DeiT still carries a distillation token and a
                        (1, N+2, D) position embedding), own random weights
  timm_vit.safetensors  the hf_vit weights converted to a timm VisionTransformer
                        state dict (fused attn.qkv)
  google_vit.npz        the hf_vit weights in the original Google ViT .npz layout
                        (plain np.savez, float32); reference uses LayerNorm eps 1e-6
  mae_vit.pth           MAE-style fine-tuned checkpoint, torch.save({'model': sd}),
                        global average pooling over patch tokens + fc_norm, eps 1e-6,
                        own random weights
  malicious.pth         zip torch checkpoint whose pickle references posix.system;
                        loaders must refuse it without unpickling it
  input.npy             (2, 3, 32, 32) float32 NCHW inputs
  expected.json         per-fixture config + float64 reference logits/probs

Dims for every model: image 32, patch 8, channels 3, hidden 24, 3 layers, 4 heads,
MLP 48, 7 classes, exact (erf) GELU.

Everything is seeded and deterministic. Reference logits are computed by the
PyTorch models (transformers / timm) cast to float64; they are also cross-checked
against an independent numpy float64 forward pass.

This script is committed for reproducibility only: CI never runs it (the
generated files are committed). To regenerate:

    python3 -m venv /tmp/fixvenv
    /tmp/fixvenv/bin/pip install -r scripts/requirements-fixtures.txt
    /tmp/fixvenv/bin/python scripts/make_loader_fixtures.py
"""

from __future__ import annotations

import inspect
import io
import json
import os
import pickletools
import shutil
import sys
import tempfile
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import transformers
import timm
import safetensors
from safetensors.numpy import load_file as st_load_np
from safetensors.torch import save_file as st_save_torch
from timm.models.vision_transformer import VisionTransformer
from transformers import ViTConfig, ViTForImageClassification

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "loaders"

IMAGE = 32
PATCH = 8
CHANNELS = 3
HIDDEN = 24
LAYERS = 3
HEADS = 4
MLP = 48
CLASSES = 7
N_IMAGES = 2
HEAD_DIM = HIDDEN // HEADS
N_PATCHES = (IMAGE // PATCH) ** 2

SEED_HF_VIT = 1001
SEED_DEIT = 2002
SEED_MAE = 3003
SEED_INPUT = 4004

W_STD = 0.2  # std of every weight / bias / token / pos-embed
LN_STD = 0.1  # LayerNorm scales are 1 + LN_STD * randn


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def max_abs(a, b) -> float:
    a = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, np.float64)
    b = b.detach().cpu().double().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, np.float64)
    check(a.shape == b.shape, f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b)))


def random_params(shapes: dict[str, tuple], seed: int, is_ln_scale) -> dict[str, np.ndarray]:
    """Deterministic float32 params; keys are drawn in sorted order."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in sorted(shapes):
        z = rng.standard_normal(shapes[k])
        v = 1.0 + LN_STD * z if is_ln_scale(k) else W_STD * z
        out[k] = np.ascontiguousarray(v.astype(np.float32))
    return out


def set_ln_eps(model: nn.Module, eps: float) -> None:
    n = 0
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps
            n += 1
    check(n > 0, "no LayerNorm found")


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


@torch.no_grad()
def run64(model: nn.Module, x: np.ndarray, fn=None) -> np.ndarray:
    """Forward a deep copy of `model` in float64; returns numpy logits."""
    import copy

    m = copy.deepcopy(model).double().eval()
    xt = torch.from_numpy(x).double()
    y = fn(m, xt) if fn is not None else m(xt)
    if hasattr(y, "logits"):
        y = y.logits
    return y.numpy().astype(np.float64)


@torch.no_grad()
def run32(model: nn.Module, x: np.ndarray) -> np.ndarray:
    y = model.float().eval()(torch.from_numpy(x).float())
    if hasattr(y, "logits"):
        y = y.logits
    return y.numpy().astype(np.float64)


def pickle_globals(pth: Path) -> tuple[list[str], list[str]]:
    """(zip member names, GLOBAL/STACK_GLOBAL references in the data.pkl) without unpickling."""
    with zipfile.ZipFile(pth) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        check(len(pkl) == 1, f"{pth}: expected one data.pkl, got {pkl}")
        data = z.read(pkl[0])
    globs, strings = [], []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL":
            globs.append(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            globs.append(f"{strings[-2]}.{strings[-1]}")
    return names, sorted(set(globs))


# ----------------------------------------------------------------------------
# independent numpy float64 reference forward (canonical = timm naming)
# ----------------------------------------------------------------------------


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x):
    from math import erf, sqrt

    verf = np.vectorize(erf)
    return 0.5 * x * (1.0 + verf(x / sqrt(2.0)))


def numpy_forward(sd: dict, x: np.ndarray, eps: float, pooling: str, prefix_tokens=("cls_token",)) -> np.ndarray:
    """pooling: 'cls' | 'avg_fc_norm' | 'avg_fc_norm_twice'. sd in timm naming."""
    g = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = np.asarray(x, np.float64)
    B = x.shape[0]
    w = g["patch_embed.proj.weight"]  # (D, C, P, P)
    gh = IMAGE // PATCH
    # patches: (B, gh*gw, C*P*P) in row-major patch order, channel-major inside
    p = x.reshape(B, CHANNELS, gh, PATCH, gh, PATCH).transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gh, -1)
    t = p @ w.reshape(HIDDEN, -1).T + g["patch_embed.proj.bias"]
    pre = [np.broadcast_to(g[k], (B, 1, HIDDEN)) for k in prefix_tokens]
    t = np.concatenate(pre + [t], axis=1) + g["pos_embed"]
    n_pre = len(prefix_tokens)
    for i in range(LAYERS):
        b = f"blocks.{i}."
        h = _ln(t, g[b + "norm1.weight"], g[b + "norm1.bias"], eps)
        qkv = h @ g[b + "attn.qkv.weight"].T + g[b + "attn.qkv.bias"]
        S = t.shape[1]
        qkv = qkv.reshape(B, S, 3, HEADS, HEAD_DIM).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HEAD_DIM)
        a = softmax(a)
        o = (a @ v).transpose(0, 2, 1, 3).reshape(B, S, HIDDEN)
        t = t + o @ g[b + "attn.proj.weight"].T + g[b + "attn.proj.bias"]
        h = _ln(t, g[b + "norm2.weight"], g[b + "norm2.bias"], eps)
        h = _gelu(h @ g[b + "mlp.fc1.weight"].T + g[b + "mlp.fc1.bias"])
        t = t + h @ g[b + "mlp.fc2.weight"].T + g[b + "mlp.fc2.bias"]
    if pooling == "cls":
        f = _ln(t, g["norm.weight"], g["norm.bias"], eps)[:, 0]
    else:
        f = t[:, n_pre:].mean(axis=1)
        reps = 2 if pooling == "avg_fc_norm_twice" else 1
        for _ in range(reps):
            f = _ln(f, g["fc_norm.weight"], g["fc_norm.bias"], eps)
    return f @ g["head.weight"].T + g["head.bias"]


# ----------------------------------------------------------------------------
# layouts
# ----------------------------------------------------------------------------


def hf_shapes(prefix: str, deit: bool) -> dict[str, tuple]:
    s = {
        f"{prefix}.embeddings.cls_token": (1, 1, HIDDEN),
        f"{prefix}.embeddings.position_embeddings": (1, N_PATCHES + (2 if deit else 1), HIDDEN),
        f"{prefix}.embeddings.patch_embeddings.projection.weight": (HIDDEN, CHANNELS, PATCH, PATCH),
        f"{prefix}.embeddings.patch_embeddings.projection.bias": (HIDDEN,),
        f"{prefix}.layernorm.weight": (HIDDEN,),
        f"{prefix}.layernorm.bias": (HIDDEN,),
        "classifier.weight": (CLASSES, HIDDEN),
        "classifier.bias": (CLASSES,),
    }
    if deit:
        s[f"{prefix}.embeddings.distillation_token"] = (1, 1, HIDDEN)
    for i in range(LAYERS):
        L = f"{prefix}.encoder.layer.{i}."
        for n in ("query", "key", "value"):
            s[L + f"attention.attention.{n}.weight"] = (HIDDEN, HIDDEN)
            s[L + f"attention.attention.{n}.bias"] = (HIDDEN,)
        s[L + "attention.output.dense.weight"] = (HIDDEN, HIDDEN)
        s[L + "attention.output.dense.bias"] = (HIDDEN,)
        s[L + "intermediate.dense.weight"] = (MLP, HIDDEN)
        s[L + "intermediate.dense.bias"] = (MLP,)
        s[L + "output.dense.weight"] = (HIDDEN, MLP)
        s[L + "output.dense.bias"] = (HIDDEN,)
        for n in ("layernorm_before", "layernorm_after"):
            s[L + f"{n}.weight"] = (HIDDEN,)
            s[L + f"{n}.bias"] = (HIDDEN,)
    return s


def hf_is_ln_scale(k: str) -> bool:
    return "layernorm" in k and k.endswith(".weight")


def hf_to_timm(hf: dict, prefix: str = "vit") -> dict[str, np.ndarray]:
    t = {
        "cls_token": hf[f"{prefix}.embeddings.cls_token"],
        "pos_embed": hf[f"{prefix}.embeddings.position_embeddings"],
        "patch_embed.proj.weight": hf[f"{prefix}.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf[f"{prefix}.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf[f"{prefix}.layernorm.weight"],
        "norm.bias": hf[f"{prefix}.layernorm.bias"],
        "head.weight": hf["classifier.weight"],
        "head.bias": hf["classifier.bias"],
    }
    for i in range(LAYERS):
        L = f"{prefix}.encoder.layer.{i}."
        b = f"blocks.{i}."
        a = L + "attention.attention."
        t[b + "norm1.weight"] = hf[L + "layernorm_before.weight"]
        t[b + "norm1.bias"] = hf[L + "layernorm_before.bias"]
        t[b + "attn.qkv.weight"] = np.concatenate([hf[a + n + ".weight"] for n in ("query", "key", "value")], 0)
        t[b + "attn.qkv.bias"] = np.concatenate([hf[a + n + ".bias"] for n in ("query", "key", "value")], 0)
        t[b + "attn.proj.weight"] = hf[L + "attention.output.dense.weight"]
        t[b + "attn.proj.bias"] = hf[L + "attention.output.dense.bias"]
        t[b + "norm2.weight"] = hf[L + "layernorm_after.weight"]
        t[b + "norm2.bias"] = hf[L + "layernorm_after.bias"]
        t[b + "mlp.fc1.weight"] = hf[L + "intermediate.dense.weight"]
        t[b + "mlp.fc1.bias"] = hf[L + "intermediate.dense.bias"]
        t[b + "mlp.fc2.weight"] = hf[L + "output.dense.weight"]
        t[b + "mlp.fc2.bias"] = hf[L + "output.dense.bias"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}


def timm_to_google(t: dict) -> dict[str, np.ndarray]:
    D, H, hd = HIDDEN, HEADS, HEAD_DIM
    g = {
        "cls": t["cls_token"],  # (1,1,D)
        "embedding/kernel": t["patch_embed.proj.weight"].transpose(2, 3, 1, 0),  # OIHW -> HWIO
        "embedding/bias": t["patch_embed.proj.bias"],
        "Transformer/posembed_input/pos_embedding": t["pos_embed"],
        "Transformer/encoder_norm/scale": t["norm.weight"],
        "Transformer/encoder_norm/bias": t["norm.bias"],
        "head/kernel": t["head.weight"].T,  # (D, classes)
        "head/bias": t["head.bias"],
    }
    for i in range(LAYERS):
        b = f"blocks.{i}."
        e = f"Transformer/encoderblock_{i}/"
        a = e + "MultiHeadDotProductAttention_1/"
        g[e + "LayerNorm_0/scale"] = t[b + "norm1.weight"]
        g[e + "LayerNorm_0/bias"] = t[b + "norm1.bias"]
        g[e + "LayerNorm_2/scale"] = t[b + "norm2.weight"]
        g[e + "LayerNorm_2/bias"] = t[b + "norm2.bias"]
        qw = t[b + "attn.qkv.weight"].reshape(3, D, D)  # (3, out, in)
        qb = t[b + "attn.qkv.bias"].reshape(3, D)
        for j, n in enumerate(("query", "key", "value")):
            g[a + f"{n}/kernel"] = qw[j].T.reshape(D, H, hd)  # (in, heads, head_dim)
            g[a + f"{n}/bias"] = qb[j].reshape(H, hd)
        g[a + "out/kernel"] = t[b + "attn.proj.weight"].T.reshape(H, hd, D)  # (heads, head_dim, out)
        g[a + "out/bias"] = t[b + "attn.proj.bias"]
        g[e + "MlpBlock_3/Dense_0/kernel"] = t[b + "mlp.fc1.weight"].T  # (D, mlp)
        g[e + "MlpBlock_3/Dense_0/bias"] = t[b + "mlp.fc1.bias"]
        g[e + "MlpBlock_3/Dense_1/kernel"] = t[b + "mlp.fc2.weight"].T  # (mlp, D)
        g[e + "MlpBlock_3/Dense_1/bias"] = t[b + "mlp.fc2.bias"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in sorted(g.items())}


def google_to_timm(g: dict) -> dict[str, np.ndarray]:
    """Inverse of timm_to_google, written independently from the npz semantics."""
    D = HIDDEN
    t = {
        "cls_token": g["cls"],
        "pos_embed": g["Transformer/posembed_input/pos_embedding"],
        "patch_embed.proj.weight": g["embedding/kernel"].transpose(3, 2, 0, 1),  # HWIO -> OIHW
        "patch_embed.proj.bias": g["embedding/bias"],
        "norm.weight": g["Transformer/encoder_norm/scale"],
        "norm.bias": g["Transformer/encoder_norm/bias"],
        "head.weight": g["head/kernel"].T,
        "head.bias": g["head/bias"],
    }
    for i in range(LAYERS):
        b = f"blocks.{i}."
        e = f"Transformer/encoderblock_{i}/"
        a = e + "MultiHeadDotProductAttention_1/"
        t[b + "norm1.weight"] = g[e + "LayerNorm_0/scale"]
        t[b + "norm1.bias"] = g[e + "LayerNorm_0/bias"]
        t[b + "norm2.weight"] = g[e + "LayerNorm_2/scale"]
        t[b + "norm2.bias"] = g[e + "LayerNorm_2/bias"]
        t[b + "attn.qkv.weight"] = np.concatenate(
            [g[a + f"{n}/kernel"].reshape(D, D).T for n in ("query", "key", "value")], 0
        )
        t[b + "attn.qkv.bias"] = np.concatenate([g[a + f"{n}/bias"].reshape(D) for n in ("query", "key", "value")], 0)
        t[b + "attn.proj.weight"] = g[a + "out/kernel"].reshape(D, D).T
        t[b + "attn.proj.bias"] = g[a + "out/bias"]
        t[b + "mlp.fc1.weight"] = g[e + "MlpBlock_3/Dense_0/kernel"].T
        t[b + "mlp.fc1.bias"] = g[e + "MlpBlock_3/Dense_0/bias"]
        t[b + "mlp.fc2.weight"] = g[e + "MlpBlock_3/Dense_1/kernel"].T
        t[b + "mlp.fc2.bias"] = g[e + "MlpBlock_3/Dense_1/bias"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}


def make_timm(eps: float, mae: bool = False) -> VisionTransformer:
    kw = dict(global_pool="avg", fc_norm=True) if mae else {}
    torch.manual_seed(0)  # init is overwritten anyway
    m = VisionTransformer(
        img_size=IMAGE,
        patch_size=PATCH,
        in_chans=CHANNELS,
        embed_dim=HIDDEN,
        depth=LAYERS,
        num_heads=HEADS,
        mlp_ratio=MLP / HIDDEN,
        num_classes=CLASSES,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=eps),
        **kw,
    )
    return m.eval()


def load_timm(m: VisionTransformer, sd: dict) -> VisionTransformer:
    res = m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    check(not res.missing_keys and not res.unexpected_keys, f"timm load: {res}")
    return m


def hf_config_kwargs() -> dict:
    return dict(
        image_size=IMAGE,
        patch_size=PATCH,
        num_channels=CHANNELS,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=MLP,
        num_labels=CLASSES,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def save_hf(model_cls, config, sd: dict, out_dir: Path):
    """Load `sd` (classic HF key names) through from_pretrained, then save_pretrained.

    Going through from_pretrained/save_pretrained makes the folder exactly what
    transformers itself writes, independent of its in-memory module naming.
    """
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        st_save_torch({k: torch.from_numpy(v) for k, v in sd.items()}, os.path.join(tmp, "model.safetensors"),
                      metadata={"format": "pt"})
        model, info = model_cls.from_pretrained(tmp, output_loading_info=True)
    for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        check(not info.get(k), f"{model_cls.__name__} from_pretrained {k}: {info.get(k)}")
    model.eval()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    params = inspect.signature(model.save_pretrained).parameters
    if "save_original_format" in params:  # transformers >= 5: write the classic checkpoint key names
        model.save_pretrained(out_dir, save_original_format=True)
    else:
        model.save_pretrained(out_dir, safe_serialization=True)
    check((out_dir / "model.safetensors").exists(), f"{out_dir}/model.safetensors missing")
    saved = st_load_np(str(out_dir / "model.safetensors"))
    check(sorted(saved) == sorted(sd), f"{out_dir}: saved keys differ: {sorted(set(saved) ^ set(sd))}")
    for k in sd:
        check(saved[k].dtype == np.float32 and np.array_equal(saved[k], sd[k]), f"{out_dir}: tensor {k} differs")
    return model


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------


class _Pwn:
    """Pickles as posix.system('echo pwned'). Never unpickle malicious.pth."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main() -> None:
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    diffs: dict[str, float] = {}
    expected: dict = {}

    x = np.random.default_rng(SEED_INPUT).standard_normal((N_IMAGES, CHANNELS, IMAGE, IMAGE)).astype(np.float32)
    np.save(OUT / "input.npy", x)

    def cfg(eps, pooling, **extra):
        c = dict(image_size=IMAGE, patch=PATCH, channels=CHANNELS, hidden=HIDDEN, mlp=MLP, heads=HEADS,
                 layers=LAYERS, classes=CLASSES, eps=eps, pooling=pooling, act="gelu_erf")
        c.update(extra)
        return c

    def record(name, file, config, logits64, logits32=None):
        e = dict(file=file, config=config, logits=logits64.tolist(), probs=softmax(logits64).tolist())
        if logits32 is not None:
            e["f32_vs_f64_max_abs_diff"] = max_abs(logits32, logits64)
        expected[name] = e

    # ---- 1. HF ViT ----------------------------------------------------------
    hf_sd = random_params(hf_shapes("vit", deit=False), SEED_HF_VIT, hf_is_ln_scale)
    hf_cfg = ViTConfig(**hf_config_kwargs())
    hf_model = save_hf(ViTForImageClassification, hf_cfg, hf_sd, OUT / "hf_vit")
    hf64 = run64(hf_model, x)
    hf32 = run32(hf_model, x)

    # ---- 2. timm (same weights) --------------------------------------------
    timm_sd = hf_to_timm(hf_sd, "vit")
    timm_model = load_timm(make_timm(1e-12), timm_sd)
    check(sorted(timm_model.state_dict()) == sorted(timm_sd), "timm key set")
    timm32 = run32(timm_model, x)
    timm64 = run64(timm_model, x)
    check(np.allclose(timm32, hf32, atol=1e-5, rtol=1e-5), f"timm vs HF f32 logits {max_abs(timm32, hf32)}")
    diffs["hf_vit vs timm_vit (f32 torch)"] = max_abs(timm32, hf32)
    diffs["hf_vit vs timm_vit (f64 torch)"] = max_abs(timm64, hf64)
    np_ref = numpy_forward(timm_sd, x, 1e-12, "cls")
    diffs["hf_vit f64 vs numpy f64 reference"] = max_abs(hf64, np_ref)
    check(diffs["hf_vit f64 vs numpy f64 reference"] < 1e-9, "HF vs numpy reference")
    st_save_torch({k: torch.from_numpy(v) for k, v in timm_sd.items()}, str(OUT / "timm_vit.safetensors"),
                  metadata={"format": "pt"})
    back = st_load_np(str(OUT / "timm_vit.safetensors"))
    check(all(np.array_equal(back[k], timm_sd[k]) for k in timm_sd) and len(back) == len(timm_sd), "timm reread")
    record("hf_vit", "hf_vit", cfg(1e-12, "cls"), hf64, hf32)
    record("timm_vit", "timm_vit.safetensors", cfg(1e-12, "cls"), timm64, timm32)

    # ---- 3. Google npz (same weights, reference eps 1e-6) ------------------
    g = timm_to_google(timm_sd)
    np.savez(OUT / "google_vit.npz", **g)
    with np.load(OUT / "google_vit.npz") as f:
        g_back = {k: f[k] for k in f.files}
    check(sorted(g_back) == sorted(g) and all(g_back[k].dtype == np.float32 for k in g_back), "npz reread")
    rt_sd = google_to_timm(g_back)
    check(all(np.array_equal(rt_sd[k], timm_sd[k]) for k in timm_sd), "npz -> timm round trip not bit-exact")
    goog_model = load_timm(make_timm(1e-6), rt_sd)  # fresh model loaded from the npz
    goog64 = run64(goog_model, x)
    goog32 = run32(goog_model, x)
    ref_e6 = run64(load_timm(make_timm(1e-6), timm_sd), x)
    hf_e6 = hf_model
    set_ln_eps(hf_e6, 1e-6)
    hf64_e6 = run64(hf_e6, x)
    set_ln_eps(hf_model, 1e-12)
    diffs["google_vit (npz round trip, eps1e-6) vs timm eps1e-6 (f64)"] = max_abs(goog64, ref_e6)
    diffs["google_vit eps1e-6 vs hf_vit with eps set to 1e-6 (f64)"] = max_abs(goog64, hf64_e6)
    diffs["google_vit eps1e-6 vs numpy reference (f64)"] = max_abs(goog64, numpy_forward(timm_sd, x, 1e-6, "cls"))
    diffs["effect of eps 1e-12 -> 1e-6 on hf_vit logits (f64)"] = max_abs(goog64, hf64)
    check(diffs["google_vit (npz round trip, eps1e-6) vs timm eps1e-6 (f64)"] == 0.0, "npz round trip logits")
    check(diffs["google_vit eps1e-6 vs hf_vit with eps set to 1e-6 (f64)"] < 1e-9, "npz vs HF eps1e-6")
    record("google_vit_eps1e-6", "google_vit.npz", cfg(1e-6, "cls"), goog64, goog32)

    # ---- 4. MAE fine-tuned (own weights) -----------------------------------
    mae_shape_model = make_timm(1e-6, mae=True)
    mae_shapes = {k: tuple(v.shape) for k, v in mae_shape_model.state_dict().items()}
    check("fc_norm.weight" in mae_shapes and "norm.weight" not in mae_shapes, f"MAE keys: {sorted(mae_shapes)}")
    mae_np = random_params(mae_shapes, SEED_MAE, lambda k: "norm" in k and k.endswith(".weight"))
    mae_model = load_timm(mae_shape_model, mae_np)
    # A real nn.Module.state_dict(): an OrderedDict carrying `_metadata` (pickled via BUILD), like real
    # MAE checkpoints written by `torch.save({'model': model_without_ddp.state_dict()}, ...)`.
    mae_sd = mae_model.state_dict()
    check(type(mae_sd).__name__ == "OrderedDict" and hasattr(mae_sd, "_metadata"), "state_dict type")
    torch.save({"model": mae_sd}, OUT / "mae_vit.pth")
    reread = torch.load(OUT / "mae_vit.pth", map_location="cpu", weights_only=True)
    check(list(reread) == ["model"] and all(torch.equal(reread["model"][k], mae_sd[k]) for k in mae_sd), "mae reread")
    mae64 = run64(mae_model, x)
    mae32 = run32(mae_model, x)

    def double_fc_norm(m, xt):
        t = m.forward_features(xt)  # norm is Identity for fc_norm models
        f = t[:, m.num_prefix_tokens:].mean(dim=1)
        return m.head(m.fc_norm(m.fc_norm(f)))

    def single_fc_norm(m, xt):
        t = m.forward_features(xt)
        return m.head(m.fc_norm(t[:, m.num_prefix_tokens:].mean(dim=1)))

    mae64_manual = run64(mae_model, x, single_fc_norm)
    mae64_dbl = run64(mae_model, x, double_fc_norm)
    diffs["mae_vit timm forward vs manual single fc_norm (f64)"] = max_abs(mae64, mae64_manual)
    diffs["mae_vit vs numpy reference (f64)"] = max_abs(mae64, numpy_forward(mae_np, x, 1e-6, "avg_fc_norm"))
    diffs["mae_vit_double_fc_norm vs numpy reference (f64)"] = max_abs(
        mae64_dbl, numpy_forward(mae_np, x, 1e-6, "avg_fc_norm_twice"))
    diffs["mae_vit single vs double fc_norm (f64, should be clearly > 0)"] = max_abs(mae64, mae64_dbl)
    check(diffs["mae_vit timm forward vs manual single fc_norm (f64)"] < 1e-12, "MAE manual pooling")
    check(diffs["mae_vit single vs double fc_norm (f64, should be clearly > 0)"] > 1e-3, "double fc_norm distinguishable")
    record("mae_vit", "mae_vit.pth", cfg(1e-6, "avg_fc_norm"), mae64, mae32)
    record("mae_vit_double_fc_norm", "mae_vit.pth", cfg(1e-6, "avg_fc_norm_twice"), mae64_dbl)

    # ---- 5. malicious pickle ------------------------------------------------
    torch.save({"model": {"head.bias": torch.zeros(CLASSES)}, "args": _Pwn()}, OUT / "malicious.pth")
    _, mal_globs = pickle_globals(OUT / "malicious.pth")
    check("posix.system" in mal_globs or "os.system" in mal_globs, f"malicious globals: {mal_globs}")
    try:
        torch.load(OUT / "malicious.pth", map_location="cpu", weights_only=True)  # safe: never calls the global
        raise SystemExit("CHECK FAILED: torch weights_only load accepted malicious.pth")
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, SystemExit):
            raise
        check("system" in str(exc), f"unexpected weights_only error: {exc!r}")

    # ---- 6. DeiT (optional) -------------------------------------------------
    try:
        from transformers import DeiTConfig, DeiTForImageClassification
    except ImportError:
        DeiTForImageClassification = None
    if DeiTForImageClassification is not None:
        deit_sd = random_params(hf_shapes("deit", deit=True), SEED_DEIT, hf_is_ln_scale)
        deit_model = save_hf(DeiTForImageClassification, DeiTConfig(**hf_config_kwargs()), deit_sd, OUT / "hf_deit")
        deit64 = run64(deit_model, x)
        deit32 = run32(deit_model, x)
        deit_t = hf_to_timm({k: v for k, v in deit_sd.items() if "distillation_token" not in k}, "deit")
        deit_t["dist_token"] = deit_sd["deit.embeddings.distillation_token"]
        diffs["deit vs numpy reference (cls, dist token 2nd) (f64)"] = max_abs(
            deit64, numpy_forward(deit_t, x, 1e-12, "cls", prefix_tokens=("cls_token", "dist_token")))
        check(diffs["deit vs numpy reference (cls, dist token 2nd) (f64)"] < 1e-9, "DeiT vs numpy reference")
        record("deit", "hf_deit", cfg(1e-12, "cls", prefix_tokens=["cls", "distillation"]), deit64, deit32)
    elif (OUT / "hf_deit").exists():
        shutil.rmtree(OUT / "hf_deit")

    # ---- expected.json --------------------------------------------------------
    doc = {
        "_about": "Generated by scripts/make_loader_fixtures.py (never run by CI). logits[img][class] are "
                  "float64 PyTorch references; probs = softmax(logits). Input is input.npy, NCHW float32.",
        "_versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                      "transformers": transformers.__version__, "timm": timm.__version__,
                      "safetensors": safetensors.__version__, "numpy": np.__version__},
        "_input": {"file": "input.npy", "shape": list(x.shape), "dtype": "float32", "layout": "NCHW"},
        "_cross_layout_max_abs_diff": diffs,
    }
    doc.update(expected)
    (OUT / "expected.json").write_text(json.dumps(doc, indent=1) + "\n")

    # ---- summary --------------------------------------------------------------
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"torch {torch.__version__}  transformers {transformers.__version__}  timm {timm.__version__}")
    print(f"wrote {OUT.relative_to(ROOT)} ({total} bytes):")
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"  {p.relative_to(OUT)}  {p.stat().st_size}")
    print("max |logit| per fixture:", {k: round(float(np.max(np.abs(v["logits"]))), 3) for k, v in expected.items()})
    print("max abs differences:")
    for k, v in diffs.items():
        print(f"  {v:.3e}  {k}")
    print("malicious.pth pickle globals:", mal_globs)
    check(total < 1_000_000, "fixtures exceed 1 MB")


if __name__ == "__main__":
    main()
