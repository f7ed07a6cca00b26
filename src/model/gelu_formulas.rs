//! GELU and its derivative, element-wise.
//!
//! f64 (the golden tests' dtype) evaluates the exact formulas with libm's erf. For f32 the same
//! scalar path cost ~10% of a ViT-B attribution pass (a scalar f64 erf and exp per hidden unit),
//! so erf-GELU in f32 uses a branch-free form that the compiler vectorises (AVX-512 when the CPU
//! has it, chosen at run time; both code paths give bit-identical results because neither uses
//! fused multiply-adds):
//!
//!   Phi(x) = 1 - erfc(z)/2 (x >= 0) or erfc(|z|)/2 (x < 0), z = x/sqrt(2),
//!   erfc(a) = t exp(-a^2 + P(t)), t = 1/(1 + a/2), a >= 0,
//!
//! with P the degree-9 Chebyshev fit of Press et al., Numerical Recipes (section 6.2, `erfcc`),
//! whose fractional error is below 1.2e-7 for every a >= 0, evaluated in f64. So GELU(x) =
//! x Phi(x) has a relative error of at most ~1.2e-7 (one f32 ulp) before rounding to f32, also in
//! the negative tail where `1 + erf` would cancel; tests compare it with the f64 formula.
use crate::model::config::Gelu;

const INV_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

/// (gelu(x), gelu'(x)) by the exact formulas (one erf or tanh for both).
pub(crate) fn pair_exact(kind: Gelu, x: f64) -> (f64, f64) {
    match kind {
        Gelu::Erf => {
            let cdf = 0.5 * (1.0 + libm::erf(x * INV_SQRT_2));
            (x * cdf, cdf + x * INV_SQRT_2PI * (-0.5 * x * x).exp())
        }
        Gelu::Tanh => {
            let t = (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh();
            let d = 0.5 * (1.0 + t)
                + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            (0.5 * x * (1.0 + t), d)
        }
        Gelu::Quick => {
            let s = sigmoid(QUICK * x);
            (x * s, s + QUICK * x * s * (1.0 - s))
        }
    }
}

/// CLIP's quick-GELU slope: `x sigmoid(1.702 x)`.
const QUICK: f64 = 1.702;

/// The logistic function without overflow for large |x|.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// gelu(x) by the exact formula.
pub(crate) fn value_exact(kind: Gelu, x: f64) -> f64 {
    match kind {
        Gelu::Erf => 0.5 * x * (1.0 + libm::erf(x * INV_SQRT_2)),
        Gelu::Tanh | Gelu::Quick => pair_exact(kind, x).0,
    }
}

/// e^x for x in [-708, 709] to ~1e-15 relative, branch-free: x = k ln2 + r, |r| <= ln2/2,
/// e^r by its Taylor series to r^12, 2^k built in the exponent bits.
#[inline(always)]
fn exp(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.clamp(-708.0, 709.0);
    let m = x * std::f64::consts::LOG2_E + MAGIC;
    let k = m - MAGIC;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    for d in [
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    let k = (m.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    p * f64::from_bits(((k + 1023) as u64) << 52)
}

/// Phi(x) and the standard normal density at x (see the module comment).
#[inline(always)]
fn cdf_pdf(x: f64) -> (f64, f64) {
    const P: [f64; 10] = [
        0.170_872_77,
        -0.822_152_23,
        1.488_515_87,
        -1.135_203_98,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_68,
        -1.265_512_23,
    ];
    let a = (x * INV_SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * a);
    let mut poly = 0.0;
    for c in P {
        poly = poly * t + c;
    }
    let half_erfc = 0.5 * t * exp(-a * a + poly);
    let cdf = if x >= 0.0 { 1.0 - half_erfc } else { half_erfc };
    (cdf, INV_SQRT_2PI * exp(-0.5 * x * x))
}

#[inline(always)]
fn erf_f32_values(vals: &mut [f32]) {
    for v in vals.iter_mut() {
        let x = *v as f64;
        *v = (x * cdf_pdf(x).0) as f32;
    }
}

#[inline(always)]
fn erf_f32_pairs(vals: &mut [f32], ders: &mut [f32]) {
    for (v, d) in vals.iter_mut().zip(ders.iter_mut()) {
        let x = *v as f64;
        let (cdf, pdf) = cdf_pdf(x);
        *v = (x * cdf) as f32;
        *d = (cdf + x * pdf) as f32;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
unsafe fn erf_f32_avx512(vals: &mut [f32], ders: Option<&mut [f32]>) {
    match ders {
        Some(d) => erf_f32_pairs(vals, d),
        None => erf_f32_values(vals),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn erf_f32_avx2(vals: &mut [f32], ders: Option<&mut [f32]>) {
    match ders {
        Some(d) => erf_f32_pairs(vals, d),
        None => erf_f32_values(vals),
    }
}

/// Erf-GELU of f32 values in place, derivatives into `ders` when given (see the module comment).
pub(crate) fn erf_f32(vals: &mut [f32], ders: Option<&mut [f32]>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { erf_f32_avx512(vals, ders) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return unsafe { erf_f32_avx2(vals, ders) };
        }
    }
    match ders {
        Some(d) => erf_f32_pairs(vals, d),
        None => erf_f32_values(vals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 kernel against f64 libm (erfc, which unlike `1 + erf` keeps the negative tail),
    /// over the range GELU inputs take and the tails: within 2 f32 ulps (relative 2.4e-7), or
    /// 1e-38 absolute where f32 underflows.
    #[test]
    fn f32_kernel_matches_exact_formula() {
        let xs: Vec<f32> = (-200_000..=200_000)
            .map(|i| i as f32 * 1e-4)
            .chain([-40.0, -20.0, -12.0, 1e-30, -1e-30, 0.0, 30.0, 1e30, -1e30])
            .collect();
        let mut vals = xs.clone();
        let mut ders = vec![0.0; xs.len()];
        erf_f32(&mut vals, Some(&mut ders));
        let mut only = xs.clone();
        erf_f32(&mut only, None);
        let mut plain = xs.clone();
        let mut plain_d = vec![0.0; xs.len()];
        erf_f32_pairs(&mut plain, &mut plain_d);
        for (i, &x) in xs.iter().enumerate() {
            let x64 = x as f64;
            let cdf = 0.5 * libm::erfc(-x64 * INV_SQRT_2);
            let xpdf = x64 * INV_SQRT_2PI * (-0.5 * x64 * x64).exp();
            let (v, d) = (x64 * cdf, cdf + xpdf);
            let tol = |e: f64| 2.4e-7 * e.abs() + 1e-38;
            assert!(
                (vals[i] as f64 - v).abs() <= tol(v),
                "gelu({x}) = {} vs {v}",
                vals[i]
            );
            // gelu' = Phi + x phi crosses zero near -0.75: relative to the terms it sums.
            assert!(
                (ders[i] as f64 - d).abs() <= tol(cdf.abs() + xpdf.abs()),
                "gelu'({x}) = {} vs {d}",
                ders[i]
            );
            assert_eq!(
                only[i].to_bits(),
                vals[i].to_bits(),
                "values alone, x = {x}"
            );
            // The vectorised and the portable code paths agree bit for bit.
            assert_eq!(
                plain[i].to_bits(),
                vals[i].to_bits(),
                "portable path, x = {x}"
            );
            assert_eq!(
                plain_d[i].to_bits(),
                ders[i].to_bits(),
                "portable path', x = {x}"
            );
        }
        let mut nan = [f32::NAN];
        erf_f32(&mut nan, None);
        assert!(nan[0].is_nan(), "NaN must propagate");
    }
}
