//! The number rules: which JSON numbers Avro's `long` and `double` carry without changing their value, and how
//! Avro's `float` and `double` values are written back as JSON.

use serde_json::{Number, Value};

/// Finds the first number Avro cannot carry exactly (see [`representable`]): the check of the route before
/// [`super::transcode`], kept as the tests' oracle.
#[cfg(test)]
pub(super) fn check_numbers(value: &Value) -> Result<(), String> {
    match value {
        Value::Number(n) if !representable(n) => Err(n.to_string()),
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// True when Avro carries the number without changing its value: an integer literal within the `long` range
/// (sent as a long), or any other literal whose decimal value is exactly what the nearest double prints back
/// as (sent as a double). `1.10` and `1e2` pass (they come back as `1.1` and `100.0`, the same values);
/// `18446744073709551616` and `3.14159265358979323846` do not (the first needs more than 64 bits, the second
/// more than a double's 17 digits).
pub fn representable(n: &Number) -> bool {
    representable_text(n.as_str())
}

/// [`representable`] for a number's text as serde_json keeps it.
pub(super) fn representable_text(text: &str) -> bool {
    if !text.contains(['.', 'e', 'E']) {
        return text.parse::<i64>().is_ok();
    }
    exact_double(text).is_some()
}

/// The double a number with a fraction or exponent is sent as, when it holds the number's value exactly (see
/// [`representable`]).
pub(super) fn exact_double(text: &str) -> Option<f64> {
    let f = text.parse::<f64>().ok()?;
    // Any decimal of at most 15 significant digits survives a round trip through a double (DBL_DIG), which
    // covers nearly every number people write; only longer ones need the exact comparison.
    // (Subnormal numbers have fewer digits of precision, so they take the exact path.)
    let exact = (f.is_normal() && significant_digits(text) <= 15)
        // Compared with what the server will write for that double (serde_json's shortest form), since two
        // shortest forms can differ in the last digit between formatters.
        || (f.is_finite()
            && serde_json::to_string(&f).is_ok_and(|out| decimal_value(text) == decimal_value(&out)));
    exact.then_some(f)
}

/// The string Avro's JSON encoding writes for a `double` or `float` that has no JSON number: `"NaN"`,
/// `"Infinity"`, `"-Infinity"`; `None` for a finite value.
pub(super) fn non_finite_name(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f.is_infinite() {
        Some(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        None
    }
}

/// A `double` as JSON: the shortest number that reads back as the same double, or a string for NaN and the
/// infinities ([`non_finite_name`]).
pub(super) fn double_to_json(f: f64) -> Value {
    match (Number::from_f64(f), non_finite_name(f)) {
        (Some(n), _) => Value::Number(n),
        (None, name) => Value::String(name.unwrap_or("NaN").to_owned()),
    }
}

/// A `float` as JSON: the shortest decimal that reads back as the same float (`0.1`, not the
/// `0.10000000149011612` of the same value widened to a double), or a string for NaN and the infinities.
pub(super) fn float_to_json(f: f32) -> Value {
    // Rust prints the shortest digits that round-trip as f32; read as a double, they come back out of serde_json
    // as the same digits, in the same style as every other number the server writes.
    let shortest = f.to_string().parse::<f64>().unwrap_or(f64::from(f));
    double_to_json(shortest)
}

/// Digits of the mantissa from the first non-zero digit on (an upper bound on the significant digits).
fn significant_digits(text: &str) -> usize {
    text.bytes()
        .take_while(|b| !matches!(b, b'e' | b'E'))
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count()
}

/// A JSON number literal's value as (negative, significant digits, exponent of the last digit), with zeros
/// trimmed so equal values compare equal; every zero is `(sign, "", 0)`.
fn decimal_value(text: &str) -> (bool, String, i64) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (
            &unsigned[..at],
            unsigned[at + 1..].parse::<i64>().unwrap_or(0),
        ),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    let mut exponent = exponent - fraction.len() as i64;
    let trimmed = digits.trim_end_matches('0');
    exponent += (digits.len() - trimmed.len()) as i64;
    let significant = trimmed.trim_start_matches('0');
    if significant.is_empty() {
        return (negative, String::new(), 0);
    }
    (negative, significant.to_owned(), exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_doubles_and_floats_are_written_as_avros_json_encoding_writes_them() {
        for (f, name) in [
            (f64::NAN, "NaN"),
            (-f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(double_to_json(f), Value::String(name.into()));
            assert_eq!(float_to_json(f as f32), Value::String(name.into()));
        }
        assert_eq!(non_finite_name(f64::MAX), None);
        assert_eq!(double_to_json(5.3).to_string(), "5.3");
    }

    #[test]
    fn floats_are_written_as_their_shortest_decimal() {
        for (f, text) in [
            (0.1f32, "0.1"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (16_777_217.0, "16777216.0"),
            (f32::MAX, "3.4028235e+38"),
            (f32::MIN_POSITIVE, "1.1754944e-38"),
            (1e-45, "1e-45"),
            (1.0 / 3.0, "0.33333334"),
        ] {
            assert_eq!(float_to_json(f).to_string(), text, "{f:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_finite_float_is_written_shortest_and_reads_back_exactly(bits: u32) {
            let f = f32::from_bits(bits);
            proptest::prop_assume!(f.is_finite());
            let text = float_to_json(f).to_string();
            proptest::prop_assert_eq!(text.parse::<f32>().map(f32::to_bits), Ok(bits), "{}", text);
            // The same value as Rust's shortest round-trip form of the f32.
            proptest::prop_assert_eq!(text.parse::<f64>(), format!("{f:e}").parse::<f64>(), "{}", text);
        }
    }

    #[test]
    fn numbers_pass_exactly_when_their_value_survives() {
        let number = |text: &str| serde_json::from_str::<Number>(text).unwrap();
        for ok in [
            "0",
            "-0",
            "9223372036854775807",
            "-9223372036854775808",
            "1.10",
            "1e2",
            "0.1",
            "-0.0",
            "5e-324",
            "1.7976931348623157e308",
            "3.141592653589793",
        ] {
            assert!(representable(&number(ok)), "{ok} should pass");
        }
        for refused in [
            "9223372036854775808",
            "18446744073709551616",
            "123456789012345678901234567890",
            "3.14159265358979323846",
            "0.30000000000000000001",
            "1e400",
        ] {
            assert!(
                !representable(&number(refused)),
                "{refused} should be refused"
            );
        }
    }
}
