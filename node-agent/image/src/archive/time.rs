//! The `created` time of image configs made here, in RFC 3339 (UTC, as Docker writes it).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as `2024-01-02T03:04:05.123456789Z`.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_rfc3339_utc() {
        let now = super::now_rfc3339();
        assert!(now.ends_with('Z') && now.len() >= 20, "{now}");
        let parsed =
            time::OffsetDateTime::parse(&now, &time::format_description::well_known::Rfc3339);
        assert!(parsed.is_ok(), "{now}");
    }
}
