//! Small statistics: means, quartiles, seeded bootstrap intervals.
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Reads a JSON number or `null` (how serde_json writes NaN) as f64.
pub fn de_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Location and spread of a sample: quartiles and a 95% bootstrap interval of the mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Finite values summarised.
    pub n: usize,
    /// Arithmetic mean (NaN when `n` is 0, like every field below).
    #[serde(deserialize_with = "de_f64")]
    pub mean: f64,
    /// Smallest value.
    #[serde(deserialize_with = "de_f64")]
    pub min: f64,
    /// First quartile (numpy's linear interpolation).
    #[serde(deserialize_with = "de_f64")]
    pub q1: f64,
    /// Median (the 0.5 quantile, interpolated).
    #[serde(deserialize_with = "de_f64")]
    pub median: f64,
    /// Third quartile.
    #[serde(deserialize_with = "de_f64")]
    pub q3: f64,
    /// Largest value.
    #[serde(deserialize_with = "de_f64")]
    pub max: f64,
    /// Lower end of the 95% percentile bootstrap interval of the mean (the mean for n < 2).
    #[serde(deserialize_with = "de_f64")]
    pub ci_low: f64,
    /// Upper end of that interval.
    #[serde(deserialize_with = "de_f64")]
    pub ci_high: f64,
}

/// Arithmetic mean; NaN for no values.
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Quantile of sorted values with linear interpolation (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Bootstrap draws of every interval the report and the claims show.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// The one seed of those draws: a number gets the same interval wherever it appears.
pub const BOOTSTRAP_SEED: u64 = 7;

/// [`spread`] with the shared bootstrap ([`BOOTSTRAP_RESAMPLES`] draws, [`BOOTSTRAP_SEED`]).
pub fn summarize(values: &[f64]) -> Spread {
    spread(values, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED)
}

/// Summary of `values` (non-finite ones dropped); `resamples` bootstrap draws, seeded.
pub fn spread(values: &[f64], resamples: usize, seed: u64) -> Spread {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        let nan = f64::NAN;
        return Spread {
            n,
            mean: nan,
            min: nan,
            q1: nan,
            median: nan,
            q3: nan,
            max: nan,
            ci_low: nan,
            ci_high: nan,
        };
    }
    let m = mean(&v);
    let (ci_low, ci_high) = if n < 2 || resamples == 0 {
        (m, m)
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut means: Vec<f64> = (0..resamples)
            .map(|_| (0..n).map(|_| v[rng.random_range(0..n)]).sum::<f64>() / n as f64)
            .collect();
        means.sort_by(f64::total_cmp);
        (quantile(&means, 0.025), quantile(&means, 0.975))
    };
    Spread {
        n,
        mean: m,
        min: v[0],
        q1: quantile(&v, 0.25),
        median: quantile(&v, 0.5),
        q3: quantile(&v, 0.75),
        max: v[n - 1],
        ci_low,
        ci_high,
    }
}

/// Average ranks (1-based) of `v`, and the sizes of the groups of ties.
pub fn ranks_with_ties(v: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        if j > i {
            ties.push(j - i + 1);
        }
        i = j + 1;
    }
    (r, ties)
}
