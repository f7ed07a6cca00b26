"""The computations of `neuronpath bench` in PyTorch, for the comparison column.

Usage: bench_torch.py IMAGE PATCH HIDDEN MLP HEADS LAYERS BATCH STEPS MIN_SECS SEARCH [DEVICE]
Prints a JSON list of rows named exactly like neuronpath's. float32; DEVICE cpu (default, torch's
default threads) or cuda (TF32 off, as candle's default; every timed call ends with
torch.cuda.synchronize()).
A pre-LN ViT written out here (as in the paper's PyTorch port); the clamp is the CLS row of each
block's MLP hidden units, a leaf with requires_grad; weights do not require gradients.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

img, patch, d, m, heads, layers, batch, steps = map(int, sys.argv[1:9])
min_secs = float(sys.argv[9])
search = int(sys.argv[10])  # images searched together (0: no search row)
dev = torch.device(sys.argv[11] if len(sys.argv) > 11 else "cpu")
if dev.type == "cuda":
    # Full f32 precision like candle's cuBLAS calls (torch's cuDNN convolutions default to TF32).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(0)
g = img // patch
n = g * g + 1
hd = d // heads


def p(*shape, std=0.02):
    return (torch.randn(*shape, device=dev) * std).requires_grad_(False)


def ln():
    return torch.ones(d, device=dev), torch.zeros(d, device=dev)


W = dict(
    patch=p(d, 3, patch, patch), patch_b=p(d), cls=p(1, 1, d), pos=p(1, n, d),
    blocks=[dict(ln1=ln(), qkv=p(3 * d, d), qkv_b=p(3 * d),
                 proj=p(d, d), proj_b=p(d), ln2=ln(),
                 fc1=p(m, d), fc1_b=p(m), fc2=p(d, m), fc2_b=p(d)) for _ in range(layers)],
    norm=ln(), head=p(1000, d), head_b=p(1000),
)


def forward(x, clamps=None):
    r = x.shape[0]
    t = F.conv2d(x, W["patch"], W["patch_b"], stride=patch).flatten(2).transpose(1, 2)
    t = torch.cat([W["cls"].expand(r, -1, -1), t], 1) + W["pos"]
    for l, b in enumerate(W["blocks"]):
        h = F.layer_norm(t, (d,), *b["ln1"], eps=1e-6)
        qkv = F.linear(h, b["qkv"], b["qkv_b"]).reshape(r, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        att = (qkv[0] @ qkv[1].transpose(-2, -1) * hd ** -0.5).softmax(-1)
        t = t + F.linear((att @ qkv[2]).transpose(1, 2).reshape(r, n, d), b["proj"], b["proj_b"])
        a = F.gelu(F.linear(F.layer_norm(t, (d,), *b["ln2"], eps=1e-6), b["fc1"], b["fc1_b"]))
        if clamps is not None and l in clamps:
            a = torch.cat([clamps[l].unsqueeze(1), a[:, 1:]], 1)
        t = t + F.linear(a, b["fc2"], b["fc2_b"])
    return F.linear(F.layer_norm(t[:, 0], (d,), *W["norm"], eps=1e-6), W["head"], W["head_b"])


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timeit(f, reps=1):
    f()
    sync()
    start, k = time.perf_counter(), 0
    while k == 0 or time.perf_counter() - start < min_secs:
        for _ in range(reps):
            f()
        sync()
        k += 1
    return (time.perf_counter() - start) / k / reps


fwd = 2 * (n - 1) * d * 3 * patch * patch + layers * (2 * n * (4 * d * d + 2 * d * m) + 4 * n * n * d) + 2 * d * 1000
attn = layers * 4 * n * n * d
attr = 2 * fwd + attn
rows = []
a = torch.randn(steps * n, d, device=dev)
w = torch.randn(d, m, device=dev)
s = timeit(lambda: a @ w, reps=10 if dev.type == "cuda" else 1)
rows.append(dict(name=f"GEMM {steps * n}x{d}x{m} f32", per_second=1 / s, gflops=2 * steps * n * d * m / s / 1e9))
x = torch.randn(batch, 3, img, img, device=dev)
with torch.no_grad():
    s = timeit(lambda: forward(x))
rows.append(dict(name=f"clean forward, batch {batch}", per_second=batch / s, gflops=fwd * batch / s / 1e9))
one = x[:1].expand(steps, -1, -1, -1)


def attribution():
    clamps = {l: torch.randn(steps, m, device=dev, requires_grad=True) for l in range(layers)}
    prob = forward(one, clamps).softmax(-1)[:, 0].sum()
    torch.autograd.grad(prob, list(clamps.values()))


s = timeit(attribution)
rows.append(dict(name=f"attribution pass (fwd+bwd), {steps} rows", per_second=steps / s, gflops=attr * steps / s / 1e9))
if search:
    k = search
    xs = torch.randn(k, 3, img, img, device=dev)
    rep = xs.repeat_interleave(steps, 0)

    def attribution_k():
        clamps = {l: torch.randn(k * steps, m, device=dev, requires_grad=True) for l in range(layers)}
        prob = forward(rep, clamps).softmax(-1)[:, 0].sum()
        torch.autograd.grad(prob, list(clamps.values()))

    sync()
    start = time.perf_counter()
    with torch.no_grad():
        forward(xs)
    for _ in range(layers):
        attribution_k()
    sync()
    s = time.perf_counter() - start
    what = "1 image" if k == 1 else f"{k} images"
    rows.append(dict(name=f"path search, {what} (L={layers} x m={steps})", per_second=k / s,
                     gflops=k * (fwd + layers * steps * attr) / s / 1e9))
print(json.dumps(rows))
