//! Wall-clock time as the store keeps it (microseconds since the Unix epoch) and as people read it (RFC 3339).

use std::time::{SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Microseconds since the Unix epoch, UTC.
pub fn now_micros() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_micros()).expect("microseconds fit in i64 until year 294247")
}

/// Whole seconds since the Unix epoch, UTC.
pub fn now_seconds() -> i64 {
    now_micros().div_euclid(1_000_000)
}

/// Formats microseconds since the epoch as RFC 3339 in UTC, e.g. `2026-11-28T03:47:15.123456Z`.
pub fn format_rfc3339(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{micros}us"))
}

/// Parses an RFC 3339 time (`2026-11-28T03:47:15Z`, `2026-11-28T04:47:15+01:00`) into microseconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        format!("{text:?} is not an RFC 3339 time such as 2026-11-28T03:47:15Z ({e})")
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_microseconds() {
        let micros = 1_764_301_635_123_456;
        let text = format_rfc3339(micros);
        assert_eq!(text, "2025-11-28T03:47:15.123456Z");
        assert_eq!(parse_rfc3339(&text).unwrap(), micros);
        assert_eq!(
            parse_rfc3339("2025-11-28T04:47:15.123456+01:00").unwrap(),
            micros
        );
    }

    #[test]
    fn bad_times_are_explained() {
        assert!(parse_rfc3339("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
