//! Wall-clock timestamps in RFC 3339, the one implementation berth's crates share: the
//! shim's log records, container and volume records, Docker API times and log filters.
//! Output follows Go's `time.RFC3339Nano`, as Docker's json-file log driver writes it
//! (UTC, trailing zeros of the fraction dropped); input accepts `Z` or a `±hh:mm` offset.
//! Calendar arithmetic is the `time` crate's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current time formatted as RFC 3339 with nanoseconds, in UTC.
pub fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

/// Formats `t` like Go's `RFC3339Nano` in UTC, e.g. `2024-05-01T12:00:00.123456789Z`.
/// Instants outside years 0–9999 (which RFC 3339 cannot write) are clamped to the epoch.
pub fn format_rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parses an RFC 3339 time (`Z` or a numeric offset) into the instant it names.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos >= 0 {
        Some(UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).ok()?))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_nanos(u64::try_from(-nanos).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 500_000_000);
        assert_eq!(format_rfc3339(t), "2000-02-29T00:00:00.5Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(format_rfc3339(t), "2023-11-14T22:13:20.123456789Z");
        let t = UNIX_EPOCH + Duration::new(4_107_542_399, 1);
        assert_eq!(format_rfc3339(t), "2100-02-28T23:59:59.000000001Z");
    }

    #[test]
    fn parses_what_it_writes_and_offsets() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00.5+02:00"),
            Some(UNIX_EPOCH + Duration::new(1_714_564_800, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59Z"),
            UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    }
}
