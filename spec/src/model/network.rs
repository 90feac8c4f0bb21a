//! Networks: a service's attachments (list or mapping with aliases and static addresses)
//! and the top-level network definitions.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::common::{Extensions, External, de_labels, de_options, is_false};

/// How a service joins one network. `None` in the attachment map means "defaults".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub driver_opts: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub gw_priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub priority: i32,
    #[serde(flatten)]
    pub extensions: Extensions,
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

pub type ServiceNetworks = IndexMap<String, Option<ServiceNetwork>>;

/// `networks` (or `models`) under a service: a list of names or a mapping name → config.
pub fn de_name_list_or_map<'de, D, T>(d: D) -> Result<IndexMap<String, Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = IndexMap<String, Option<T>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of names or a mapping")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.insert(name, None);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let v: Option<T> = map.next_value()?;
                out.insert(name, v);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// A top-level network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub driver_opts: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Ipam::is_empty")]
    pub ipam: Ipam,
    #[serde(
        default,
        skip_serializing_if = "external_is_false",
        serialize_with = "ser_external"
    )]
    pub external: External,
    #[serde(default, skip_serializing_if = "is_false")]
    pub internal: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub attachable: bool,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_ipv4: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

pub(crate) fn external_is_false(e: &External) -> bool {
    !e.external
}

pub(crate) fn ser_external<S: Serializer>(e: &External, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(e.external)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub options: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

impl Ipam {
    pub fn is_empty(&self) -> bool {
        self.driver.is_none()
            && self.config.is_empty()
            && self.options.is_empty()
            && self.extensions.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IpamPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub aux_addresses: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A top-level mapping whose entries may be null (`networks: {front: }`), read as defaults.
pub fn de_nullable_map<'de, D, T>(d: D) -> Result<IndexMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let m: Option<IndexMap<String, Option<T>>> = Option::deserialize(d)?;
    Ok(m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}
