#!/usr/bin/env python3
"""Tiny checkpoints of the ViT families neuronpath reads beyond the paper's layouts, made by
transformers / timm, with their float64 reference outputs.

Writes tests/fixtures/families/ (a few hundred KB in all):

  dinov2/              Dinov2Model (headless; output = pooler_output, the final-LN CLS),
                       config image 35 (5x5 position grid) run at 28 (4x4): bicubic downsampling
  dinov2_cls/          Dinov2ForImageClassification, position grid 3x3 upsampled to 4x4,
                       classifier on [CLS, mean of patch tokens]
  dinov2_reg_cls/      Dinov2WithRegistersForImageClassification, 2 registers, 5x5 grid run at 4x4
                       (antialiased bicubic, as that model's interpolation asks)
  clip/                CLIPVisionModel (quick-GELU, pre-LN, post-LN pooled CLS; output = pooled)
  clip_proj/           CLIPVisionModelWithProjection (output = image_embeds), erf GELU
  clip_proj_bin/       the same weights as clip_proj saved as pytorch_model.bin (torch zip pickle)
  deit_distilled/      DeiTForImageClassificationWithTeacher (logits = mean of the two heads)
  timm_dinov2_reg.safetensors  timm VisionTransformer with LayerScale and 2 register tokens
                       (no_embed_class, as timm's *_reg4_dinov2), run at its own size
  timm_clip.safetensors  timm's CLIP image tower layout (pre-norm, no patch bias, LayerNorm eps
                       1e-5, quick-GELU as timm's *_clip_quickgelu_*), a 16-class head
  timm_deit_distilled.safetensors  timm VisionTransformerDistilled (cls + dist tokens, head and
                       head_dist averaged in eval)
  open_clip/           an open_clip CLIP (vision + a tiny text tower) saved as open_clip saves to
                       the Hugging Face hub: open_clip_pytorch_model.bin (torch.save of the state
                       dict) + open_clip_config.json (quick_gelu, head_width 6, mean/std 0.5);
                       output = encode_image (ln_post CLS @ proj)
  open_clip_ls.safetensors  a bare open_clip VisionTransformer state dict (no `visual.` prefix):
                       LayerScale (ls_init_value), no ln_pre, erf GELU, a 5x5 grid run at 4x4 with
                       open_clip's resize_pos_embed (bicubic, antialiased) giving the reference
  input.npy            (2, 3, 28, 28) float32 inputs
  expected.json        per fixture: output kind, float64 outputs (logits or embedding) and the MLP
                       hidden units of the CLS row (and the distillation row) per layer

Every weight is random (seeded), LayerNorm scales 1 + 0.1 z, LayerScale gammas random (not the
1e-5 init, so that the branches matter). Reference outputs come from the transformers / timm
modules cast to float64. Position embeddings are interpolated by the models' own calls to
torch.nn.functional.interpolate, run in float64 (transformers casts to float32 first: the weights
are float32 values, so that cast is exact, and the interpolation itself is done in float64 here
by wrapping interpolate; the float32 difference is printed).

Never run by CI (the outputs are committed). To regenerate:

    python3 -m venv /tmp/fixvenv
    /tmp/fixvenv/bin/pip install -r scripts/requirements-fixtures.txt
    /tmp/fixvenv/bin/python scripts/make_family_fixtures.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
import timm
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
# FAMILY_FIXTURES_OUT writes elsewhere (to compare a regeneration with the committed files).
OUT = Path(os.environ.get("FAMILY_FIXTURES_OUT", ROOT / "tests" / "fixtures" / "families"))

IMAGE = 28
PATCH = 7
HIDDEN = 24
HEADS = 4
LAYERS = 3
MLP = 48
N_IMAGES = 2


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise SystemExit(f"CHECK FAILED: {msg}")


def randomize(model: nn.Module, seed: int) -> None:
    """Every parameter random in float32 (LayerNorm scales near 1), drawn in name order."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            z = rng.standard_normal(tuple(p.shape))
            is_ln_scale = name.endswith(".weight") and p.dim() == 1 and (
                "norm" in name or "layernorm" in name
            )
            if is_ln_scale:
                v = 1.0 + 0.1 * z
            elif "lambda1" in name or name.endswith(".gamma"):
                v = 0.5 + 0.3 * z  # LayerScale: far from 1 and from the tiny init
            else:
                v = 0.2 * z
            p.copy_(torch.from_numpy(np.asarray(v, dtype=np.float32)))


_interpolate = F.interpolate


def interpolate_f64(x, *args, **kwargs):
    """The models' interpolation in float64 (their float32 cast of float32 weights is exact)."""
    return _interpolate(x.double(), *args, **kwargs)


def run(model: nn.Module, x: np.ndarray, outputs, hooks, f64_interp: bool = True):
    """float64 forward; returns (outputs dict, hidden per hook name (layers, R, M))."""
    m = model.double().eval()
    acts: dict[str, list] = {}
    handles = []
    for name, (modules, row) in hooks.items():
        acts[name] = []
        for mod in modules:
            handles.append(
                mod.register_forward_hook(
                    lambda _m, _i, o, name=name, row=row: acts[name].append(o[:, row].detach().clone())
                )
            )
    if f64_interp:
        F.interpolate = interpolate_f64
    try:
        with torch.no_grad():
            out = m(torch.from_numpy(x).double())
    finally:
        F.interpolate = _interpolate
        for h in handles:
            h.remove()
    res = {k: fn(out).double().numpy().tolist() for k, fn in outputs.items()}
    hidden = {k: [a.double().numpy().tolist() for a in v] for k, v in acts.items()}
    return res, hidden


def save_hf(model, folder: Path, safe: bool = True) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    model.float().save_pretrained(folder)
    if not safe:
        # transformers 5 writes safetensors only; a .bin is what torch.save makes of the state
        # dict (older transformers and many hub folders hold exactly this).
        (folder / "model.safetensors").unlink()
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        torch.save(sd, folder / "pytorch_model.bin")
    model.double()
    # Keep only what a checkpoint folder needs.
    for f in folder.iterdir():
        if f.name not in ("config.json", "model.safetensors", "pytorch_model.bin"):
            f.unlink()


def main() -> None:
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(77)
    x = rng.standard_normal((N_IMAGES, 3, IMAGE, IMAGE)).astype(np.float32)
    np.save(OUT / "input.npy", x)
    expected: dict = {
        "_note": "made by scripts/make_family_fixtures.py; outputs float64",
        "_versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "timm": timm.__version__,
            "open_clip": __import__("open_clip").__version__,
        },
    }

    def record(name, kind, res, hidden, **extra):
        e = {"kind": kind}
        e.update(res)
        e.update(hidden)
        e.update(extra)
        expected[name] = e

    common = dict(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        patch_size=PATCH,
        num_channels=3,
    )

    # ---- DINOv2 headless, 5x5 grid run at 4x4 -------------------------------------------
    from transformers import (
        Dinov2Config,
        Dinov2Model,
        Dinov2ForImageClassification,
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersForImageClassification,
        CLIPVisionConfig,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
        DeiTConfig,
        DeiTForImageClassificationWithTeacher,
    )

    cfg = Dinov2Config(**common, image_size=35, mlp_ratio=2, layer_norm_eps=1e-6, hidden_act="gelu")
    m = Dinov2Model(cfg)
    randomize(m, 11)
    layers = m.encoder.layer
    res, hid = run(
        m,
        x,
        {"output": lambda o: o.pooler_output},
        {"hidden_cls": ([l.mlp.activation_fn for l in layers], 0)},
    )
    res32, _ = run(m, x, {"output": lambda o: o.pooler_output}, {}, f64_interp=False)
    print("dinov2: |f64 interp - f32 interp| =", np.abs(np.array(res["output"]) - np.array(res32["output"])).max())
    save_hf(m, OUT / "dinov2")
    record("dinov2", "embedding", res, hid)

    # ---- DINOv2 classifier, 3x3 grid upsampled to 4x4, tanh GELU -------------------------
    cfg = Dinov2Config(
        **common, image_size=21, mlp_ratio=2, layer_norm_eps=1e-5, hidden_act="gelu_pytorch_tanh", num_labels=5
    )
    m = Dinov2ForImageClassification(cfg)
    randomize(m, 12)
    res, hid = run(
        m,
        x,
        {"output": lambda o: o.logits},
        {"hidden_cls": ([l.mlp.activation_fn for l in m.dinov2.encoder.layer], 0)},
    )
    save_hf(m, OUT / "dinov2_cls")
    record("dinov2_cls", "logits", res, hid)

    # ---- DINOv2 with registers, classifier --------------------------------------------------
    cfg = Dinov2WithRegistersConfig(
        **common, image_size=35, mlp_ratio=2, layer_norm_eps=1e-6, num_register_tokens=2, num_labels=4
    )
    m = Dinov2WithRegistersForImageClassification(cfg)
    randomize(m, 13)
    res, hid = run(
        m,
        x,
        {"output": lambda o: o.logits},
        {"hidden_cls": ([l.mlp.activation_fn for l in m.dinov2_with_registers.encoder.layer], 0)},
    )
    check(
        any(k.startswith("dinov2_with_registers.embeddings.register_tokens") for k in m.state_dict()),
        "register tokens in the state dict",
    )
    save_hf(m, OUT / "dinov2_reg_cls")
    record("dinov2_reg_cls", "logits", res, hid)

    # ---- CLIP vision tower, quick-GELU -----------------------------------------------------
    ccommon = dict(common, intermediate_size=MLP, image_size=IMAGE)
    cfg = CLIPVisionConfig(**ccommon, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    m = CLIPVisionModel(cfg)
    randomize(m, 21)
    lay = m.encoder.layers
    res, hid = run(
        m,
        x,
        {"output": lambda o: o.pooler_output},
        {"hidden_cls": ([l.mlp.activation_fn for l in lay], 0)},
    )
    save_hf(m, OUT / "clip")
    record("clip", "embedding", res, hid)

    # ---- CLIP with projection, erf GELU, safetensors and .bin ----------------------------
    cfg = CLIPVisionConfig(**ccommon, hidden_act="gelu", layer_norm_eps=1e-6, projection_dim=16)
    m = CLIPVisionModelWithProjection(cfg)
    randomize(m, 22)
    lay = m.vision_model.encoder.layers
    res, hid = run(
        m,
        x,
        {"output": lambda o: o.image_embeds},
        {"hidden_cls": ([l.mlp.activation_fn for l in lay], 0)},
    )
    save_hf(m, OUT / "clip_proj")
    save_hf(m, OUT / "clip_proj_bin", safe=False)
    check((OUT / "clip_proj_bin" / "pytorch_model.bin").is_file(), "pytorch_model.bin written")
    record("clip_proj", "embedding", res, hid)

    # ---- DeiT distilled ----------------------------------------------------------------
    cfg = DeiTConfig(**ccommon, hidden_act="gelu", layer_norm_eps=1e-12, num_labels=6)
    m = DeiTForImageClassificationWithTeacher(cfg)
    randomize(m, 31)
    lay = m.deit.layers
    res, hid = run(
        m,
        x,
        {
            "output": lambda o: o.logits,
            "cls_logits": lambda o: o.cls_logits,
            "distillation_logits": lambda o: o.distillation_logits,
        },
        {
            "hidden_cls": ([l.mlp.activation_fn for l in lay], 0),
            "hidden_dist": ([l.mlp.activation_fn for l in lay], 1),
        },
    )
    save_hf(m, OUT / "deit_distilled")
    record("deit_distilled", "logits", res, hid)

    # ---- timm: LayerScale + registers (the *_reg4_dinov2 layout) ---------------------------
    from timm.models.vision_transformer import VisionTransformer

    tiny = dict(
        img_size=IMAGE, patch_size=PATCH, embed_dim=HIDDEN, depth=LAYERS, num_heads=HEADS, mlp_ratio=MLP / HIDDEN
    )

    def timm_fixture(name, m, hooks):
        res, hid = run(m, x, {"output": lambda o: o}, hooks)
        save_file({k: v.float().contiguous() for k, v in m.state_dict().items()}, OUT / f"{name}.safetensors")
        record(name, "logits", res, hid)

    m = VisionTransformer(
        **tiny,
        init_values=1e-5,
        reg_tokens=2,
        no_embed_class=True,
        num_classes=3,
    )
    randomize(m, 41)
    for mod in m.modules():
        if isinstance(mod, nn.LayerNorm):
            mod.eps = 1e-6
    timm_fixture("timm_dinov2_reg", m, {"hidden_cls": ([b.mlp.act for b in m.blocks], 0)})

    # ---- timm CLIP image tower (vit_*_clip_quickgelu_* layout) --------------------------
    from functools import partial

    m = VisionTransformer(
        **tiny,
        pre_norm=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-5),
        act_layer="quick_gelu",
        num_classes=16,
    )
    randomize(m, 42)
    check("patch_embed.proj.bias" not in m.state_dict(), "timm CLIP: no patch bias")
    timm_fixture("timm_clip", m, {"hidden_cls": ([b.mlp.act for b in m.blocks], 0)})

    # ---- timm DeiT distilled ---------------------------------------------------------------
    from timm.models.deit import VisionTransformerDistilled

    m = VisionTransformerDistilled(**tiny, num_classes=6)
    randomize(m, 43)
    acts = [b.mlp.act for b in m.blocks]
    timm_fixture("timm_deit_distilled", m, {"hidden_cls": (acts, 0), "hidden_dist": (acts, 1)})

    # ---- open_clip: a full CLIP saved the hub way, and a bare LayerScale tower --------------
    import types

    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, resize_pos_embed
    from open_clip.transformer import VisionTransformer as OpenClipTower

    model_cfg = {
        "embed_dim": 16,
        "quick_gelu": True,
        "vision_cfg": {
            "image_size": IMAGE, "layers": LAYERS, "width": HIDDEN, "head_width": HIDDEN // HEADS,
            "mlp_ratio": MLP / HIDDEN, "patch_size": PATCH,
        },
        "text_cfg": {"context_length": 4, "vocab_size": 10, "width": 8, "heads": 2, "layers": 1},
    }
    m = CLIP(
        embed_dim=16,
        vision_cfg=CLIPVisionCfg(**model_cfg["vision_cfg"]),
        text_cfg=CLIPTextCfg(**model_cfg["text_cfg"]),
        quick_gelu=True,
    )
    randomize(m, 51)
    blocks = m.visual.transformer.resblocks
    res, hid = run(
        m.visual,
        x,
        {"output": lambda o: o},
        {"hidden_cls": ([b.mlp.gelu for b in blocks], 0)},
    )
    with torch.no_grad():
        enc = m.double().encode_image(torch.from_numpy(x).double()).numpy()
    check(np.abs(enc - np.array(res["output"])).max() == 0, "open_clip: encode_image is the tower's output")
    folder = OUT / "open_clip"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    sd = {k: v.float().contiguous() for k, v in m.state_dict().items()}
    check(any(k.startswith("transformer.") for k in sd), "open_clip: the text tower is in the file")
    torch.save(sd, folder / "open_clip_pytorch_model.bin")
    pre = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}  # not the default (OpenAI) ones
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": pre}, indent=2) + "\n"
    )
    record("open_clip", "embedding", res, hid, open_clip=open_clip.__version__)

    def tower(size):
        return OpenClipTower(
            image_size=size, patch_size=PATCH, width=HIDDEN, layers=LAYERS, heads=HEADS,
            mlp_ratio=MLP / HIDDEN, ls_init_value=0.1, output_dim=12, no_ln_pre=True,
        )

    big = tower(35)
    randomize(big, 52)
    small = tower(IMAGE).double()
    sd = {"visual." + k: v.double() for k, v in big.state_dict().items()}
    resize_pos_embed(sd, types.SimpleNamespace(visual=small), interpolation="bicubic", antialias=True)
    check(sd["visual.positional_embedding"].shape[0] == 17, "open_clip: resized to 4x4 + CLS")
    small.load_state_dict({k[len("visual."):]: v for k, v in sd.items()})
    check(not any("ln_pre" in k for k in small.state_dict()), "open_clip: no ln_pre")
    res, hid = run(
        small,
        x,
        {"output": lambda o: o},
        {"hidden_cls": ([b.mlp.gelu for b in small.transformer.resblocks], 0)},
    )
    save_file({k: v.float().contiguous() for k, v in big.state_dict().items()}, OUT / "open_clip_ls.safetensors")
    record("open_clip_ls", "embedding", res, hid)

    (OUT / "expected.json").write_text(json.dumps(expected, indent=0) + "\n")
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
