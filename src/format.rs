//! How numbers read, in one place: the report, the figures, the claims' evidence, the CSV files
//! and the commands' closing summaries all format through these functions, so a probability,
//! a JAS, an effect or a p-value reads the same wherever it appears.
//!
//! For people ([`num`], [`pct`], [`pp`], [`p_value`], [`with_ci`], [`interval`]): about three significant digits,
//! scientific notation outside [0.001, 100000), "n/a" for what is not a number. For machines
//! ([`csv_num`], [`csv_field`]): every digit that round-trips, missing values as empty fields.

/// A measured value (probability, JAS, effect, ratio, similarity): three decimals below 1, two
/// below 100, none above; scientific outside [0.001, 100000). What rounds to a whole number is
/// written as one ("1", never "1.000" beside "1").
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    let s = if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    match s.trim_end_matches('0').strip_suffix('.') {
        Some("-0") => "0".into(),
        Some(whole) => whole.into(),
        None => s,
    }
}

/// A fraction as a percentage with one decimal: 0.8375 -> "83.8%".
pub fn pct(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "n/a".into();
    }
    format!("{:.1}%", 100.0 * fraction)
}

/// A change of a fraction in percentage points with its sign: -0.125 -> "-12.5 pp".
pub fn pp(delta: f64) -> String {
    if !delta.is_finite() {
        return "n/a".into();
    }
    format!("{:+.1} pp", 100.0 * delta)
}

/// A p-value: "p = 0.012", "p = 3.10e-5", "p = 1".
pub fn p_value(p: f64) -> String {
    format!("p = {}", num(p))
}

/// A mean with its interval: "0.837 [0.801, 0.862]".
pub fn with_ci(mean: f64, low: f64, high: f64) -> String {
    let [m, l, h] = interval(mean, low, high);
    format!("{m} [{l}, {h}]")
}

/// A mean and its interval's ends written alike, so that one interval never reads
/// "1.00 [1.000, 1.00]": the notation [`num`] would give the smallest non-zero magnitude of
/// the three (scientific for all when one needs it), and no whole-number shortcut.
pub fn interval(mean: f64, low: f64, high: f64) -> [String; 3] {
    let vals = [mean, low, high];
    let mags = vals
        .iter()
        .filter(|v| v.is_finite() && **v != 0.0)
        .map(|v| v.abs());
    let (small, large) = mags.fold((f64::INFINITY, 0.0f64), |(s, l), a| (s.min(a), l.max(a)));
    vals.map(|v| {
        if !v.is_finite() {
            "n/a".into()
        } else if small < 1e-3 || large >= 1e5 {
            format!("{v:.2e}")
        } else if small >= 100.0 {
            format!("{v:.0}")
        } else if small >= 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        }
    })
}

/// A number in a CSV file: the shortest text that reads back as the same f64 (scientific below
/// 1e-4 and from 1e15), an empty field for NaN (missing), `inf` / `-inf` for infinities.
pub fn csv_num(v: f64) -> String {
    if v.is_nan() {
        return String::new();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// A text field in a CSV file, quoted when it holds a separator, quote or line break (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (0.99999, "1"),
            (1.004, "1"),
            (1.006, "1.01"),
            (-0.0004, "-4.00e-4"),
            (-0.0, "0"),
            (10.0, "10"),
            (0.1, "0.100"),
        ];
        for (v, want) in cases {
            assert_eq!(num(v), want, "{v}");
        }
    }

    #[test]
    fn percentages_p_values_and_intervals() {
        assert_eq!(pct(0.8375), "83.8%");
        assert_eq!(pct(1.0), "100.0%");
        assert_eq!(pct(0.0), "0.0%");
        assert_eq!(pct(f64::NAN), "n/a");
        assert_eq!(pp(-0.125), "-12.5 pp");
        assert_eq!(pp(0.02), "+2.0 pp");
        assert_eq!(pp(0.0), "+0.0 pp");
        assert_eq!(p_value(0.0123), "p = 0.012");
        assert_eq!(p_value(3.1e-5), "p = 3.10e-5");
        assert_eq!(p_value(1.0), "p = 1");
        assert_eq!(with_ci(0.8371, 0.8012, 0.86), "0.837 [0.801, 0.860]");
        assert_eq!(with_ci(1.5, f64::NAN, 2.0), "1.50 [n/a, 2.00]");
        // One notation per interval, from its smallest magnitude.
        assert_eq!(with_ci(1.0, 0.99991, 1.0), "1.000 [1.000, 1.000]");
        assert_eq!(with_ci(1.13, 1.06, 1.23), "1.13 [1.06, 1.23]");
        assert_eq!(with_ci(0.995, 0.953, 1.04), "0.995 [0.953, 1.040]");
        assert_eq!(
            with_ci(2.15e-4, -6.26e-6, 1.0e-3),
            "2.15e-4 [-6.26e-6, 1.00e-3]"
        );
        assert_eq!(with_ci(0.0, 0.0, 0.0), "0 [0, 0]");
        assert_eq!(with_ci(250.0, 120.4, 300.0), "250 [120, 300]");
    }

    #[test]
    fn csv_numbers_round_trip_and_mark_missing_values() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1.0 / 3.0,
            -2.5e-7,
            1e-4,
            123456.789,
            6.02e23,
            f64::MIN_POSITIVE,
            f64::MAX,
        ] {
            let s = csv_num(v);
            assert_eq!(s.parse::<f64>().unwrap(), v, "{v} -> {s}");
            assert!(!s.contains(','), "{s}");
        }
        assert_eq!(csv_num(0.5), "0.5");
        assert_eq!(csv_num(3.0), "3");
        assert_eq!(csv_num(2.5e-7), "2.5e-7");
        assert_eq!(csv_num(f64::NAN), "");
        assert_eq!(csv_num(f64::INFINITY), "inf");
        assert_eq!(csv_num(f64::NEG_INFINITY), "-inf");
        assert_eq!("inf".parse::<f64>().unwrap(), f64::INFINITY);
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain/path.png"), "plain/path.png");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(""), "");
    }
}
