//! Times as Docker's API shows them: berth records RFC 3339 strings, lists want Unix
//! seconds, and `Status` columns want "Up 5 minutes" / "Exited (0) 2 seconds ago". Pure.

use std::time::{SystemTime, UNIX_EPOCH};

/// Parses an RFC 3339 time into Unix seconds and nanoseconds (the shim's parser).
pub fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let t = berth_shim::time::parse_rfc3339(s)?;
    Some(match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (secs, nanos) = (d.as_secs() as i64, d.subsec_nanos());
            if nanos == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - nanos)
            }
        }
    })
}

pub fn unix_seconds(s: &str) -> i64 {
    parse_rfc3339(s).map_or(0, |(s, _)| s)
}

pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Docker's human durations: "Less than a second", "5 seconds", "About a minute", …
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..60 => format!("{s} seconds"),
        60..120 => "About a minute".into(),
        120..3600 => format!("{} minutes", s / 60),
        3600..7200 => "About an hour".into(),
        7200..172800 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// A `since`/`until` query value: Unix seconds (with an optional fraction) or RFC 3339.
pub fn parse_timestamp(v: &str) -> Option<f64> {
    if let Ok(f) = v.parse::<f64>() {
        return Some(f);
    }
    parse_rfc3339(v).map(|(s, n)| s as f64 + n as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_rfc3339("2026-11-22T13:10:35.5Z"),
            Some((1_795_353_035, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T14:10:35+01:00").map(|x| x.0),
            Some(1_795_353_035)
        );
        let now = berth_shim::time::now_rfc3339();
        assert!((unix_seconds(&now) - now_seconds()).abs() <= 1);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(parse_timestamp("12.5"), Some(12.5));
    }
}
