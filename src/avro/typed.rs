//! Natural JSON to Avro values of a user's schema (`send --schema`): the inverse of [`super::generic`], with
//! errors that name the field path and what was expected, so bad input is refused before anything is sent.

use apache_avro::{
    Schema,
    schema::{NamesRef, RecordSchema},
    types::Value as Avro,
};
use serde_json::Value as Json;
use time::{Date, OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339};

use super::generic;

/// Converts one JSON record to an Avro value of `schema`; `path` names the place in errors (`$` at the top).
pub fn to_avro(json: &Json, schema: &Schema, names: &NamesRef, path: &str) -> Result<Avro, String> {
    let schema = match schema {
        Schema::Ref { name } => names
            .get(name)
            .copied()
            .ok_or_else(|| format!("{path}: unknown type {name}"))?,
        other => other,
    };
    let expected = |what: &str| format!("{path}: expected {what}, got {}", kind(json));
    Ok(match (schema, json) {
        (Schema::Null, Json::Null) => Avro::Null,
        (Schema::Boolean, Json::Bool(b)) => Avro::Boolean(*b),
        (Schema::Int, Json::Number(n)) => Avro::Int(
            n.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| expected("an int (32-bit integer)"))?,
        ),
        (Schema::Long, Json::Number(n)) => Avro::Long(
            n.as_i64()
                .ok_or_else(|| expected("a long (64-bit integer)"))?,
        ),
        (Schema::Float, Json::Number(n)) => {
            Avro::Float(n.as_f64().ok_or_else(|| expected("a float"))? as f32)
        }
        (Schema::Double, Json::Number(n)) => {
            // The same rule as for schemaless JSON: a number whose value a double would change is refused.
            let exact = n.as_f64().filter(|_| super::representable(n));
            Avro::Double(exact.ok_or_else(|| expected("a number a double holds exactly"))?)
        }
        (Schema::String, Json::String(s)) => Avro::String(s.clone()),
        (Schema::Bytes, Json::String(s)) => {
            Avro::Bytes(latin1(s).ok_or_else(|| expected("bytes as code points 0-255"))?)
        }
        (Schema::Fixed(fixed), Json::String(s)) => {
            let bytes = latin1(s).filter(|b| b.len() == fixed.size);
            Avro::Fixed(
                fixed.size,
                bytes.ok_or_else(|| {
                    expected(&format!("{} bytes as code points 0-255", fixed.size))
                })?,
            )
        }
        (Schema::Enum(e), Json::String(s)) => {
            let index = e.symbols.iter().position(|sym| sym == s);
            let index =
                index.ok_or_else(|| format!("{path}: {s:?} is not one of {:?}", e.symbols))?;
            Avro::Enum(index as u32, s.clone())
        }
        (Schema::Array(array), Json::Array(items)) => Avro::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_avro(item, &array.items, names, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Map(map), Json::Object(entries)) => Avro::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        to_avro(v, &map.types, names, &format!("{path}.{k}"))?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        ),
        (Schema::Record(record), Json::Object(object)) => {
            record_value(record, object, names, path)?
        }
        (Schema::Union(union), _) => {
            let mut reasons = Vec::new();
            for (i, variant) in union.variants().iter().enumerate() {
                match to_avro(json, variant, names, path) {
                    Ok(value) => return Ok(Avro::Union(i as u32, Box::new(value))),
                    Err(reason) => reasons.push(reason),
                }
            }
            return Err(format!(
                "{path}: fits no branch of the union ({})",
                reasons.join("; ")
            ));
        }
        (Schema::Uuid(_), Json::String(s)) => {
            Avro::Uuid(s.parse().map_err(|_| expected("a UUID string"))?)
        }
        // Logical types take their text form (what the server writes) or, as in Avro's own JSON encoding, the
        // integer of their underlying type.
        (Schema::Date, _) => Avro::Date(days(json, &expected)?),
        (Schema::TimeMillis, _) => {
            let millis = time_of_day(json, Unit::Millis, &expected)?;
            Avro::TimeMillis(i32::try_from(millis).map_err(|_| expected("a time-millis"))?)
        }
        (Schema::TimeMicros, _) => Avro::TimeMicros(time_of_day(json, Unit::Micros, &expected)?),
        (Schema::TimestampMillis, _) => {
            Avro::TimestampMillis(instant(json, Unit::Millis, Zone::Utc, &expected)?)
        }
        (Schema::TimestampMicros, _) => {
            Avro::TimestampMicros(instant(json, Unit::Micros, Zone::Utc, &expected)?)
        }
        (Schema::TimestampNanos, _) => {
            Avro::TimestampNanos(instant(json, Unit::Nanos, Zone::Utc, &expected)?)
        }
        (Schema::LocalTimestampMillis, _) => {
            Avro::LocalTimestampMillis(instant(json, Unit::Millis, Zone::Local, &expected)?)
        }
        (Schema::LocalTimestampMicros, _) => {
            Avro::LocalTimestampMicros(instant(json, Unit::Micros, Zone::Local, &expected)?)
        }
        (Schema::LocalTimestampNanos, _) => {
            Avro::LocalTimestampNanos(instant(json, Unit::Nanos, Zone::Local, &expected)?)
        }
        (Schema::Decimal(decimal), Json::String(s)) => {
            let unscaled = unscaled(s, decimal.scale).ok_or_else(|| {
                expected(&format!(
                    "a decimal string with at most {} digits after the point",
                    decimal.scale
                ))
            })?;
            Avro::Decimal(apache_avro::Decimal::from(unscaled.to_signed_bytes_be()))
        }
        (other, _) => {
            return Err(expected(
                &format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
            ));
        }
    })
}

fn record_value(
    record: &RecordSchema,
    object: &serde_json::Map<String, Json>,
    names: &NamesRef,
    path: &str,
) -> Result<Avro, String> {
    if let Some(unknown) = object
        .keys()
        .find(|k| !record.lookup.contains_key(k.as_str()))
    {
        return Err(format!("{path}: {} has no field {unknown:?}", record.name));
    }
    let mut fields = Vec::with_capacity(record.fields.len());
    for field in &record.fields {
        let field_path = format!("{path}.{}", field.name);
        let value = match (object.get(&field.name), &field.default) {
            (Some(value), _) => to_avro(value, &field.schema, names, &field_path)?,
            // A union's default is of its first branch, which natural JSON picks first too.
            (None, Some(default)) => to_avro(default, &field.schema, names, &field_path)?,
            (None, None) => {
                return Err(format!(
                    "{field_path}: missing, and the field has no default"
                ));
            }
        };
        fields.push((field.name.clone(), value));
    }
    Ok(Avro::Record(fields))
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A JSON scalar as the logical types read it: the text of a number, a string, or anything else.
#[derive(Debug, Clone, Copy)]
pub(super) enum Given<'a> {
    /// A number: `Some` of its value when it is an integer literal within the `long` range (serde_json's
    /// `as_i64`), else `None`.
    Integer(Option<i64>),
    /// A string.
    Text(&'a str),
    /// Null, a boolean, an array or an object.
    Other,
}

impl<'a> Given<'a> {
    fn of(json: &'a Json) -> Given<'a> {
        match json {
            Json::Number(n) => Given::Integer(n.as_i64()),
            Json::String(s) => Given::Text(s),
            _ => Given::Other,
        }
    }
}

pub(super) fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// What a time-like logical type counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unit {
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    /// Nanoseconds in one unit.
    fn nanos(self) -> i128 {
        match self {
            Unit::Millis => 1_000_000,
            Unit::Micros => 1_000,
            Unit::Nanos => 1,
        }
    }

    /// The suffix of the logical type's name (`timestamp-millis`).
    fn suffix(self) -> &'static str {
        match self {
            Unit::Millis => "millis",
            Unit::Micros => "micros",
            Unit::Nanos => "nanos",
        }
    }

    /// The unit's name in words.
    fn words(self) -> &'static str {
        match self {
            Unit::Millis => "milliseconds",
            Unit::Micros => "microseconds",
            Unit::Nanos => "nanoseconds",
        }
    }
}

/// Whether a timestamp is an instant (`timestamp-*`, UTC) or a wall-clock reading (`local-timestamp-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zone {
    Utc,
    Local,
}

/// A date-time without offset, as the server writes `local-timestamp-*` values.
const LOCAL_DATE_TIME: &[time::format_description::BorrowedFormatItem] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
);

/// A timestamp in `unit`s since 1970-01-01T00:00:00 (UTC, or local wall-clock time): an integer, or a string
/// (RFC 3339 for an instant, where a date-time without offset is taken as UTC; for a local timestamp only a
/// date-time without offset). Digits finer than the unit are dropped, as before numbers were accepted. A value
/// the server could not write back as text (outside the years 0 to 9999) is refused here, before it is sent.
fn instant(
    json: &Json,
    unit: Unit,
    zone: Zone,
    expected: &dyn Fn(&str) -> String,
) -> Result<i64, String> {
    let what = match zone {
        Zone::Utc => format!(
            "a timestamp-{}: an RFC 3339 date-time or an integer of {} since 1970-01-01T00:00:00Z, in the years 0 to 9999",
            unit.suffix(),
            unit.words()
        ),
        Zone::Local => format!(
            "a local-timestamp-{}: a date-time without offset (YYYY-MM-DDTHH:MM:SS[.fraction]) or an integer of {} since 1970-01-01T00:00:00, in the years 0 to 9999",
            unit.suffix(),
            unit.words()
        ),
    };
    instant_count(Given::of(json), unit, zone).ok_or_else(|| expected(&what))
}

/// [`instant`]'s count, or `None` where it refuses.
pub(super) fn instant_count(given: Given, unit: Unit, zone: Zone) -> Option<i64> {
    let count = match given {
        Given::Integer(i) => i?,
        Given::Text(s) => {
            let utc = match zone {
                Zone::Utc => OffsetDateTime::parse(s, &Rfc3339).ok(),
                Zone::Local => None,
            };
            let nanos = match utc {
                Some(t) => t.unix_timestamp_nanos(),
                None => PrimitiveDateTime::parse(s, LOCAL_DATE_TIME)
                    .ok()?
                    .assume_utc()
                    .unix_timestamp_nanos(),
            };
            i64::try_from(nanos.div_euclid(unit.nanos())).ok()?
        }
        Given::Other => return None,
    };
    generic::timestamp(i128::from(count) * unit.nanos(), zone == Zone::Utc).ok()?;
    Some(count)
}

/// A `date` in days since 1970-01-01: an integer, or a string `YYYY-MM-DD`.
fn days(json: &Json, expected: &dyn Fn(&str) -> String) -> Result<i32, String> {
    let what = "a date: YYYY-MM-DD or an integer of days since 1970-01-01";
    days_count(Given::of(json)).ok_or_else(|| expected(what))
}

/// [`days`]'s count, or `None` where it refuses.
pub(super) fn days_count(given: Given) -> Option<i32> {
    let days = match given {
        Given::Integer(i) => i32::try_from(i?).ok()?,
        Given::Text(s) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let date = Date::parse(s, format).ok()?;
            i32::try_from((date - Date::from_ordinal_date(1970, 1).ok()?).whole_days()).ok()?
        }
        Given::Other => return None,
    };
    generic::date(days).ok()?;
    Some(days)
}

/// A `time-*` value in `unit`s after midnight: an integer below one day, or a string `HH:MM:SS[.fraction]`.
fn time_of_day(json: &Json, unit: Unit, expected: &dyn Fn(&str) -> String) -> Result<i64, String> {
    let per_day = 86_400 * 1_000_000_000 / unit.nanos();
    let what = format!(
        "a time-{}: HH:MM:SS[.fraction] or an integer of {} after midnight (0 to {})",
        unit.suffix(),
        unit.words(),
        per_day - 1
    );
    time_of_day_count(Given::of(json), unit).ok_or_else(|| expected(&what))
}

/// [`time_of_day`]'s count, or `None` where it refuses.
pub(super) fn time_of_day_count(given: Given, unit: Unit) -> Option<i64> {
    let per_day = 86_400 * 1_000_000_000 / unit.nanos();
    let count = match given {
        Given::Integer(i) => i?,
        Given::Text(s) => {
            let format = time::macros::format_description!(
                "[hour]:[minute]:[second][optional [.[subsecond]]]"
            );
            let (h, m, sec, nano) = time::Time::parse(s, format).ok()?.as_hms_nano();
            let nanos = (i128::from(h) * 3600 + i128::from(m) * 60 + i128::from(sec))
                * 1_000_000_000
                + i128::from(nano);
            i64::try_from(nanos / unit.nanos()).ok()?
        }
        Given::Other => return None,
    };
    (0..per_day).contains(&i128::from(count)).then_some(count)
}

/// The unscaled integer of a decimal string at `scale` digits after the point, or `None` if it has more.
pub(super) fn unscaled(text: &str, scale: usize) -> Option<num_bigint::BigInt> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > scale || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{whole}{fraction:0<scale$}");
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema::ResolvedSchema;
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"record","name":"Reading","fields":[
        {"name":"id","type":"long"},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["POWER","HEAT"]}},
        {"name":"value","type":["null","double"]},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":8,"scale":2}},
        {"name":"tags","type":{"type":"map","values":"string"}},
        {"name":"unit","type":"string","default":"kW"}]}"#;

    fn convert(json: Json) -> Result<Json, String> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let resolved = ResolvedSchema::try_from(&schema).unwrap();
        let value = to_avro(&json, &schema, resolved.get_names(), "$")?;
        super::super::generic::to_json(value, &schema, resolved.get_names())
    }

    #[test]
    fn natural_json_in_comes_back_as_natural_json_out() {
        let record = json!({"id": 7, "kind": "HEAT", "value": 5.5, "at": "2025-11-28T03:47:15.123Z",
                            "price": "123.45", "tags": {"a": "1"}});
        let mut expected = record.clone();
        expected["unit"] = json!("kW");
        assert_eq!(convert(record).unwrap(), expected);
        assert_eq!(
            convert(
                json!({"id": 1, "kind": "POWER", "value": null, "at": "1970-01-01T00:00:00Z",
                                  "price": "-0.5", "tags": {}, "unit": "MW"})
            )
            .unwrap()["price"],
            "-0.50"
        );
    }

    /// `json` converted to a value of the one-type schema `{"type": underlying, "logicalType": logical}`, and
    /// that value as the server writes it back.
    fn logical(underlying: &str, logical: &str, json: Json) -> Result<(Avro, Json), String> {
        let schema = Schema::parse_str(&format!(
            r#"{{"type":"{underlying}","logicalType":"{logical}"}}"#
        ))
        .unwrap();
        let resolved = ResolvedSchema::try_from(&schema).unwrap();
        let value = to_avro(&json, &schema, resolved.get_names(), "$")?;
        let text = super::super::generic::to_json(value.clone(), &schema, resolved.get_names())?;
        Ok((value, text))
    }

    #[test]
    fn each_logical_type_takes_its_integer_as_well_as_its_text() {
        let cases = [
            (
                "int",
                "date",
                json!(20_420),
                "2025-11-28",
                Avro::Date(20_420),
            ),
            (
                "int",
                "time-millis",
                json!(3_723_004),
                "01:02:03.004",
                Avro::TimeMillis(3_723_004),
            ),
            (
                "long",
                "time-micros",
                json!(3_723_000_004i64),
                "01:02:03.000004",
                Avro::TimeMicros(3_723_000_004),
            ),
            (
                "long",
                "timestamp-millis",
                json!(1_764_301_635_123i64),
                "2025-11-28T03:47:15.123Z",
                Avro::TimestampMillis(1_764_301_635_123),
            ),
            (
                "long",
                "timestamp-micros",
                json!(1_764_301_635_123_456i64),
                "2025-11-28T03:47:15.123456Z",
                Avro::TimestampMicros(1_764_301_635_123_456),
            ),
            (
                "long",
                "timestamp-nanos",
                json!(1_764_301_635_123_456_789i64),
                "2025-11-28T03:47:15.123456789Z",
                Avro::TimestampNanos(1_764_301_635_123_456_789),
            ),
            (
                "long",
                "local-timestamp-millis",
                json!(1_764_301_635_123i64),
                "2025-11-28T03:47:15.123",
                Avro::LocalTimestampMillis(1_764_301_635_123),
            ),
            (
                "long",
                "local-timestamp-micros",
                json!(1_764_301_635_123_456i64),
                "2025-11-28T03:47:15.123456",
                Avro::LocalTimestampMicros(1_764_301_635_123_456),
            ),
            (
                "long",
                "local-timestamp-nanos",
                json!(1_764_301_635_123_456_789i64),
                "2025-11-28T03:47:15.123456789",
                Avro::LocalTimestampNanos(1_764_301_635_123_456_789),
            ),
        ];
        for (underlying, name, number, text, value) in cases {
            let (from_number, written) = logical(underlying, name, number.clone()).unwrap();
            assert_eq!(from_number, value, "{name} from {number}");
            let (from_text, _) = logical(underlying, name, json!(text)).unwrap();
            assert_eq!(from_text, value, "{name} from {text}");
            if name.starts_with("time-") {
                // The server writes times with six fraction digits.
                assert!(
                    written.as_str().unwrap().starts_with(text),
                    "{name}: {written}"
                );
            } else {
                assert_eq!(written, json!(text), "{name}");
            }
        }
        // The other accepted spellings: an offset for an instant, no offset taken as UTC, a time without fraction.
        for text in ["2025-11-28T04:47:15.123+01:00", "2025-11-28T03:47:15.123"] {
            assert_eq!(
                logical("long", "timestamp-millis", json!(text)).unwrap().0,
                Avro::TimestampMillis(1_764_301_635_123)
            );
        }
        assert_eq!(
            logical("int", "time-millis", json!("23:59:59")).unwrap().0,
            Avro::TimeMillis(86_399_000)
        );
        assert_eq!(
            logical("int", "date", json!(-1)).unwrap().1,
            json!("1969-12-31")
        );
    }

    #[test]
    fn logical_types_refuse_what_is_not_their_integer_or_their_text() {
        let refused = |underlying: &str, name: &str, json: Json| {
            let err = logical(underlying, name, json.clone()).unwrap_err();
            assert!(
                err.starts_with(&format!("$: expected a {name}")),
                "{name} {json}: {err}"
            );
            err
        };
        for name in ["timestamp-millis", "local-timestamp-micros", "time-micros"] {
            // Only an integer literal: the underlying type is an integer.
            refused("long", name, json!(1.5));
            refused("long", name, serde_json::from_str("1.0").unwrap());
            refused("long", name, serde_json::from_str("1e3").unwrap());
            refused("long", name, json!(true));
            refused("long", name, json!("tomorrow"));
        }
        refused("int", "date", json!(1.0));
        refused("int", "date", json!(i64::from(i32::MAX) + 1));
        refused("int", "date", json!("2025-13-01"));
        // A local timestamp is a wall-clock reading: an offset would be silently dropped.
        refused(
            "long",
            "local-timestamp-millis",
            json!("2025-11-28T03:47:15Z"),
        );
        // A time of day is below one day.
        refused("int", "time-millis", json!(86_400_000));
        refused("int", "time-millis", json!(-1));
        refused("long", "time-micros", json!(86_400_000_000i64));
        // What the server could not write back as text is refused before anything is sent.
        let err = refused("long", "timestamp-millis", json!(i64::MAX));
        assert!(err.contains("years 0 to 9999"), "{err}");
        refused("int", "date", json!(3_000_000));
        refused("long", "timestamp-nanos", json!("2300-01-01T00:00:00Z"));
    }

    #[test]
    fn errors_name_the_field_and_what_was_expected() {
        let base = json!({"id": 7, "kind": "HEAT", "value": 5.5, "at": "2025-11-28T03:47:15Z", "price": "1", "tags": {}});
        let with = |field: &str, value: Json| {
            let mut record = base.clone();
            record[field] = value;
            convert(record).unwrap_err()
        };
        assert!(with("id", json!("seven")).contains("$.id: expected long, got a string"));
        assert!(with("kind", json!("COLD")).contains("$.kind: \"COLD\" is not one of"));
        assert!(with("price", json!("1.234")).contains("$.price"));
        assert!(with("tags", json!({"x": 1})).contains("$.tags.x: expected string, got a number"));
        assert!(with("value", json!("high")).contains("$.value: fits no branch"));
        let too_precise: Json = serde_json::from_str("3.14159265358979323846").unwrap();
        assert!(with("value", too_precise).contains("holds exactly"));
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("id");
        assert!(convert(missing).unwrap_err().contains("$.id: missing"));
        let mut extra = base;
        extra["colour"] = json!("red");
        assert!(convert(extra).unwrap_err().contains("no field \"colour\""));
    }
}
