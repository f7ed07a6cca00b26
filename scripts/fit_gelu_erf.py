"""Coefficients of the f32 erf-GELU kernel in src/model/gelu_formulas.rs (never run by CI; its
output is pasted there). Run: python scripts/fit_gelu_erf.py

The kernel evaluates, in f64, for an f32 input x (u = |x|, x^2 exact in f64):
  E = exp(-x^2/2)                      one exp, shared by the CDF and the density
  Phi(-u) = E * Q(t) / 2,  t = 1 / (1 + C u),  Q(t) ~ erfc(u / sqrt 2) exp(u^2 / 2)
  Phi(x) = 1 - Phi(-u) for x >= 0,  phi(x) = E / sqrt(2 pi)
  exp(y) = 2^k exp(r), r = y - k ln 2 in [-ln2/2, ln2/2], exp(r) ~ R(r)
Q and R are polynomials fitted here for the least maximum relative error (Lawson's iteratively
reweighted least squares on Chebyshev-spaced points, the reference from mpmath at 40 digits),
over u in [0, 40] (beyond it f32 GELU is 0 or x) and |r| <= ln2/2.
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 40
C = 0.28125  # 9/32: exact in binary; any C near 0.28 fits with this degree
UMAX = 40.0
DEG_Q, DEG_EXP = 11, 7


def cheb_points(lo, hi, n):
    k = np.arange(n)
    return lo + (hi - lo) * (0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / n))


def lawson(x, y, deg, iters=100):
    """Minimax-like fit of y(x) by a degree-`deg` polynomial, in relative error."""
    v = np.vander(x, deg + 1, increasing=True)
    w = np.ones_like(x) / len(x)
    for _ in range(iters):
        s = np.sqrt(w) / np.abs(y)
        c, *_ = np.linalg.lstsq(v * s[:, None], y * s, rcond=None)
        err = np.abs(v @ c - y) / np.abs(y)
        w = w * err
        w /= w.sum()
    return c, err.max()


def fit_q():
    t = cheb_points(1 / (1 + C * UMAX), 1.0, 4000)
    u = (1 / t - 1) / C
    y = np.array([float(mp.erfc(mp.mpf(x) / mp.sqrt(2)) * mp.exp(mp.mpf(x) ** 2 / 2)) for x in u])
    return lawson(t, y, DEG_Q)


def fit_exp():
    h = np.log(2) / 2 * 1.001
    r = cheb_points(-h, h, 3000)
    y = np.array([float(mp.exp(mp.mpf(x))) for x in r])
    return lawson(r, y, DEG_EXP)


def rust(name, c):
    body = ",\n".join(f"    {float(v)!r}" for v in c[::-1])
    return f"const {name}: [f64; {len(c)}] = [\n{body},\n];"


if __name__ == "__main__":
    q, eq = fit_q()
    e, ee = fit_exp()
    print(f"// Q: degree {DEG_Q}, max relative error {eq:.2e}; highest power first (Horner).")
    print(rust("Q", q))
    print(f"// exp: degree {DEG_EXP}, max relative error {ee:.2e}; highest power first.")
    print(rust("EXP", e))
