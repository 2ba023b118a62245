//! Natural JSON to Avro values of a user's schema (`send --schema`): the inverse of [`super::generic`], with
//! errors that name the field path and what was expected, so bad input is refused before anything is sent.

use apache_avro::{
    Schema,
    schema::{NamesRef, RecordSchema},
    types::Value as Avro,
};
use serde_json::Value as Json;
use time::{Date, OffsetDateTime, PrimitiveDateTime, format_description::well_known::Rfc3339};

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
        (Schema::Date, Json::String(s)) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let date = Date::parse(s, format).map_err(|_| expected("a date YYYY-MM-DD"))?;
            Avro::Date(
                (date - Date::from_julian_day(2_440_588).expect("1970-01-01")).whole_days() as i32,
            )
        }
        (Schema::TimestampMillis, _) => {
            Avro::TimestampMillis(timestamp_nanos(json, &expected)?.div_euclid(1_000_000) as i64)
        }
        (Schema::TimestampMicros, _) => {
            Avro::TimestampMicros(timestamp_nanos(json, &expected)?.div_euclid(1000) as i64)
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

fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// An RFC 3339 string (or a local one without offset, taken as UTC) in nanoseconds since the epoch.
fn timestamp_nanos(json: &Json, expected: &dyn Fn(&str) -> String) -> Result<i128, String> {
    let Json::String(s) = json else {
        return Err(expected("an RFC 3339 time string"));
    };
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp_nanos());
    }
    let local = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, local)
        .map(|t| t.assume_utc().unix_timestamp_nanos())
        .map_err(|_| expected("an RFC 3339 time string"))
}

/// The unscaled integer of a decimal string at `scale` digits after the point, or `None` if it has more.
fn unscaled(text: &str, scale: usize) -> Option<num_bigint::BigInt> {
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
