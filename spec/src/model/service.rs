//! One service: every attribute of the Compose Specification's `service` definition, in the
//! order `docker compose config` prints them.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::build::{Build, de_build};
use super::common::{
    Extensions, ExtraHosts, Scalar, Ulimit, de_command, de_env, de_labels, de_options,
    de_string_or_list, is_false, is_zero_i64,
};
use super::deploy::{Deploy, DeviceCount, DeviceRequest};
use super::file_ref::{FileRef, de_file_refs};
use super::mount::{ServiceVolume, de_volumes};
use super::network::{ServiceNetwork, de_name_list_or_map};
use super::port::{PortConfig, de_ports};
use super::resources::ServiceModel;
use super::units::{ByteSize, Duration};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub annotations: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de_build",
        skip_serializing_if = "Option::is_none"
    )]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub develop: Option<Develop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<BlkioConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub cpu_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f32>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub cpu_period: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub cpu_quota: i64,
    #[serde(
        default,
        deserialize_with = "de_micros",
        skip_serializing_if = "is_zero_i64"
    )]
    pub cpu_rt_period: i64,
    #[serde(
        default,
        deserialize_with = "de_micros",
        skip_serializing_if = "is_zero_i64"
    )]
    pub cpu_rt_runtime: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub cpu_shares: i64,
    #[serde(
        default,
        deserialize_with = "de_command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "de_file_refs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub configs: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<CredentialSpec>,
    #[serde(
        default,
        deserialize_with = "de_depends_on",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub depends_on: IndexMap<String, Dependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_devices",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub devices: Vec<DeviceMapping>,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_command",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(
        default,
        deserialize_with = "de_env",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(
        default,
        deserialize_with = "de_env_files",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env_file: Vec<EnvFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_extends",
        skip_serializing_if = "Option::is_none"
    )]
    pub extends: Option<Extends>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    #[serde(default, skip_serializing_if = "ExtraHosts::is_empty")]
    pub extra_hosts: ExtraHosts,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_gpus",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gpus: Vec<DeviceRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub label_file: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_name_list_or_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub models: IndexMap<String, Option<ServiceModel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_name_list_or_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub networks: IndexMap<String, Option<ServiceNetwork>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_kill_disable: bool,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub oom_score_adj: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub pids_limit: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_ports",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<PortConfig>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_refresh_after: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i64>,
    #[serde(
        default,
        deserialize_with = "de_file_refs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub storage_opt: IndexMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de_labels",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub sysctls: IndexMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub ulimits: IndexMap<String, Ulimit>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_api_socket: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_volumes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<Hook>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// The order in which Compose prints a service's attributes (the struct order above).
pub const FIELD_ORDER: &[&str] = &[
    "profiles",
    "annotations",
    "attach",
    "build",
    "develop",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "cgroup",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "cpuset",
    "cpu_shares",
    "command",
    "configs",
    "container_name",
    "credential_spec",
    "depends_on",
    "deploy",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "provider",
    "environment",
    "env_file",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "group_add",
    "gpus",
    "hostname",
    "healthcheck",
    "image",
    "init",
    "ipc",
    "isolation",
    "labels",
    "label_file",
    "links",
    "logging",
    "mem_limit",
    "mem_reservation",
    "memswap_limit",
    "mem_swappiness",
    "mac_address",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
    "pre_start",
    "post_start",
    "pre_stop",
];

/// `cpu_rt_period`/`cpu_rt_runtime`: microseconds, or a duration string.
fn de_micros<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let s = Scalar::deserialize(d)?.0.unwrap_or_default();
    if let Ok(n) = s.trim().parse::<i64>() {
        return Ok(n);
    }
    let dur = super::units::parse_duration(&s).map_err(de::Error::custom)?;
    i64::try_from(dur.as_micros()).map_err(de::Error::custom)
}

/// When a dependency counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default)]
    pub condition: Condition,
    #[serde(default, skip_serializing_if = "is_false")]
    pub restart: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
    #[serde(default = "default_true")]
    pub required: bool,
}

impl Default for Dependency {
    fn default() -> Self {
        Dependency {
            condition: Condition::ServiceStarted,
            restart: false,
            extensions: Extensions::default(),
            required: true,
        }
    }
}

fn de_depends_on<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, Dependency>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = IndexMap<String, Dependency>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of services or a mapping of service to condition")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.insert(name, Dependency::default());
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let dep: Option<Dependency> = map.next_value()?;
                out.insert(name, dep.unwrap_or_default());
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Healthcheck {
    #[serde(
        default,
        deserialize_with = "de_health_test",
        skip_serializing_if = "Option::is_none"
    )]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// `healthcheck.test`: a string means `CMD-SHELL <string>`; a list is used as is.
fn de_health_test<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(vec!["CMD-SHELL".into(), v.to_string()]))
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub options: IndexMap<String, String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BlkioConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<ThrottleDevice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WeightDevice {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub weight: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ThrottleDevice {
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub rate: ByteSize,
}

/// A device mapping; the short syntax is `source[:target[:permissions]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeviceMapping {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

pub fn parse_device(spec: &str) -> Result<DeviceMapping, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [s] => (*s, "", "rwm"),
        [s, d] => (*s, *d, "rwm"),
        [s, d, p] => (*s, *d, *p),
        _ => {
            return Err(format!(
                "confusing device mapping, please use long syntax: {spec}"
            ));
        }
    };
    Ok(DeviceMapping {
        source: src.to_string(),
        target: Some(if dst.is_empty() { src } else { dst }.to_string()),
        permissions: Some(perms.to_string()),
        extensions: Extensions::default(),
    })
}

struct DeviceItem(DeviceMapping);

impl<'de> Deserialize<'de> for DeviceItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DeviceItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a device as a string or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeviceItem, E> {
                parse_device(v).map(DeviceItem).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DeviceItem, A::Error> {
                DeviceMapping::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(DeviceItem)
            }
        }
        d.deserialize_any(V)
    }
}

fn de_devices<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceMapping>, D::Error> {
    let items: Vec<DeviceItem> = Vec::deserialize(d)?;
    Ok(items.into_iter().map(|i| i.0).collect())
}

/// `gpus: all` or a list of device requests.
fn de_gpus<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceRequest>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<DeviceRequest>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("\"all\" or a list of device requests")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v != "all" {
                return Err(E::custom(format!(
                    "invalid value \"{v}\", the only string allowed is \"all\""
                )));
            }
            Ok(vec![DeviceRequest {
                count: Some(DeviceCount::All),
                ..Default::default()
            }])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(r) = seq.next_element::<DeviceRequest>()? {
                out.push(r);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CredentialSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// A service managed by an external provider rather than by berth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Provider {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "de_multi_options",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub options: IndexMap<String, Vec<String>>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

fn de_multi_options<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, Vec<String>>, D::Error> {
    struct Seed;
    impl<'de> de::DeserializeSeed<'de> for Seed {
        type Value = Vec<String>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
            de_string_or_list(d)
        }
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = IndexMap<String, Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping of options")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(k) = map.next_key::<String>()? {
                let v = map.next_value_seed(Seed)?;
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Extends {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

fn de_extends<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Extends>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Extends>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a service name or a mapping with service and file")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Extends {
                service: v.to_string(),
                file: None,
            }))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Extends::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default = "default_true")]
    pub required: bool,
}

fn de_env_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnvFile>, D::Error> {
    struct Item(EnvFile);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Item;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a path or a mapping with path")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Item, E> {
                    Ok(Item(EnvFile {
                        path: v.to_string(),
                        format: None,
                        required: true,
                    }))
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                    EnvFile::deserialize(de::value::MapAccessDeserializer::new(map)).map(Item)
                }
            }
            d.deserialize_any(V)
        }
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<EnvFile>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a path or a list of env files")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![EnvFile {
                path: v.to_string(),
                format: None,
                required: true,
            }])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Item(e)) = seq.next_element()? {
                out.push(e);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A lifecycle hook (`pre_start`, `post_start`, `pre_stop`, `develop.watch.exec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Hook {
    #[serde(
        default,
        deserialize_with = "de_command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "de_env",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub per_replica: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Develop {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<WatchRule>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WatchRule {
    pub path: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Hook>,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub include: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de_string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ignore: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub initial_sync: bool,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Why a service must start after another one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyKind {
    DependsOn {
        condition: Condition,
        restart: bool,
        required: bool,
    },
    Link,
    NetworkMode,
    VolumesFrom,
    /// `ipc`, `pid`, `uts` or `cgroup` set to `service:<name>`.
    Namespace(&'static str),
}

impl Service {
    /// Every service this one depends on, with the reason. A name may appear more than once
    /// with different kinds (`depends_on` and `links`, say).
    pub fn dependencies(&self) -> Vec<(String, DependencyKind)> {
        let mut out = Vec::new();
        for (name, d) in &self.depends_on {
            out.push((
                name.clone(),
                DependencyKind::DependsOn {
                    condition: d.condition,
                    restart: d.restart,
                    required: d.required,
                },
            ));
        }
        for link in &self.links {
            let name = link.split_once(':').map_or(link.as_str(), |(n, _)| n);
            out.push((name.to_string(), DependencyKind::Link));
        }
        if let Some(s) = self
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
        {
            out.push((s.to_string(), DependencyKind::NetworkMode));
        }
        for (attr, value) in [
            ("ipc", &self.ipc),
            ("pid", &self.pid),
            ("uts", &self.uts),
            ("cgroup", &self.cgroup),
        ] {
            if let Some(s) = value.as_deref().and_then(|m| m.strip_prefix("service:")) {
                out.push((s.to_string(), DependencyKind::Namespace(attr)));
            }
        }
        for from in &self.volumes_from {
            if from.starts_with("container:") {
                continue;
            }
            let name = from.split(':').next().unwrap_or(from);
            out.push((name.to_string(), DependencyKind::VolumesFrom));
        }
        out
    }

    /// How many containers the service runs: `scale`, else `deploy.replicas`, else 1.
    pub fn replicas(&self) -> i64 {
        self.scale
            .or_else(|| self.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }

    /// A stable sha256 of the service's canonical JSON, for `config --hash` and convergence.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        // Serializing plain data to JSON cannot fail: all map keys are strings.
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }
}
