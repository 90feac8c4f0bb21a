//! A service's grant of a secret or config (`secrets:`/`configs:` under a service and
//! under `build`): a name (short syntax) or the long mapping with target, uid, gid, mode.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::common::Extensions;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FileRef {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Permission bits. A string is octal (`"0440"`); a number is taken as is. Printed as an
/// octal string like Compose (`"0440"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0{:o}", self.0))
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file mode")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileMode, E> {
                u32::try_from(v).map(FileMode).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileMode, E> {
                u32::try_from(v)
                    .map(FileMode)
                    .map_err(|_| E::custom(format!("invalid file mode {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileMode, E> {
                let t = v.trim();
                let digits = t.strip_prefix("0o").unwrap_or(t);
                u32::from_str_radix(digits, 8)
                    .map(FileMode)
                    .map_err(|_| E::custom(format!("invalid file mode \"{v}\"")))
            }
        }
        d.deserialize_any(V)
    }
}

struct FileRefItem(FileRef);

impl<'de> Deserialize<'de> for FileRefItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileRefItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a mapping with source")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileRefItem, E> {
                Ok(FileRefItem(FileRef {
                    source: v.to_string(),
                    ..Default::default()
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRefItem, A::Error> {
                FileRef::deserialize(de::value::MapAccessDeserializer::new(map)).map(FileRefItem)
            }
        }
        d.deserialize_any(V)
    }
}

pub fn de_file_refs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileRef>, D::Error> {
    let items: Vec<FileRefItem> = Vec::deserialize(d)?;
    Ok(items.into_iter().map(|i| i.0).collect())
}
