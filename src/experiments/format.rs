//! How numbers read in figures, tables and claims' evidence.

/// Compact number formatting for labels and tooltips.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn numbers_are_compact_and_keep_their_magnitude() {
        let cases = [
            (0.0, "0"),
            (3.0, "3"),
            (-12.0, "-12"),
            (0.12345, "0.123"),
            (-0.5, "-0.500"),
            (2.345, "2.35"),
            (123.4, "123"),
            (99999.0, "99999"),
            (123456.0, "1.23e5"),
            (0.000123, "1.23e-4"),
            (f64::NAN, "n/a"),
            (f64::INFINITY, "n/a"),
        ];
        for (v, want) in cases {
            assert_eq!(num(v), want, "{v}");
        }
    }
}
