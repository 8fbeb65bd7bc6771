//! Time handling: RFC 3339 in, UTC `Z` with milliseconds out, instants as Unix nanoseconds.
use chrono::{DateTime, SecondsFormat, Utc};

/// A parsed RFC 3339 timestamp: the instant (Unix nanoseconds) and the UTC value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant {
    /// Nanoseconds since the Unix epoch; the idempotency key compares these, not spellings.
    pub unix_nanos: i64,
}

/// Parses an RFC 3339 timestamp with a `Z` or numeric offset. Errors say what is wrong.
pub fn parse_rfc3339(s: &str) -> Result<Instant, String> {
    let dt = DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!("not an RFC 3339 timestamp ({e}); example: 2026-11-26T10:15:00.123Z")
    })?;
    let nanos = dt
        .with_timezone(&Utc)
        .timestamp_nanos_opt()
        .ok_or_else(|| "timestamp out of range (years 1678..2261 are supported)".to_string())?;
    Ok(Instant { unix_nanos: nanos })
}

/// Formats a UTC time as RFC 3339 with milliseconds and `Z`.
pub fn format_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, formatted as IPM writes times.
pub fn now_rfc3339() -> String {
    format_utc(Utc::now())
}

/// Now as Unix milliseconds.
pub fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_compare_as_instants() {
        let a = parse_rfc3339("2026-11-26T10:15:00.123Z").unwrap();
        let b = parse_rfc3339("2026-11-26T11:15:00.123+01:00").unwrap();
        assert_eq!(a, b);
        assert!(parse_rfc3339("2026-11-26 10:15").is_err());
        assert!(parse_rfc3339("9999-01-01T00:00:00Z").is_err());
    }
}
