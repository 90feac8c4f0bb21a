//! Value shapes shared by many attributes: `x-*` extensions, list-or-dict mappings,
//! string-or-list, commands (string split like a shell, or a list), extra hosts, ulimits
//! and `external`. Each accepts every syntax the Compose Specification allows and stores
//! one canonical form.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_yaml::Value;

/// `x-*` keys of one mapping, kept verbatim. Any other key reaching this map is unknown.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Extensions(pub IndexMap<String, Value>);

impl Extensions {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
}

impl Serialize for Extensions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Extensions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Extensions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extensions, A::Error> {
                let mut out = IndexMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    if !k.starts_with("x-") {
                        return Err(de::Error::unknown_field(&k, &[]));
                    }
                    let v: Value = map.next_value()?;
                    out.insert(k, v);
                }
                Ok(Extensions(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A scalar rendered as a string; `None` for null.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar(pub Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a list-or-dict (`["K=V", "K"]` or `{K: V, K: null}`) into key → optional value.
fn list_or_dict<'de, D: Deserializer<'de>>(
    d: D,
    what: &'static str,
) -> Result<IndexMap<String, Option<String>>, D::Error> {
    struct V(&'static str);
    impl<'de> Visitor<'de> for V {
        type Value = IndexMap<String, Option<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} as a mapping or a list of KEY=VALUE strings", self.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(item) = seq.next_element::<String>()? {
                match item.split_once('=') {
                    Some((k, v)) => out.insert(k.to_string(), Some(v.to_string())),
                    None => out.insert(item, None),
                };
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(k) = map.next_key::<String>()? {
                let v: Scalar = map.next_value()?;
                out.insert(k, v.0);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(IndexMap::new())
        }
    }
    d.deserialize_any(V(what))
}

/// Environment-like mapping: a bare `KEY` (or `KEY: null`) keeps no value.
pub fn de_env<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, Option<String>>, D::Error> {
    list_or_dict(d, "variables")
}

/// Label-like mapping: a bare `KEY` (or `KEY: null`) means the empty string.
pub fn de_labels<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
    Ok(list_or_dict(d, "labels")?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// A mapping whose values may be any scalar (driver options): stored as strings.
pub fn de_options<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
    let m: IndexMap<String, Scalar> = IndexMap::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.0.unwrap_or_default()))
        .collect())
}

/// A single string or a list of strings, stored as a list.
pub fn de_string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
}

/// Splits a command line like a POSIX shell without expansion (quotes and backslashes).
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err(format!("unterminated single quote in \"{s}\"")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err(format!("unterminated double quote in \"{s}\"")),
                        },
                        Some(n) => cur.push(n),
                        None => return Err(format!("unterminated double quote in \"{s}\"")),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `command`/`entrypoint`: a string (split like a shell), a list, or null.
pub fn de_command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a command as a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            split_command(v).map(Some).map_err(E::custom)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(Some(out))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// `extra_hosts`: host → addresses. Read from `host:ip`, `host=ip` (list) or a mapping;
/// printed as a sorted list of `host=ip`, as Compose prints it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExtraHosts(pub IndexMap<String, Vec<String>>);

impl ExtraHosts {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `host=ip[,ip]` or `host:ip` list entry; parsed inside the element so an error is
/// located at the entry itself.
struct HostEntry(String, Vec<String>);

impl<'de> Deserialize<'de> for HostEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entry = String::deserialize(d)?;
        let (host, ips) = entry
            .split_once('=')
            .or_else(|| entry.split_once(':'))
            .ok_or_else(|| {
                de::Error::custom(format!("invalid additional host, missing IP: {entry}"))
            })?;
        Ok(HostEntry(
            host.to_string(),
            ips.split(',').map(clean_host_ip).collect(),
        ))
    }
}

/// Compose accepts `[::1]` and prints `::1`.
fn clean_host_ip(ip: &str) -> String {
    ip.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(ip)
        .to_string()
}

impl Serialize for ExtraHosts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut list: Vec<String> = self
            .0
            .iter()
            .flat_map(|(h, ips)| ips.iter().map(move |ip| format!("{h}={ip}")))
            .collect();
        list.sort();
        list.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExtraHosts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExtraHosts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of host:ip or a mapping of host to ip")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExtraHosts, A::Error> {
                let mut out = ExtraHosts::default();
                while let Some(HostEntry(host, ips)) = seq.next_element()? {
                    out.0.entry(host).or_default().extend(ips);
                }
                Ok(out)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtraHosts, A::Error> {
                let mut out = ExtraHosts::default();
                while let Some(k) = map.next_key::<String>()? {
                    let ips = map.next_value_seed(StringOrListSeed)?;
                    out.0
                        .entry(k)
                        .or_default()
                        .extend(ips.iter().map(|s| clean_host_ip(s)));
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

struct StringOrListSeed;

impl<'de> de::DeserializeSeed<'de> for StringOrListSeed {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        de_string_or_list(d)
    }
}

/// One ulimit: a single value for soft and hard, or both given.
#[derive(Debug, Clone, PartialEq)]
pub enum Ulimit {
    Single(i64),
    Pair {
        soft: i64,
        hard: i64,
        extensions: Extensions,
    },
}

impl Ulimit {
    pub fn soft(&self) -> i64 {
        match self {
            Ulimit::Single(v) => *v,
            Ulimit::Pair { soft, .. } => *soft,
        }
    }

    pub fn hard(&self) -> i64 {
        match self {
            Ulimit::Single(v) => *v,
            Ulimit::Pair { hard, .. } => *hard,
        }
    }
}

impl Serialize for Ulimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Ulimit::Single(v) => s.serialize_i64(*v),
            Ulimit::Pair {
                soft,
                hard,
                extensions,
            } => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("soft", soft)?;
                m.serialize_entry("hard", hard)?;
                for (k, v) in &extensions.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

#[derive(Deserialize)]
struct UlimitPair {
    soft: i64,
    hard: i64,
    #[serde(flatten)]
    extensions: Extensions,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a mapping with soft and hard")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
                Ok(Ulimit::Single(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                i64::try_from(v).map(Ulimit::Single).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ulimit, E> {
                v.trim()
                    .parse()
                    .map(Ulimit::Single)
                    .map_err(|_| E::custom(format!("expected an integer, found \"{v}\"")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let p = UlimitPair::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit::Pair {
                    soft: p.soft,
                    hard: p.hard,
                    extensions: p.extensions,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `external`: a boolean, or (deprecated) a mapping `{name: ...}` meaning `true` plus a name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct External {
    pub external: bool,
    /// The deprecated `external.name`.
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = External;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean or a mapping with a name")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<External, E> {
                Ok(External {
                    external: v,
                    name: None,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<External, E> {
                match crate::model::de::parse_bool(v.trim()) {
                    Some(b) => Ok(External {
                        external: b,
                        name: None,
                    }),
                    None => Err(E::custom(format!("expected a boolean, found \"{v}\""))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<External, A::Error> {
                // `x-*` keys are tolerated here as the specification allows them.
                let mut ext = External {
                    external: true,
                    name: None,
                };
                let m: IndexMap<String, Value> =
                    IndexMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                for (k, v) in m {
                    if k == "name" {
                        ext.name = crate::model::de::scalar_to_string(&v);
                    } else if !k.starts_with("x-") {
                        return Err(de::Error::unknown_field(&k, &["name"]));
                    }
                }
                Ok(ext)
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_commands_like_a_shell() {
        let cases: &[(&str, &[&str])] = &[
            ("echo hello", &["echo", "hello"]),
            (
                "sh -c 'echo $HOME && ls'",
                &["sh", "-c", "echo $HOME && ls"],
            ),
            (r#"echo "a \"b\" c""#, &["echo", "a \"b\" c"]),
            (r"a\ b  c", &["a b", "c"]),
            ("''", &[""]),
            ("", &[]),
        ];
        for (input, want) in cases {
            assert_eq!(split_command(input).unwrap(), *want, "{input}");
        }
        assert!(split_command("echo 'x").is_err());
    }
}
