//! RFC 3339 times (as the shim writes them in its log) to and from milliseconds since the
//! epoch, the unit of the gRPC API's log filters. The calendar work is the shim's.

use std::time::{Duration, UNIX_EPOCH};

use berth_shim::time::{format_rfc3339, parse_rfc3339};

/// Parses `2024-05-01T12:00:00.123456789Z` or with a `+hh:mm` offset; `None` before 1970.
pub fn parse_ms(text: &str) -> Option<u64> {
    let t = parse_rfc3339(text)?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(t.as_millis()).ok()
}

/// Formats as `2024-05-01T12:00:00.123Z`.
pub fn format_ms(ms: u64) -> String {
    format_rfc3339(UNIX_EPOCH + Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for ms in [
            0,
            1_000,
            951_782_400_123,
            1_714_564_800_999,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_ms(&format_ms(ms)), Some(ms), "{}", format_ms(ms));
        }
        assert_eq!(format_ms(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(
            parse_ms("2024-05-01T14:00:00.123456789+02:00"),
            Some(1_714_564_800_123)
        );
        assert_eq!(parse_ms("yesterday"), None);
    }
}
