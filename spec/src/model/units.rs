//! Durations (`1m30s`) and byte sizes (`512m`) as Compose reads and prints them: durations
//! in Go's `time.Duration` syntax (plus `d` and `w`), printed the way Go prints them; sizes
//! in Docker's `RAMInBytes` syntax (binary multiples), printed as a decimal byte count.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that prints like Go (`1m30s`, `1h0m0s`, `10ms`, `1.5µs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub fn from_secs(s: u64) -> Self {
        Duration(StdDuration::from_secs(s))
    }

    pub fn as_std(&self) -> StdDuration {
        self.0
    }
}

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const S: u128 = 1_000_000_000;
const M: u128 = 60 * S;
const H: u128 = 60 * M;

/// Parses a Go duration string: a sequence of decimal numbers with optional fractions and a
/// unit each (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, and `d`, `w` as Compose also accepts).
/// A bare `0` is allowed; a negative duration is not.
pub fn parse_duration(input: &str) -> Result<StdDuration, String> {
    let s = input.trim();
    let bad = || format!("invalid duration \"{input}\"");
    if s == "0" {
        return Ok(StdDuration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!(
            "invalid duration \"{input}\": negative durations are not allowed"
        ));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => NS,
            "us" | "µs" | "μs" => US,
            "ms" => MS,
            "s" => S,
            "m" => M,
            "h" => H,
            "d" => 24 * H,
            "w" => 7 * 24 * H,
            "" => return Err(format!("invalid duration \"{input}\": missing unit")),
            other => {
                return Err(format!(
                    "invalid duration \"{input}\": unknown unit \"{other}\""
                ));
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(bad)?;
        if !frac_part.is_empty() {
            // Exact fixed-point: digits / 10^len * scale, truncated like Go.
            let digits = &frac_part[..frac_part.len().min(18)];
            let num: u128 = digits.parse().map_err(|_| bad())?;
            let den = 10u128.pow(digits.len() as u32);
            value += num * scale / den;
        }
        total = total.checked_add(value).ok_or_else(bad)?;
    }
    if total > u64::MAX as u128 {
        return Err(bad());
    }
    Ok(StdDuration::from_nanos(total as u64))
}

/// Formats `v / 10^prec` without trailing zeros, like Go's `fmtFrac` + `fmtInt`.
fn frac(v: u128, prec: u32) -> String {
    let den = 10u128.pow(prec);
    let whole = v / den;
    let mut f = v % den;
    if f == 0 {
        return whole.to_string();
    }
    let mut digits = prec as usize;
    while f % 10 == 0 {
        f /= 10;
        digits -= 1;
    }
    format!("{whole}.{f:0digits$}")
}

/// Formats a duration exactly as Go's `time.Duration.String()`.
pub fn format_duration(d: StdDuration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < US {
        return format!("{ns}ns");
    }
    if ns < MS {
        return format!("{}µs", frac(ns, 3));
    }
    if ns < S {
        return format!("{}ms", frac(ns, 6));
    }
    let secs = frac(ns % M, 9);
    let total_min = ns / M;
    if total_min == 0 {
        return format!("{secs}s");
    }
    let hours = total_min / 60;
    let mins = total_min % 60;
    if hours == 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{hours}h{mins}m{secs}s")
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(Duration)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 1m30s")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map(Duration).map_err(E::custom)
            }
        }
        // Numbers arrive as strings through `deserialize_str`; a bare number then lacks a
        // unit, which Compose rejects too (except 0).
        d.deserialize_str(V)
    }
}

/// A size in bytes. Compose prints it as a decimal string of the byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub i64);

impl ByteSize {
    pub fn bytes(&self) -> i64 {
        self.0
    }
}

/// Parses `1024`, `-1`, `512m`, `1g`, `2.5kb`, `1GiB` (binary multiples, as Docker's
/// `RAMInBytes`).
pub fn parse_bytes(input: &str) -> Result<i64, String> {
    let s = input.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let bad = || format!("invalid size: '{input}'");
    let num_len = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (num, suffix) = s.split_at(num_len);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.contains("..") {
        return Err(bad());
    }
    let suffix = suffix
        .strip_prefix(' ')
        .unwrap_or(suffix)
        .to_ascii_lowercase();
    let mut chars = suffix.as_str();
    let mult: f64 = match chars.chars().next() {
        Some('k') => 1024f64,
        Some('m') => 1024f64.powi(2),
        Some('g') => 1024f64.powi(3),
        Some('t') => 1024f64.powi(4),
        Some('p') => 1024f64.powi(5),
        _ => 1.0,
    };
    if mult > 1.0 {
        chars = &chars[1..];
    }
    chars = chars.strip_prefix('i').unwrap_or(chars);
    chars = chars.strip_prefix('b').unwrap_or(chars);
    if !chars.is_empty() {
        return Err(bad());
    }
    // Go parses "1.2.3" with ParseFloat, which fails: only one dot is valid in practice.
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like 512m or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_bytes(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases: &[(&str, u64)] = &[
            ("1m30s", 90_000_000_000),
            ("1h2m3.5s", 3_723_500_000_000),
            ("10ms", 10_000_000),
            ("1us", 1_000),
            ("1µs", 1_000),
            ("1.5s", 1_500_000_000),
            ("0", 0),
            ("0s", 0),
            ("2d", 172_800_000_000_000),
            (".5s", 500_000_000),
        ];
        for (s, ns) in cases {
            assert_eq!(
                parse_duration(s).unwrap(),
                StdDuration::from_nanos(*ns),
                "{s}"
            );
        }
        for bad in ["", "10", "1x", "-1s", "s", "1.s.", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn durations_print_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (10_000_000, "10ms"),
            (1_000, "1µs"),
            (1_500, "1.5µs"),
            (999, "999ns"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
        ];
        for (ns, s) in cases {
            assert_eq!(format_duration(StdDuration::from_nanos(*ns)), *s);
        }
    }

    #[test]
    fn sizes_parse_binary_multiples() {
        let cases: &[(&str, i64)] = &[
            ("1024", 1024),
            ("-1", -1),
            ("512m", 512 * 1024 * 1024),
            ("1g", 1 << 30),
            ("1G", 1 << 30),
            ("1gb", 1 << 30),
            ("1GiB", 1 << 30),
            ("2.5kb", 2560),
            ("64k", 65536),
            ("100b", 100),
            ("1 m", 1 << 20),
        ];
        for (s, n) in cases {
            assert_eq!(parse_bytes(s).unwrap(), *n, "{s}");
        }
        for bad in ["", "m", "1x", "1.2.3m", "ten"] {
            assert!(parse_bytes(bad).is_err(), "{bad} should fail");
        }
    }
}
