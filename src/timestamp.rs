//! Wall-clock time as the store keeps it (microseconds since the Unix epoch) and as people read it (RFC 3339).

use std::time::{SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Microseconds since the Unix epoch, UTC.
pub fn now_micros() -> i64 {
    micros_since_epoch(SystemTime::now())
}

/// Microseconds from the Unix epoch to `at`: negative before 1970, as a clock set wrong may say, and saturated
/// at the ends of `i64` (years ±294,000) rather than panicking.
fn micros_since_epoch(at: SystemTime) -> i64 {
    let saturated = |micros: u128| i64::try_from(micros).unwrap_or(i64::MAX);
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => saturated(after.as_micros()),
        Err(before) => -saturated(before.duration().as_micros()),
    }
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

/// Parses a duration such as `90s`, `15m`, `2h`, `7d` or `4w` into microseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration such as 90s, 15m, 2h, 7d or 4w");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let seconds: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    number
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds)?.checked_mul(1_000_000))
        .ok_or_else(bad)
}

/// A point in time given as RFC 3339, or as a duration meaning that long before `now_us` (`15m`: 15 minutes ago).
pub fn parse_past(text: &str, now_us: i64) -> Result<i64, String> {
    relative_or_rfc3339(text, |d| now_us.saturating_sub(d))
}

/// A point in time given as RFC 3339, or as a duration meaning that long after `now_us` (`30d`: in 30 days).
pub fn parse_future(text: &str, now_us: i64) -> Result<i64, String> {
    relative_or_rfc3339(text, |d| now_us.saturating_add(d))
}

fn relative_or_rfc3339(text: &str, from_now: impl FnOnce(i64) -> i64) -> Result<i64, String> {
    // A duration starts with a digit and has no '-' or ':'; an RFC 3339 time has both.
    if text.contains(['-', ':']) {
        parse_rfc3339(text)
    } else {
        parse_duration(text)
            .map(from_now)
            .map_err(|_| format!("{text:?} is neither an RFC 3339 time such as 2026-11-28T03:47:15Z nor a duration such as 15m, 2h or 7d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_relative_times_count_from_now() {
        assert_eq!(parse_duration("90s").unwrap(), 90_000_000);
        assert_eq!(parse_duration("15m").unwrap(), 900_000_000);
        assert_eq!(parse_duration("2h").unwrap(), 7_200_000_000);
        assert_eq!(parse_duration("7d").unwrap(), 604_800_000_000);
        for bad in ["", "15", "m", "1.5h", "-3d", "3y", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let now = 1_764_301_635_000_000;
        assert_eq!(parse_past("2h", now).unwrap(), now - 7_200_000_000);
        assert_eq!(parse_future("30d", now).unwrap(), now + 30 * 86_400_000_000);
        assert_eq!(
            parse_past("2025-11-28T03:47:15Z", 0).unwrap(),
            1_764_301_635_000_000
        );
        assert!(
            parse_past("yesterday", now)
                .unwrap_err()
                .contains("duration")
        );
    }

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
    fn a_clock_before_1970_gives_negative_micros_not_a_panic() {
        use std::time::Duration;
        assert_eq!(micros_since_epoch(UNIX_EPOCH), 0);
        assert_eq!(
            micros_since_epoch(UNIX_EPOCH + Duration::from_micros(1_764_301_635_123_456)),
            1_764_301_635_123_456
        );
        assert_eq!(
            micros_since_epoch(UNIX_EPOCH - Duration::from_millis(1_500)),
            -1_500_000
        );
        let far = Duration::from_secs(10_000_000_000_000);
        if let Some(late) = UNIX_EPOCH.checked_add(far) {
            assert_eq!(micros_since_epoch(late), i64::MAX);
        }
        if let Some(early) = UNIX_EPOCH.checked_sub(far) {
            assert_eq!(micros_since_epoch(early), -i64::MAX);
        }
    }

    #[test]
    fn bad_times_are_explained() {
        assert!(parse_rfc3339("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
