//! The report's one diverging colour scale: red for positive values, blue for negative, opacity
//! growing with the magnitude. Heat-map pixels, path-diagram nodes and colour bars all use it.

/// Positive values.
pub const RED: &str = "#b2182b";
/// Negative values.
pub const BLUE: &str = "#2166ac";

/// Radius and fill of a path-diagram node for value `v` of a set whose largest |value| is `max`:
/// area proportional to |v| up to `rmax`, never below `rmin`; the sign's colour.
pub fn node(v: f64, max: f64, (rmin, rmax): (f64, f64)) -> (f64, &'static str) {
    let r = if max > 0.0 {
        (rmax * (v.abs() / max).sqrt()).max(rmin)
    } else {
        rmin
    };
    (r, if v >= 0.0 { RED } else { BLUE })
}

/// Fill and opacity of a value on a symmetric scale [-max, max]: the sign's colour, opacity
/// growing with |v| (0 shows the image through).
pub fn diverging(v: f64, max: f64) -> (&'static str, f64) {
    let t = if max > 0.0 && v.is_finite() {
        (v / max).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    (if t >= 0.0 { RED } else { BLUE }, 0.85 * t.abs())
}
