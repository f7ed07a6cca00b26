"""Expected p-values for tests/significance.rs, from scipy (never run by CI; output committed as
tests/fixtures/significance.json). Run: python scripts/significance_expected.py"""
import itertools, json
import numpy as np
from scipy import stats

rng = np.random.default_rng(2025)
cases = {}
# Wilcoxon: exact (small, no ties), normal with ties, normal for large n, zeros dropped.
small = np.round(rng.normal(0.3, 1.0, 9), 6)
ties = np.array([0.5, -0.5, 1.0, 1.0, 2.0, -1.0, 0.5, 3.0, 2.0, 0.25, -0.25, 1.5])
large = np.round(rng.normal(0.2, 1.0, 70), 6)
zeros = np.array([0.0, 1.2, -0.4, 0.0, 2.2, 0.9, -0.1, 1.7])
for name, d, method in [("small", small, "exact"), ("ties", ties, "approx"),
                        ("large", large, "approx"), ("zeros", zeros, "exact")]:
    nz = d[d != 0]
    r = stats.wilcoxon(nz, method=method, zero_method="wilcox", correction=False)
    rp = stats.wilcoxon(nz, method=method, zero_method="wilcox", correction=False,
                        alternative="greater")
    cases["wilcoxon_" + name] = {"diffs": d.tolist(), "p": float(r.pvalue),
                                 "w_plus": float(rp.statistic)}
# Sign-flip permutation test: exact (scipy enumerates all 2^n for n <= 20 here).
for name, d in [("flip_small", np.round(rng.normal(0.4, 1.0, 10), 6)),
                ("flip_null", np.round(rng.normal(0.0, 1.0, 12), 6))]:
    r = stats.permutation_test((d,), np.mean, permutation_type="samples",
                               n_resamples=np.inf, alternative="two-sided")
    cases[name] = {"diffs": d.tolist(), "p": float(r.pvalue)}
# Two-sample: brute force of P(|T*| >= |T|) over every split, checked against scipy where the
# null distribution is symmetric (equal sizes).
def brute(a, b):
    pooled = np.concatenate([a, b]); na = len(a)
    t = abs(a.mean() - b.mean()); hits = 0; total = 0
    for idx in itertools.combinations(range(len(pooled)), na):
        m = np.zeros(len(pooled), bool); m[list(idx)] = True
        total += 1
        hits += abs(pooled[m].mean() - pooled[~m].mean()) >= t * (1 - 1e-12)
    return hits / total
a = np.round(rng.normal(0.5, 1.0, 6), 6); b = np.round(rng.normal(0.0, 1.0, 9), 6)
cases["two_sample_unequal"] = {"a": a.tolist(), "b": b.tolist(), "p": brute(a, b)}
a2 = np.round(rng.normal(0.8, 1.0, 7), 6); b2 = np.round(rng.normal(0.0, 1.0, 7), 6)
sp = stats.permutation_test((a2, b2), lambda x, y: np.mean(x) - np.mean(y),
                            permutation_type="independent", n_resamples=np.inf).pvalue
assert abs(sp - brute(a2, b2)) < 1e-12, (sp, brute(a2, b2))
cases["two_sample_equal"] = {"a": a2.tolist(), "b": b2.tolist(), "p": float(sp)}
with open("tests/fixtures/significance.json", "w") as f:
    json.dump({"scipy": stats.__name__ and __import__("scipy").__version__, "cases": cases}, f, indent=1)
print(json.dumps(cases, indent=1)[:3000])
