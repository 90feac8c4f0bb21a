//! Published ports: the short syntax `[ip:][host[-range]:]container[-range][/proto]` (parsed
//! the way Docker parses `-p`, one entry per container port of a range) and the long syntax,
//! both stored as `PortConfig` (the long form Compose prints).

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::common::Extensions;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PortConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub target: u32,
    /// A port or a range (`8000-8010`); a string, as Compose prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        None => {
            let p = s.parse().ok()?;
            Some((p, p))
        }
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
            (b >= a).then_some((a, b))
        }
    }
}

/// Parses one short-syntax port. A container range yields one entry per port.
pub fn parse_port(spec: &str) -> Result<Vec<PortConfig>, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1];
    let (ip, host) = match n {
        1 => (String::new(), ""),
        2 => (String::new(), parts[0]),
        3 => (parts[0].to_string(), parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2]),
    };
    let (container, proto) = match container.split_once('/') {
        None => (container, "tcp"),
        Some((p, "")) => (p, "tcp"),
        Some((p, proto)) => (p, proto),
    };
    let ip = match ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(inner) => inner.to_string(),
        None => ip,
    };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (start, end) =
        parse_range(container).ok_or_else(|| format!("invalid containerPort: {container}"))?;
    let (hstart, hend) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?
    };
    if !host.is_empty() && end - start != hend - hstart && end != start {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host}"
        ));
    }
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let mut out = Vec::new();
    for i in 0..=(end - start) {
        let published = if host.is_empty() {
            None
        } else if start == end && hstart != hend {
            Some(format!("{hstart}-{hend}"))
        } else {
            Some((hstart + i).to_string())
        };
        out.push(PortConfig {
            mode: Some("ingress".into()),
            host_ip: (!ip.is_empty()).then(|| ip.clone()),
            target: u32::from(start + i),
            published,
            protocol: Some(proto.clone()),
            ..PortConfig::default()
        });
    }
    // Docker keys bindings by "port/proto" and Compose sorts those keys as strings.
    out.sort_by_key(|p| format!("{}/{}", p.target, proto));
    Ok(out)
}

/// One item of `ports`: a number, a short-syntax string or a long-syntax mapping.
struct PortItem(Vec<PortConfig>);

impl<'de> Deserialize<'de> for PortItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port as a number, a string or a mapping")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortItem, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortItem, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortItem, E> {
                parse_port(v).map(PortItem).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PortItem, A::Error> {
                let p = PortConfig::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PortItem(vec![p]))
            }
        }
        d.deserialize_any(V)
    }
}

pub fn de_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PortConfig>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<PortConfig>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of ports")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(PortItem(p)) = seq.next_element()? {
                out.extend(p);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(ip: Option<&str>, target: u32, published: Option<&str>, proto: &str) -> PortConfig {
        PortConfig {
            mode: Some("ingress".into()),
            host_ip: ip.map(Into::into),
            target,
            published: published.map(Into::into),
            protocol: Some(proto.into()),
            ..Default::default()
        }
    }

    #[test]
    fn short_syntax_table() {
        let cases: Vec<(&str, Vec<PortConfig>)> = vec![
            ("80", vec![short(None, 80, None, "tcp")]),
            ("8080:80", vec![short(None, 80, Some("8080"), "tcp")]),
            ("8080:80/udp", vec![short(None, 80, Some("8080"), "udp")]),
            (
                "127.0.0.1:8080:80",
                vec![short(Some("127.0.0.1"), 80, Some("8080"), "tcp")],
            ),
            (
                "127.0.0.1::80",
                vec![short(Some("127.0.0.1"), 80, None, "tcp")],
            ),
            (
                "[::1]:8080:80",
                vec![short(Some("::1"), 80, Some("8080"), "tcp")],
            ),
            (
                "::1:8080:80",
                vec![short(Some("::1"), 80, Some("8080"), "tcp")],
            ),
            (
                "8000-8010:80",
                vec![short(None, 80, Some("8000-8010"), "tcp")],
            ),
            (
                "9090-9091:8080-8081",
                vec![
                    short(None, 8080, Some("9090"), "tcp"),
                    short(None, 8081, Some("9091"), "tcp"),
                ],
            ),
            (
                "3000-3001",
                vec![
                    short(None, 3000, None, "tcp"),
                    short(None, 3001, None, "tcp"),
                ],
            ),
            (
                "6060:6060/SCTP",
                vec![short(None, 6060, Some("6060"), "sctp")],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_port(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn short_syntax_errors() {
        let cases = [
            (
                "8000-8002:80-81",
                "invalid ranges specified for container and host Ports: 80-81 and 8000-8002",
            ),
            ("80:70000", "invalid containerPort: 70000"),
            ("x:80", "invalid hostPort: x"),
            ("80/icmp", "invalid proto: icmp"),
            ("1.2.3:80:80", "invalid IP address: 1.2.3"),
            ("90-80", "invalid containerPort: 90-80"),
        ];
        for (spec, msg) in cases {
            assert_eq!(parse_port(spec).unwrap_err(), msg, "{spec}");
        }
    }

    #[test]
    fn range_sorts_like_compose() {
        let p = parse_port("9999-10000").unwrap();
        assert_eq!(p[0].target, 10000);
        assert_eq!(p[1].target, 9999);
    }
}
