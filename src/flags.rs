//! Reading flag values the programs share.
//!
//! Owns the one reading of a human duration (`500ms`, `1.5s`, `2m`, or a bare number of
//! seconds). Each program decides its own range and error text; this only reads.

/// Seconds in `text`: a non-negative finite number with an optional unit (`ms`, `s`,
/// `m`; none means seconds). `None` if it is not one.
pub fn seconds(text: &str) -> Option<f64> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        assert_eq!(seconds("500ms"), Some(0.5));
        assert_eq!(seconds(" 2.5 "), Some(2.5));
        assert_eq!(seconds("30s"), Some(30.0));
        assert_eq!(seconds("1m"), Some(60.0));
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("NaN"), None);
        assert_eq!(seconds("soon"), None);
    }
}
