//! Any writer schema to natural JSON: the server's path for payloads that do not use zavro's JSON schema.
//!
//! Records become objects (fields in schema order), unions their value (no `{"type": value}` wrapper), enums
//! their symbol, maps objects (keys sorted: Avro maps have no order), bytes and fixed a string of code points
//! 0–255 (Avro's own JSON encoding), and logical types their usual text: `date` `2026-11-28`, timestamps RFC 3339
//! (`local-` ones without offset), times `HH:MM:SS.ffffff`, `decimal` an exact decimal string, `uuid` its string;
//! `float` and `double` their shortest decimal, NaN and the infinities the strings `"NaN"`, `"Infinity"`,
//! `"-Infinity"` (as in Avro's JSON encoding).

use apache_avro::{
    Schema,
    schema::{Name, NamesRef, SchemaKind},
    types::{Value, ValueKind},
};
use serde_json::{Map, Value as Json};
use std::collections::HashSet;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::numbers::{double_to_json, float_to_json};

/// Converts a decoded value of `schema` to natural JSON; `names` resolves named types referred to by name.
pub fn to_json(value: Value, schema: &Schema, names: &NamesRef) -> Result<Json, String> {
    let schema = resolve(schema, names)?;
    Ok(match (value, schema) {
        (Value::Null, _) => Json::Null,
        (Value::Boolean(b), _) => Json::Bool(b),
        (Value::Int(i), _) => Json::from(i),
        (Value::Long(i), _) => Json::from(i),
        (Value::Float(f), _) => float_to_json(f),
        (Value::Double(f), _) => double_to_json(f),
        (Value::Bytes(bytes) | Value::Fixed(_, bytes), _) => {
            Json::String(bytes.iter().map(|&b| char::from(b)).collect())
        }
        (Value::String(s) | Value::Enum(_, s), _) => Json::String(s),
        (Value::Uuid(u), _) => Json::String(u.to_string()),
        (Value::Union(index, inner), Schema::Union(union)) => {
            let variant = union
                .get_variant(index as usize)
                .map_err(|e| e.to_string())?;
            to_json(*inner, variant, names)?
        }
        (Value::Array(items), Schema::Array(array)) => Json::Array(
            items
                .into_iter()
                .map(|item| to_json(item, &array.items, names))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Map(entries), Schema::Map(map)) => {
            let mut entries: Vec<_> = entries.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut object = Map::new();
            for (key, item) in entries {
                object.insert(key, to_json(item, &map.types, names)?);
            }
            Json::Object(object)
        }
        (Value::Record(fields), Schema::Record(record)) => {
            let mut object = Map::new();
            for ((name, item), field) in fields.into_iter().zip(&record.fields) {
                object.insert(name, to_json(item, &field.schema, names)?);
            }
            Json::Object(object)
        }
        (Value::Date(days), _) => Json::String(date(days)?),
        (Value::TimeMillis(ms), _) => Json::String(time_of_day(i64::from(ms) * 1000)),
        (Value::TimeMicros(us), _) => Json::String(time_of_day(us)),
        (Value::TimestampMillis(t), _) => Json::String(timestamp(i128::from(t) * 1_000_000, true)?),
        (Value::TimestampMicros(t), _) => Json::String(timestamp(i128::from(t) * 1000, true)?),
        (Value::TimestampNanos(t), _) => Json::String(timestamp(i128::from(t), true)?),
        (Value::LocalTimestampMillis(t), _) => {
            Json::String(timestamp(i128::from(t) * 1_000_000, false)?)
        }
        (Value::LocalTimestampMicros(t), _) => {
            Json::String(timestamp(i128::from(t) * 1000, false)?)
        }
        (Value::LocalTimestampNanos(t), _) => Json::String(timestamp(i128::from(t), false)?),
        (Value::Decimal(d), Schema::Decimal(decimal)) => {
            // Twice the request's text budget, which would refuse it anyway: not worth allocating first (a
            // schema's precision and scale have no bound; 10^12 would be a terabyte).
            if decimal.scale > 2 * super::decode::MAX_REQUEST_DECODED_BYTES {
                return Err(format!(
                    "a decimal of scale {} has more digits than a request may write",
                    decimal.scale
                ));
            }
            let unscaled: num_bigint::BigInt = d.into();
            Json::String(with_scale(&unscaled.to_string(), decimal.scale))
        }
        (Value::BigDecimal(d), _) => Json::String(d.to_string()),
        (Value::Duration(d), _) => serde_json::json!({
            "months": u32::from(d.months()),
            "days": u32::from(d.days()),
            "millis": u32::from(d.millis()),
        }),
        (value, schema) => {
            // Not the schema's canonical form: apache-avro's canonical_form() can panic on hostile schemas.
            return Err(format!(
                "a {:?} value does not match a {:?} schema",
                ValueKind::from(&value),
                SchemaKind::from(schema)
            ));
        }
    })
}

fn resolve<'a>(schema: &'a Schema, names: &NamesRef<'a>) -> Result<&'a Schema, String> {
    match schema {
        Schema::Ref { name } => names
            .get(name)
            .copied()
            .ok_or_else(|| format!("unknown type {name}")),
        other => Ok(other),
    }
}

/// A `date` as `YYYY-MM-DD`, for the years 0 to 9999 (the ones RFC 3339 writes, as for timestamps).
pub(super) fn date(days: i32) -> Result<String, String> {
    let day = OffsetDateTime::UNIX_EPOCH
        .checked_add(time::Duration::days(i64::from(days)))
        .filter(|day| (0..=9999).contains(&day.year()))
        .ok_or_else(|| {
            format!("date {days} days from 1970-01-01 is outside the years 0 to 9999")
        })?;
    Ok(format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    ))
}

fn time_of_day(micros: i64) -> String {
    let micros = micros.rem_euclid(86_400_000_000);
    let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
    format!(
        "{:02}:{:02}:{:02}.{frac:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A timestamp as RFC 3339, `YYYY-MM-DDTHH:MM:SS[.fraction]` then `Z` (`utc`) or nothing (a local timestamp):
/// the fraction only when not zero, with its trailing zeros dropped (1 to 9 digits), for the years 0 to 9999.
pub(super) fn timestamp(nanos: i128, utc: bool) -> Result<String, String> {
    let out_of_range =
        || format!("timestamp {nanos} ns from 1970-01-01T00:00:00 is outside the years 0 to 9999");
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| out_of_range())?;
    let text = t.format(&Rfc3339).map_err(|_| out_of_range())?;
    Ok(if utc {
        text
    } else {
        text.trim_end_matches('Z').to_owned()
    })
}

/// Puts the decimal point `scale` digits from the right of an integer's digits.
fn with_scale(digits: &str, scale: usize) -> String {
    if scale == 0 {
        return digits.to_owned();
    }
    let (sign, digits) = digits.strip_prefix('-').map_or(("", digits), |d| ("-", d));
    // Padded by hand: a formatting width past 65,535 panics.
    let padded = "0".repeat((scale + 1).saturating_sub(digits.len())) + digits;
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// True when the schema refers to a named type from inside that type: data of it can nest without limit, which
/// the generic decoder (which recurses) must not be handed from untrusted input.
///
/// Each named type is walked once (`done`), so a hostile schema of types that each refer to the previous one
/// twice costs linear, not exponential, time.
pub fn is_recursive(schema: &Schema, names: &NamesRef) -> bool {
    fn walk<'a>(
        schema: &'a Schema,
        names: &NamesRef<'a>,
        path: &mut Vec<&'a Name>,
        done: &mut HashSet<&'a Name>,
    ) -> bool {
        let (name, named) = match schema {
            Schema::Ref { name } => match names.get(name) {
                Some(named) => (name, *named),
                None => return false,
            },
            Schema::Record(record) => (&record.name, schema),
            Schema::Array(array) => return walk(&array.items, names, path, done),
            Schema::Map(map) => return walk(&map.types, names, path, done),
            Schema::Union(union) => {
                return union.variants().iter().any(|v| walk(v, names, path, done));
            }
            _ => return false,
        };
        if path.contains(&name) {
            return true;
        }
        if !done.insert(name) {
            return false;
        }
        let Schema::Record(record) = named else {
            return false;
        };
        path.push(name);
        let found = record
            .fields
            .iter()
            .any(|f| walk(&f.schema, names, path, done));
        path.pop();
        found
    }
    walk(schema, names, &mut Vec::new(), &mut HashSet::new())
}

/// True when an array or map holds items that take no bytes (null, zero-size fixed, records of only such):
/// a few bytes of count could then make the decoder allocate millions of values. Call only on schemas that
/// [`is_recursive`] passed; each named type is looked at once.
pub fn has_zero_size_items(schema: &Schema, names: &NamesRef) -> bool {
    fn zero_size(schema: &Schema, names: &NamesRef) -> bool {
        match schema {
            Schema::Null => true,
            Schema::Fixed(fixed) => fixed.size == 0,
            Schema::Record(record) => record.fields.iter().all(|f| zero_size(&f.schema, names)),
            Schema::Ref { name } => names.get(name).is_some_and(|s| zero_size(s, names)),
            _ => false,
        }
    }
    fn walk<'a>(schema: &'a Schema, names: &NamesRef<'a>, done: &mut HashSet<&'a Name>) -> bool {
        match schema {
            Schema::Array(array) => {
                zero_size(&array.items, names) || walk(&array.items, names, done)
            }
            Schema::Map(map) => zero_size(&map.types, names) || walk(&map.types, names, done),
            Schema::Record(record) => {
                done.insert(&record.name)
                    && record.fields.iter().any(|f| walk(&f.schema, names, done))
            }
            Schema::Union(union) => union.variants().iter().any(|v| walk(v, names, done)),
            Schema::Ref { name } => names.get(name).is_some_and(|s| walk(s, names, done)),
            _ => false,
        }
    }
    walk(schema, names, &mut HashSet::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_of_types_that_each_use_the_previous_twice_is_checked_quickly() {
        // 30 levels of "T{n} has two fields of type T{n-1}": 2^30 paths through 30 types.
        let mut text =
            r#"{"type":"record","name":"T0","fields":[{"name":"v","type":"long"}]}"#.to_owned();
        for n in 1..30 {
            text = format!(
                r#"{{"type":"record","name":"T{n}","fields":[{{"name":"a","type":{text}}},{{"name":"b","type":"T{m}"}}]}}"#,
                m = n - 1
            );
        }
        let schema = Schema::parse_str(&text).unwrap();
        let resolved = apache_avro::schema::ResolvedSchema::try_from(&schema).unwrap();
        assert!(!is_recursive(&schema, resolved.get_names()));
        assert!(!has_zero_size_items(&schema, resolved.get_names()));
    }

    #[test]
    fn decimal_points_go_where_the_scale_says() {
        assert_eq!(with_scale("12345", 2), "123.45");
        assert_eq!(with_scale("-5", 3), "-0.005");
        assert_eq!(with_scale("7", 0), "7");
        let wide = with_scale("1", 70_000);
        assert_eq!(wide.len(), 70_002);
        assert!(
            wide.starts_with("0.000") && wide.ends_with("001"),
            "{}",
            &wide[..10]
        );
    }

    #[test]
    fn dates_times_and_timestamps_read_naturally() {
        assert_eq!(date(20_420).unwrap(), "2025-11-28");
        assert_eq!(time_of_day(3_723_000_004), "01:02:03.000004");
        assert_eq!(
            timestamp(1_764_301_635_123_000_000, true).unwrap(),
            "2025-11-28T03:47:15.123Z"
        );
        assert_eq!(timestamp(0, false).unwrap(), "1970-01-01T00:00:00");
    }

    #[test]
    fn timestamps_write_the_fraction_only_when_not_zero_without_trailing_zeros() {
        // The rule PROTOCOL.md states: `time` writes it, this pins it.
        let second = 1_764_301_635_000_000_000i128;
        for (nanos, text) in [
            (0, "2025-11-28T03:47:15Z"),
            (100_000_000, "2025-11-28T03:47:15.1Z"),
            (120_000, "2025-11-28T03:47:15.00012Z"),
            (1, "2025-11-28T03:47:15.000000001Z"),
            (999_999_999, "2025-11-28T03:47:15.999999999Z"),
        ] {
            assert_eq!(timestamp(second + nanos, true).unwrap(), text);
        }
        assert_eq!(
            timestamp(-1, true).unwrap(),
            "1969-12-31T23:59:59.999999999Z"
        );
        assert_eq!(time_of_day(0), "00:00:00.000000");
    }

    #[test]
    fn dates_and_timestamps_outside_the_years_0_to_9999_have_no_text() {
        assert_eq!(date(-719_528).unwrap(), "0000-01-01");
        assert_eq!(date(2_932_896).unwrap(), "9999-12-31");
        for days in [-719_529, 2_932_897, i32::MIN, i32::MAX] {
            assert!(
                date(days)
                    .unwrap_err()
                    .contains("outside the years 0 to 9999")
            );
        }
        let year_10000 = 253_402_300_800i128 * 1_000_000_000;
        assert_eq!(
            timestamp(year_10000 - 1, true).unwrap(),
            "9999-12-31T23:59:59.999999999Z"
        );
        for nanos in [
            year_10000,
            -62_167_219_200_000_000_001,
            i128::from(i64::MAX) * 1_000_000,
        ] {
            assert!(
                timestamp(nanos, true)
                    .unwrap_err()
                    .contains("outside the years 0 to 9999")
            );
        }
    }
}
