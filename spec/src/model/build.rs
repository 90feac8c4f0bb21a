//! `build`: a context path (short syntax) or the long mapping, with its secrets, ssh keys,
//! args and caches.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::common::{
    Extensions, ExtraHosts, Scalar, Ulimit, de_env, de_labels, de_string_or_list, is_false,
};
use super::file_ref::{FileRef, de_file_refs};
use super::units::ByteSize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Build {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_env",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub args: IndexMap<String, Option<String>>,
    #[serde(
        default,
        deserialize_with = "de_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub provenance: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub sbom: Option<String>,
    #[serde(default, skip_serializing_if = "SshKeys::is_empty")]
    pub ssh: SshKeys,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_cache: bool,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub no_cache_filter: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub additional_contexts: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pull: bool,
    #[serde(default, skip_serializing_if = "ExtraHosts::is_empty")]
    pub extra_hosts: ExtraHosts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_file_refs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub ulimits: IndexMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

fn de_scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Scalar::deserialize(d)?.0)
}

/// `build` as a context string or the long mapping.
pub fn de_build<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Build>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Build>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a build context path or a build mapping")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Build {
                context: Some(v.to_string()),
                ..Default::default()
            }))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Build::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// SSH agent sockets or keys: `default`, or `id=path`. Printed as a list like Compose.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SshKeys(pub IndexMap<String, Option<String>>);

impl SshKeys {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for SshKeys {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<String> = self
            .0
            .iter()
            .map(|(id, path)| match path {
                Some(p) if !p.is_empty() => format!("{id}={p}"),
                _ => id.clone(),
            })
            .collect();
        list.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SshKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SshKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of ssh keys or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SshKeys, E> {
                let mut out = IndexMap::new();
                add_ssh(&mut out, v).map_err(E::custom)?;
                Ok(SshKeys(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SshKeys, A::Error> {
                let mut out = IndexMap::new();
                while let Some(s) = seq.next_element::<String>()? {
                    add_ssh(&mut out, &s).map_err(de::Error::custom)?;
                }
                Ok(SshKeys(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SshKeys, A::Error> {
                let mut out = IndexMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    let v: Scalar = map.next_value()?;
                    out.insert(k, v.0);
                }
                Ok(SshKeys(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn add_ssh(out: &mut IndexMap<String, Option<String>>, s: &str) -> Result<(), String> {
    match s.split_once('=') {
        Some((id, path)) => {
            out.insert(id.to_string(), Some(path.to_string()));
        }
        None if s == "default" => {
            out.insert(s.to_string(), None);
        }
        None => return Err(format!("invalid ssh key \"{s}\"")),
    }
    Ok(())
}
