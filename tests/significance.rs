//! The claims' significance tests against scipy 1.17 (`scripts/significance_expected.py`, output
//! committed in tests/fixtures/significance.json).
use neuronpath::experiments::significance::{sign_flip, two_sample, wilcoxon, PMethod};
use serde_json::Value;

fn cases() -> Value {
    let text = include_str!("fixtures/significance.json");
    serde_json::from_str::<Value>(text).unwrap()["cases"].clone()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn wilcoxon_matches_scipy_exact_tied_large_and_with_zeros() {
    let c = cases();
    for (name, method) in [
        ("wilcoxon_small", PMethod::Exact),
        ("wilcoxon_ties", PMethod::Normal),
        ("wilcoxon_large", PMethod::Normal),
        ("wilcoxon_zeros", PMethod::Exact),
    ] {
        let w = wilcoxon(&floats(&c[name]["diffs"]));
        let p = c[name]["p"].as_f64().unwrap();
        assert_eq!(w.method, method, "{name}");
        assert!(
            (w.p - p).abs() <= 1e-12 * p.max(1e-300) + 1e-15,
            "{name}: {} vs scipy {p}",
            w.p
        );
        assert_eq!(w.w_plus, c[name]["w_plus"].as_f64().unwrap(), "{name}");
    }
}

#[test]
fn sign_flip_matches_scipy_exact_permutation_test() {
    let c = cases();
    for name in ["flip_small", "flip_null"] {
        let r = sign_flip(&floats(&c[name]["diffs"]), 1);
        let p = c[name]["p"].as_f64().unwrap();
        assert_eq!(r.method, PMethod::Exact);
        assert!((r.p - p).abs() < 1e-12, "{name}: {} vs scipy {p}", r.p);
    }
}

#[test]
fn two_sample_matches_enumeration_and_scipy() {
    let c = cases();
    for name in ["two_sample_unequal", "two_sample_equal"] {
        let r = two_sample(&floats(&c[name]["a"]), &floats(&c[name]["b"]), 1);
        let p = c[name]["p"].as_f64().unwrap();
        assert_eq!(r.method, PMethod::Exact);
        assert!((r.p - p).abs() < 1e-12, "{name}: {} vs {p}", r.p);
    }
}

#[test]
fn monte_carlo_p_values_are_seeded_and_near_the_exact_ones() {
    // 30 pairs: beyond exact enumeration. Same seed, same p; the p agrees with the Wilcoxon
    // normal approximation's ballpark and stays within Monte Carlo error of itself across seeds.
    let d: Vec<f64> = (0..30)
        .map(|i| ((i * 37 % 17) as f64 - 7.0) / 5.0)
        .collect();
    let a = sign_flip(&d, 11);
    assert_eq!(a.method, PMethod::MonteCarlo);
    assert_eq!(a.p, sign_flip(&d, 11).p);
    let b = sign_flip(&d, 12);
    assert!((a.p - b.p).abs() < 0.03, "{} vs {}", a.p, b.p);
    let x: Vec<f64> = (0..25).map(|i| (i as f64 * 0.7).sin()).collect();
    let y: Vec<f64> = (0..25).map(|i| (i as f64 * 1.3).cos() + 0.4).collect();
    let t = two_sample(&x, &y, 5);
    assert_eq!(t.method, PMethod::MonteCarlo);
    assert_eq!(t.p, two_sample(&x, &y, 5).p);
}
