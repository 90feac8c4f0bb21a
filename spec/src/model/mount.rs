//! Service volumes (mounts): the short syntax `[source:]target[:options]` and the long
//! syntax (bind, volume, tmpfs, npipe, cluster, image), both stored as `ServiceVolume`,
//! the long form Compose prints.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::common::{Extensions, de_labels, is_false};
use super::units::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServiceVolume {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOptions>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// Compose creates a missing host path unless told not to (`create_host_path: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_host_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VolumeOptions {
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    /// File mode bits, e.g. 0o1777.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

pub const MOUNT_TYPES: &[&str] = &["bind", "volume", "tmpfs", "cluster", "npipe", "image"];

/// A source that names a host path rather than a volume (`.`, `/`, `~`, `\\`, `C:`).
pub fn is_host_path(source: &str) -> bool {
    let mut chars = source.chars();
    match chars.next() {
        None => false,
        Some('.' | '/' | '~') => true,
        Some(c) => {
            source.starts_with(r"\\") || (c.is_ascii_alphabetic() && chars.next() == Some(':'))
        }
    }
}

fn is_windows_drive(buf: &str, c: char) -> bool {
    c == ':' && buf.chars().count() == 1 && buf.chars().all(char::is_alphabetic)
}

/// Parses one short-syntax volume, as Compose does.
pub fn parse_volume(spec: &str) -> Result<ServiceVolume, String> {
    let mut v = ServiceVolume::default();
    match spec.chars().count() {
        0 => return Err("invalid empty volume spec".into()),
        1 | 2 => {
            v.kind = "volume".into();
            v.target = Some(spec.to_string());
            v.volume = Some(VolumeOptions::default());
            return Ok(v);
        }
        _ => {}
    }
    let mut fields: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut depth = 0usize;
    let chars: Vec<char> = spec.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        // Colons inside `${...}` (left uninterpolated) are not separators.
        if c == '$' && chars.get(i + 1) == Some(&'{') {
            depth += 1;
        } else if c == '}' && depth > 0 {
            depth -= 1;
        } else if c == ':' && depth == 0 && !is_windows_drive(&buf, c) {
            fields.push(std::mem::take(&mut buf));
            continue;
        }
        buf.push(c);
    }
    fields.push(buf);
    if fields.iter().any(String::is_empty) {
        return Err(format!(
            "invalid spec: {spec}: empty section between colons"
        ));
    }
    let options = match fields.len() {
        1 => {
            v.target = Some(fields.remove(0));
            None
        }
        2 | 3 => {
            let opts = (fields.len() == 3).then(|| fields.pop().unwrap_or_default());
            v.target = fields.pop();
            v.source = fields.pop();
            opts
        }
        _ => return Err(format!("invalid spec: {spec}: too many colons")),
    };
    let source = v.source.clone().unwrap_or_default();
    if is_host_path(&source) {
        v.kind = "bind".into();
        v.bind = Some(BindOptions {
            create_host_path: Some(true),
            ..Default::default()
        });
    } else {
        v.kind = "volume".into();
        v.volume = Some(VolumeOptions::default());
    }
    for opt in options.iter().flat_map(|o| o.split(',')) {
        match opt {
            "ro" => v.read_only = true,
            "rw" => v.read_only = false,
            "nocopy" => v.volume.get_or_insert_with(Default::default).nocopy = true,
            "z" | "Z" => v.bind.get_or_insert_with(Default::default).selinux = Some(opt.into()),
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                v.bind.get_or_insert_with(Default::default).propagation = Some(opt.into())
            }
            "cached" | "delegated" | "consistent" => v.consistency = Some(opt.into()),
            // Compose ignores options it does not know.
            _ => {}
        }
    }
    Ok(v)
}

/// One item of `volumes`: a short-syntax string or a long-syntax mapping.
pub struct VolumeItem(pub ServiceVolume);

impl<'de> Deserialize<'de> for VolumeItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VolumeItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a volume as a string or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VolumeItem, E> {
                parse_volume(v).map(VolumeItem).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VolumeItem, A::Error> {
                let v = ServiceVolume::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if !MOUNT_TYPES.contains(&v.kind.as_str()) {
                    return Err(de::Error::custom(format!(
                        "invalid mount type \"{}\", must be one of {}",
                        v.kind,
                        MOUNT_TYPES.join(", ")
                    )));
                }
                Ok(VolumeItem(v))
            }
        }
        d.deserialize_any(V)
    }
}

pub fn de_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceVolume>, D::Error> {
    let items: Vec<VolumeItem> = Vec::deserialize(d)?;
    Ok(items.into_iter().map(|i| i.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(src: &str, dst: &str) -> ServiceVolume {
        ServiceVolume {
            kind: "bind".into(),
            source: Some(src.into()),
            target: Some(dst.into()),
            bind: Some(BindOptions {
                create_host_path: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn vol(src: Option<&str>, dst: &str) -> ServiceVolume {
        ServiceVolume {
            kind: "volume".into(),
            source: src.map(Into::into),
            target: Some(dst.into()),
            volume: Some(VolumeOptions::default()),
            ..Default::default()
        }
    }

    #[test]
    fn short_syntax_table() {
        let ro = |mut v: ServiceVolume| {
            v.read_only = true;
            v
        };
        let cases: Vec<(&str, ServiceVolume)> = vec![
            ("/data", vol(None, "/data")),
            ("db:/var/lib/db", vol(Some("db"), "/var/lib/db")),
            ("./src:/app", bind("./src", "/app")),
            ("/etc/x:/x:ro", ro(bind("/etc/x", "/x"))),
            ("~/cfg:/cfg", bind("~/cfg", "/cfg")),
            ("C:\\data:/data", bind("C:\\data", "/data")),
            ("${SRC}:/app", vol(Some("${SRC}"), "/app")),
            ("${A:-/x}:/app", vol(Some("${A:-/x}"), "/app")),
            ("cache:/c:nocopy", {
                let mut v = vol(Some("cache"), "/c");
                v.volume = Some(VolumeOptions {
                    nocopy: true,
                    ..Default::default()
                });
                v
            }),
            ("./a:/a:z,rshared", {
                let mut v = bind("./a", "/a");
                v.bind = Some(BindOptions {
                    create_host_path: Some(true),
                    selinux: Some("z".into()),
                    propagation: Some("rshared".into()),
                    ..Default::default()
                });
                v
            }),
            ("./a:/a:cached", {
                let mut v = bind("./a", "/a");
                v.consistency = Some("cached".into());
                v
            }),
        ];
        for (spec, want) in cases {
            assert_eq!(parse_volume(spec).unwrap(), want, "{spec}");
        }
    }

    #[test]
    fn short_syntax_errors() {
        assert_eq!(parse_volume("").unwrap_err(), "invalid empty volume spec");
        assert_eq!(
            parse_volume("ab::c").unwrap_err(),
            "invalid spec: ab::c: empty section between colons"
        );
        assert_eq!(
            parse_volume("ab:cd:ro:xy").unwrap_err(),
            "invalid spec: ab:cd:ro:xy: too many colons"
        );
    }
}
