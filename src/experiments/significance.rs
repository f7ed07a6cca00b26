//! Significance tests for the claims: the Wilcoxon signed-rank test and a sign-flip permutation
//! test on paired per-image differences, and a two-sample permutation test of a difference of
//! means. All p-values are two-sided; a claim also checks the effect's direction.
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Up to this many non-zero differences without ties, the Wilcoxon p-value is exact (as scipy).
pub const WILCOXON_EXACT_MAX: usize = 50;
/// Up to this many pairs the sign-flip test enumerates all 2^n sign patterns.
pub const PERMUTATION_EXACT_MAX: usize = 20;
/// Random sign patterns / relabellings drawn beyond the exact sizes.
pub const PERMUTATION_RESAMPLES: usize = 20_000;

/// How a p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PMethod {
    /// The exact null distribution.
    Exact,
    /// Normal approximation (with the tie correction of the variance).
    Normal,
    /// Seeded Monte Carlo resampling: p = (1 + hits) / (1 + resamples).
    MonteCarlo,
}

/// Result of the Wilcoxon signed-rank test on paired differences.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Wilcoxon {
    /// Non-zero differences (zeros are dropped: Wilcoxon's treatment).
    pub n: usize,
    /// Sum of the ranks of the positive differences (scipy's statistic for `alternative`s other
    /// than two-sided; two-sided scipy reports min(W+, W-)).
    pub w_plus: f64,
    /// Two-sided p-value (1 when n = 0).
    pub p: f64,
    /// Matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-), in [-1, 1]; 0 when n = 0.
    pub rank_biserial: f64,
    /// How `p` was computed.
    pub method: PMethod,
}

/// Standard normal upper tail P(Z > z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Wilcoxon signed-rank test of H0 "the differences are symmetric about 0". Non-finite values are
/// dropped with the zeros. Exact null distribution for at most [`WILCOXON_EXACT_MAX`] non-zero
/// differences without ties; otherwise the normal approximation with the tie-corrected variance
/// and no continuity correction (scipy's defaults: `zero_method="wilcox"`, `method="auto"`).
pub fn wilcoxon(diffs: &[f64]) -> Wilcoxon {
    let d: Vec<f64> = diffs
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x != 0.0)
        .collect();
    let n = d.len();
    if n == 0 {
        return Wilcoxon {
            n,
            w_plus: 0.0,
            p: 1.0,
            rank_biserial: 0.0,
            method: PMethod::Exact,
        };
    }
    let abs: Vec<f64> = d.iter().map(|x| x.abs()).collect();
    let (r, ties) = super::stats::ranks_with_ties(&abs);
    let w_plus: f64 = d
        .iter()
        .zip(&r)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    let total = (n * (n + 1)) as f64 / 2.0;
    let rank_biserial = (2.0 * w_plus - total) / total;
    let (p, method) = if ties.is_empty() && n <= WILCOXON_EXACT_MAX {
        // Number of subsets of {1..n} with each rank sum: the exact null distribution of W+.
        let max = n * (n + 1) / 2;
        let mut count = vec![0f64; max + 1];
        count[0] = 1.0;
        for k in 1..=n {
            for s in (k..=max).rev() {
                count[s] += count[s - k];
            }
        }
        let all = 2f64.powi(n as i32);
        let w = w_plus.round() as usize;
        let lower: f64 = count[..=w].iter().sum::<f64>() / all;
        let upper: f64 = count[w..].iter().sum::<f64>() / all;
        ((2.0 * lower.min(upper)).min(1.0), PMethod::Exact)
    } else {
        let mean = total / 2.0;
        let tie_term: f64 = ties.iter().map(|&t| (t * t * t - t) as f64).sum::<f64>() / 48.0;
        let var = (n * (n + 1) * (2 * n + 1)) as f64 / 24.0 - tie_term;
        let p = if var > 0.0 {
            (2.0 * normal_sf((w_plus - mean).abs() / var.sqrt())).min(1.0)
        } else {
            1.0
        };
        (p, PMethod::Normal)
    };
    Wilcoxon {
        n,
        w_plus,
        p,
        rank_biserial,
        method,
    }
}

/// Result of a permutation test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Permutation {
    /// Values in the test (paired differences, or both samples together).
    pub n: usize,
    /// The observed statistic (a mean, or a difference of means).
    pub statistic: f64,
    /// Two-sided p-value: the share of rearrangements with |statistic| at least the observed one.
    pub p: f64,
    /// How `p` was computed.
    pub method: PMethod,
}

/// Relative slack when comparing a rearranged statistic with the observed one, so that sums in
/// another order that are mathematically equal count as "at least as extreme".
const TIE_SLACK: f64 = 1e-12;

fn at_least(t: f64, observed: f64) -> bool {
    t.abs() >= observed.abs() * (1.0 - TIE_SLACK) - f64::MIN_POSITIVE
}

/// Paired sign-flip permutation test of H0 "the differences are symmetric about 0", statistic
/// the mean difference: every one of the 2^n sign patterns for n <= [`PERMUTATION_EXACT_MAX`]
/// (scipy's `permutation_test(..., permutation_type="samples")` gives the same p), else
/// [`PERMUTATION_RESAMPLES`] seeded random patterns.
pub fn sign_flip(diffs: &[f64], seed: u64) -> Permutation {
    let d: Vec<f64> = diffs.iter().copied().filter(|x| x.is_finite()).collect();
    let n = d.len();
    if n == 0 {
        return Permutation {
            n,
            statistic: f64::NAN,
            p: 1.0,
            method: PMethod::Exact,
        };
    }
    let observed = d.iter().sum::<f64>() / n as f64;
    let stat = |signs: &mut dyn FnMut(usize) -> bool| -> f64 {
        d.iter()
            .enumerate()
            .map(|(i, x)| if signs(i) { -x } else { *x })
            .sum::<f64>()
            / n as f64
    };
    if n <= PERMUTATION_EXACT_MAX {
        let patterns = 1u64 << n;
        let hits = (0..patterns)
            .filter(|mask| at_least(stat(&mut |i| mask >> i & 1 == 1), observed))
            .count();
        return Permutation {
            n,
            statistic: observed,
            p: hits as f64 / patterns as f64,
            method: PMethod::Exact,
        };
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let hits = (0..PERMUTATION_RESAMPLES)
        .filter(|_| at_least(stat(&mut |_| rng.random_bool(0.5)), observed))
        .count();
    Permutation {
        n,
        statistic: observed,
        p: (1 + hits) as f64 / (1 + PERMUTATION_RESAMPLES) as f64,
        method: PMethod::MonteCarlo,
    }
}

/// Two-sample permutation test of H0 "a and b come from one distribution", statistic
/// mean(a) - mean(b): all relabellings when there are at most 2^[`PERMUTATION_EXACT_MAX`] of
/// them, else [`PERMUTATION_RESAMPLES`] seeded random relabellings.
pub fn two_sample(a: &[f64], b: &[f64], seed: u64) -> Permutation {
    let a: Vec<f64> = a.iter().copied().filter(|x| x.is_finite()).collect();
    let b: Vec<f64> = b.iter().copied().filter(|x| x.is_finite()).collect();
    let (na, nb) = (a.len(), b.len());
    let n = na + nb;
    if na == 0 || nb == 0 {
        return Permutation {
            n,
            statistic: f64::NAN,
            p: 1.0,
            method: PMethod::Exact,
        };
    }
    let pooled: Vec<f64> = a.iter().chain(&b).copied().collect();
    let total: f64 = pooled.iter().sum();
    let diff = |sum_a: f64| sum_a / na as f64 - (total - sum_a) / nb as f64;
    let observed = diff(a.iter().sum());
    let combos = binomial(n, na);
    if combos <= (1u64 << PERMUTATION_EXACT_MAX) as f64 {
        let mut hits = 0u64;
        let mut all = 0u64;
        let mut pick: Vec<usize> = (0..na).collect();
        loop {
            all += 1;
            if at_least(diff(pick.iter().map(|&i| pooled[i]).sum()), observed) {
                hits += 1;
            }
            // Next combination in lexicographic order.
            let Some(i) = (0..na).rev().find(|&i| pick[i] != i + n - na) else {
                break;
            };
            pick[i] += 1;
            for j in i + 1..na {
                pick[j] = pick[j - 1] + 1;
            }
        }
        return Permutation {
            n,
            statistic: observed,
            p: hits as f64 / all as f64,
            method: PMethod::Exact,
        };
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut hits = 0;
    for _ in 0..PERMUTATION_RESAMPLES {
        // Partial Fisher-Yates: the first na positions are a uniform random subset.
        for i in 0..na {
            let j = rng.random_range(i..n);
            order.swap(i, j);
        }
        if at_least(diff(order[..na].iter().map(|&i| pooled[i]).sum()), observed) {
            hits += 1;
        }
    }
    Permutation {
        n,
        statistic: observed,
        p: (1 + hits) as f64 / (1 + PERMUTATION_RESAMPLES) as f64,
        method: PMethod::MonteCarlo,
    }
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k.min(n - k)).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_biserial_is_one_when_all_differences_are_positive() {
        let w = wilcoxon(&[0.5, 1.0, 2.0]);
        assert_eq!(w.n, 3);
        assert_eq!(w.w_plus, 6.0);
        assert_eq!(w.rank_biserial, 1.0);
        // Exact: only one of 8 sign patterns reaches W+ = 6, two-sided p = 2/8.
        assert_eq!(w.p, 0.25);
    }

    #[test]
    fn zeros_and_nan_are_dropped() {
        let w = wilcoxon(&[0.0, f64::NAN, 1.0, -2.0]);
        assert_eq!(w.n, 2);
        assert_eq!(wilcoxon(&[]).p, 1.0);
    }

    #[test]
    fn exact_sign_flip_counts_patterns() {
        // |mean| of +-1 +-1: patterns (1,1) and (-1,-1) reach |1|: p = 2/4.
        let p = sign_flip(&[1.0, 1.0], 0);
        assert_eq!(p.p, 0.5);
        assert_eq!(p.method, PMethod::Exact);
    }

    #[test]
    fn two_sample_exact_enumerates_every_split() {
        // a = {3}, b = {1, 2}: 3 splits, only {3} itself is as extreme as the observed 1.5 in
        // absolute value... and {1} gives 1 - 2.5 = -1.5 as well: p = 2/3.
        let p = two_sample(&[3.0], &[1.0, 2.0], 0);
        assert!((p.p - 2.0 / 3.0).abs() < 1e-15, "{}", p.p);
    }
}
