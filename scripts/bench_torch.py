"""The computations of `neuronpath bench` in PyTorch, for the comparison column.

Usage: bench_torch.py IMAGE PATCH HIDDEN MLP HEADS LAYERS BATCH STEPS MIN_SECS SEARCH [DEVICE]
Prints a JSON list of rows named exactly like neuronpath's. float32; DEVICE cpu (default, torch's
default threads) or cuda (TF32 off, as candle's default; every timed call ends with
torch.cuda.synchronize()).
A pre-LN ViT written out here (as in the paper's PyTorch port); the clamp is the CLS row of each
block's MLP hidden units, a leaf with requires_grad; weights do not require gradients. The search
rows: the reference engine's work (L full clamped passes) and the prefix engine's algorithm itself
(`prefix_search`, autograd + forward-mode dual numbers).
"""
import json
import sys
import time

import torch
import torch.autograd.forward_ad as fwAD
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


def embed(x):
    t = F.conv2d(x, W["patch"], W["patch_b"], stride=patch).flatten(2).transpose(1, 2)
    return torch.cat([W["cls"].expand(x.shape[0], -1, -1), t], 1) + W["pos"]


def block(t, b, clamp=None, record=None, with_h=False):
    """One block; `clamp` (R, M) replaces the CLS row of the MLP hidden units. With `with_h`,
    also the residual stream before the MLP."""
    r = t.shape[0]
    h = F.layer_norm(t, (d,), *b["ln1"], eps=1e-6)
    qkv = F.linear(h, b["qkv"], b["qkv_b"]).reshape(r, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    att = (qkv[0] @ qkv[1].transpose(-2, -1) * hd ** -0.5).softmax(-1)
    t = t + F.linear((att @ qkv[2]).transpose(1, 2).reshape(r, n, d), b["proj"], b["proj_b"])
    a = F.gelu(F.linear(F.layer_norm(t, (d,), *b["ln2"], eps=1e-6), b["fc1"], b["fc1_b"]))
    if record is not None:
        record.append(a[:, 0])
    if clamp is not None:
        a = torch.cat([clamp.unsqueeze(1), a[:, 1:]], 1)
    out = t + F.linear(a, b["fc2"], b["fc2_b"])
    return (out, t) if with_h else out


def head(t):
    return F.linear(F.layer_norm(t[:, 0], (d,), *W["norm"], eps=1e-6), W["head"], W["head_b"])


def forward(x, clamps=None):
    t = embed(x)
    for l, b in enumerate(W["blocks"]):
        t = block(t, b, None if clamps is None else clamps.get(l))
    return head(t)


def prefix_search(xs, target=0):
    """The prefix engine (neuronpath's default): per row the residual stream under the path
    clamps below step T and the tangent along the path neurons; at step T blocks T..L-1 forward
    and backward to block T's output g = dF/dx_{T+1}: dF/dc_T is g's CLS row times fc2's weight
    and S_k = <dF/dx_T, t_T> = <g, J_T t_T>. Block T runs once, forward only: its forward carries
    the tangent (forward-mode dual numbers, the clamp a constant), and the prefix one block on
    differs from that forward only in the CLS row's MLP output."""
    k = xs.shape[0]
    with torch.no_grad():
        acts = []
        t = embed(xs)
        for b in W["blocks"]:
            t = block(t, b, record=acts)
    alpha = (torch.arange(steps, device=dev, dtype=torch.float32) / steps).repeat(k)[:, None]
    x = embed(xs).detach().repeat_interleave(steps, 0)
    tan = None
    prev_a = torch.zeros(k, device=dev)
    rows = torch.arange(k * steps, device=dev)
    path = []
    for T, b in enumerate(W["blocks"]):
        a_rows = acts[T].repeat_interleave(steps, 0)
        lc = a_rows * alpha
        with torch.no_grad():
            if tan is None:
                out, h_T = block(x, b, lc, with_h=True)
                out_tan = None
            else:
                with fwAD.dual_level():
                    out, h_T = block(fwAD.make_dual(x, tan), b, lc, with_h=True)
                    out, out_tan = fwAD.unpack_dual(out)
                    h_T = fwAD.unpack_dual(h_T).primal
                    out_tan = out_tan.clone()
        top = out.detach().requires_grad_()
        h = top
        for b2 in W["blocks"][T + 1:]:
            h = block(h, b2)
        f = head(h).softmax(-1)[:, target].sum()
        (g_out,) = torch.autograd.grad(f, [top])
        g = g_out[:, 0] @ b["fc2"]
        if out_tan is None:
            lower = torch.zeros(k * steps, device=dev)
        else:
            lower = (g_out * out_tan).flatten(1).sum(1)
        g = g.view(k, steps, m).sum(1) + lower.view(k, steps).sum(1)[:, None]
        score = g / steps * (acts[T] + prev_a[:, None])
        p = score.argmax(1)
        path.append(p.tolist())
        prev_a = prev_a + acts[T].gather(1, p[:, None])[:, 0]
        if T + 1 < layers:
            p_rows = p.repeat_interleave(steps)
            pc = a_rows.clone()
            pc[rows, p_rows] *= alpha[:, 0]
            with torch.no_grad():
                cls = h_T[:, 0] + F.linear(pc, b["fc2"], b["fc2_b"])
                x = torch.cat([cls[:, None], out[:, 1:]], 1).detach()
                tan = torch.zeros_like(x) if out_tan is None else out_tan
                tan[:, 0] += b["fc2"][:, p_rows].T
    return path


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


# CPU seconds of the process (all threads) per timed call, beside the wall clock: on a loaded
# machine the CPU time moves much less than the wall clock (the same column as neuronpath's).
last_cpu = [float("nan")]


def timeit(f, reps=1):
    f()
    sync()
    start, cpu, k = time.perf_counter(), time.process_time(), 0
    while k == 0 or time.perf_counter() - start < min_secs:
        for _ in range(reps):
            f()
        sync()
        k += 1
    last_cpu[0] = (time.process_time() - cpu) / k / reps
    return (time.perf_counter() - start) / k / reps


fwd = 2 * (n - 1) * d * 3 * patch * patch + layers * (2 * n * (4 * d * d + 2 * d * m) + 4 * n * n * d) + 2 * d * 1000
attn = layers * 4 * n * n * d
attr = 2 * fwd + attn
rows = []
a = torch.randn(steps * n, d, device=dev)
w = torch.randn(d, m, device=dev)
s = timeit(lambda: a @ w, reps=10 if dev.type == "cuda" else 1)
rows.append(dict(name=f"GEMM {steps * n}x{d}x{m} f32", per_second=1 / s, gflops=2 * steps * n * d * m / s / 1e9,
                 cpu_seconds=last_cpu[0]))
x = torch.randn(batch, 3, img, img, device=dev)
with torch.no_grad():
    s = timeit(lambda: forward(x))
rows.append(dict(name=f"clean forward, batch {batch}", per_second=batch / s, gflops=fwd * batch / s / 1e9,
                 cpu_seconds=last_cpu[0]))
one = x[:1].expand(steps, -1, -1, -1)


def attribution():
    clamps = {l: torch.randn(steps, m, device=dev, requires_grad=True) for l in range(layers)}
    prob = forward(one, clamps).softmax(-1)[:, 0].sum()
    torch.autograd.grad(prob, list(clamps.values()))


s = timeit(attribution)
rows.append(dict(name=f"attribution pass (fwd+bwd), {steps} rows", per_second=steps / s, gflops=attr * steps / s / 1e9,
                 cpu_seconds=last_cpu[0]))
if search:
    k = search
    xs = torch.randn(k, 3, img, img, device=dev)
    rep = xs.repeat_interleave(steps, 0)

    def attribution_k():
        clamps = {l: torch.randn(k * steps, m, device=dev, requires_grad=True) for l in range(layers)}
        prob = forward(rep, clamps).softmax(-1)[:, 0].sum()
        torch.autograd.grad(prob, list(clamps.values()))

    sync()
    start, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        forward(xs)
    for _ in range(layers):
        attribution_k()
    sync()
    s, c = time.perf_counter() - start, time.process_time() - cpu
    what = "1 image" if k == 1 else f"{k} images"
    rows.append(dict(name=f"path search (reference), {what} (L={layers} x m={steps})",
                     per_second=k / s, gflops=k * (fwd + layers * steps * attr) / s / 1e9,
                     cpu_seconds=c))
    # warm-up of forward-mode AD (its first dual-number pass sets it up)
    z = embed(xs[:1])
    with torch.no_grad(), fwAD.dual_level():
        block(fwAD.make_dual(z, z), W["blocks"][0], z[:, 0, :1].expand(1, m))
    sync()
    start, cpu = time.perf_counter(), time.process_time()
    prefix_search(xs)
    sync()
    s, c = time.perf_counter() - start, time.process_time() - cpu
    bwd = attr - fwd
    # per row: L(L+1)/2 block forwards, L(L-1)/2 block backwards, L-1 tangent blocks (as block
    # forwards; here the last step's block L-1 runs its tangent)
    work = fwd + steps * ((layers + 1) / 2 * fwd + (layers - 1) / 2 * bwd
                          + max(layers - 1, 0) / layers * fwd)
    rows.append(dict(name=f"path search (prefix), {what} (L={layers} x m={steps})",
                     per_second=k / s, gflops=k * work / s / 1e9, cpu_seconds=c))
print(json.dumps(rows))
