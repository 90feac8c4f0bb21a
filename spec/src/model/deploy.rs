//! `deploy`: replicas, mode, resources, placement, restart, update and rollback policies,
//! and the device requests shared with `gpus`.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::common::{Extensions, de_labels, de_string_or_list, is_zero_i64};
use super::units::{ByteSize, Duration};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Deploy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UpdateConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateOrder {
    #[serde(rename = "start-first")]
    StartFirst,
    #[serde(rename = "stop-first")]
    StopFirst,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Resource>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

impl Resources {
    pub fn is_empty(&self) -> bool {
        self.limits.is_none() && self.reservations.is_none() && self.extensions.is_empty()
    }
}

/// Limits or reservations. `devices` and `generic_resources` are only valid as reservations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub pids: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GenericResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrete_resource_spec: Option<DiscreteResource>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DiscreteResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub value: i64,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A device request (`deploy.resources.reservations.devices`, `gpus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeviceRequest {
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<DeviceCount>,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub device_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub options: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A number of devices, or all of them (`-1`, printed as `-1` like Compose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceCount {
    All,
    Count(i64),
}

impl Serialize for DeviceCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeviceCount::All => s.serialize_i64(-1),
            DeviceCount::Count(n) => s.serialize_i64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DeviceCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of devices or \"all\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DeviceCount, E> {
                Ok(if v == -1 {
                    DeviceCount::All
                } else {
                    DeviceCount::Count(v)
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DeviceCount, E> {
                i64::try_from(v).map(DeviceCount::Count).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeviceCount, E> {
                if v.eq_ignore_ascii_case("all") {
                    return Ok(DeviceCount::All);
                }
                v.trim()
                    .parse::<i64>()
                    .map(|n| self.visit_i64::<E>(n))
                    .map_err(|_| {
                        E::custom(format!(
                            "invalid value \"{v}\", the only value allowed is 'all' or a number"
                        ))
                    })?
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas_per_node: Option<u64>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.constraints.is_empty()
            && self.preferences.is_empty()
            && self.max_replicas_per_node.is_none()
            && self.extensions.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PlacementPreference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}
