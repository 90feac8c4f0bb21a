//! What a user asks of a container (`berth run` flags, or a Compose service later), parsed
//! and validated, with no I/O. Stored verbatim in the container record so `start` after a
//! reboot and `inspect` see exactly what was asked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ContainerError;

/// How the container is networked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "mode", content = "name")]
pub enum NetworkMode {
    /// A bridge network (the default one, `berth`, unless named).
    Bridge(String),
    /// The host's network namespace.
    Host,
    /// A network namespace with only loopback.
    None,
    /// The default bridge network.
    #[default]
    Default,
}

impl NetworkMode {
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            "bridge" | "default" | "" => NetworkMode::Default,
            other => NetworkMode::Bridge(other.to_string()),
        }
    }
}

/// One `-v`/`--mount` mount: a host path (bind) or a volume (named, or anonymous when the
/// source is empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// Host path for binds, volume name for volumes; empty for an anonymous volume.
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// Bind propagation: `rprivate` (default), `private`, `rshared`, `shared`, `rslave`,
    /// `slave`.
    #[serde(default)]
    pub propagation: Option<String>,
    /// Create a missing bind source as a directory (`-v` does; `--mount` only with
    /// `bind-create-host-path`, Compose's `bind.create_host_path`).
    #[serde(default = "yes")]
    pub create_host_path: bool,
    /// Do not fill a new volume from the image (`nocopy`, `volume-nocopy`).
    #[serde(default)]
    pub no_copy: bool,
}

fn yes() -> bool {
    true
}

const PROPAGATIONS: [&str; 6] = [
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
}

impl MountSpec {
    /// Parses Docker's `--mount type=bind|volume,source=…,target=…[,readonly]
    /// [,bind-propagation=…][,bind-create-host-path][,volume-nocopy]`.
    pub fn parse_mount(spec: &str) -> Result<MountSpec, ContainerError> {
        let bad = |reason: &str| ContainerError::BadOption {
            option: "--mount".into(),
            value: spec.into(),
            reason: reason.into(),
        };
        let mut m = MountSpec {
            kind: MountKind::Volume,
            source: String::new(),
            destination: String::new(),
            read_only: false,
            propagation: None,
            create_host_path: false,
            no_copy: false,
        };
        let truthy = |v: Option<&str>| !matches!(v, Some("false" | "0"));
        for field in spec.split(',').filter(|f| !f.is_empty()) {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (field, None),
            };
            match (k, v) {
                ("type", Some("bind")) => m.kind = MountKind::Bind,
                ("type", Some("volume")) => m.kind = MountKind::Volume,
                ("type", Some(t)) => {
                    return Err(bad(&format!("type {t:?}: use bind or volume (or --tmpfs)")));
                }
                ("source" | "src", Some(v)) => m.source = v.to_string(),
                ("target" | "destination" | "dst", Some(v)) => m.destination = v.to_string(),
                ("readonly" | "ro", v) => m.read_only = truthy(v),
                ("bind-propagation", Some(p)) if PROPAGATIONS.contains(&p) => {
                    m.propagation = Some(p.to_string());
                }
                ("bind-create-host-path", v) => m.create_host_path = truthy(v),
                ("volume-nocopy", v) => m.no_copy = truthy(v),
                _ => return Err(bad(&format!("unknown or invalid field {field:?}"))),
            }
        }
        if !m.destination.starts_with('/') {
            return Err(bad("the target must be an absolute path"));
        }
        match m.kind {
            MountKind::Bind if !m.source.starts_with('/') => {
                Err(bad("a bind source must be an absolute path"))
            }
            MountKind::Volume if !m.source.is_empty() && !valid_name(&m.source) => {
                Err(bad("a volume name may use [a-zA-Z0-9][a-zA-Z0-9_.-]*"))
            }
            MountKind::Volume if m.propagation.is_some() => {
                Err(bad("bind-propagation applies to binds only"))
            }
            _ => Ok(m),
        }
    }

    /// Parses Docker's `-v SOURCE:DEST[:OPTS]`: a source starting with `/` (or `.`) is a
    /// host path, otherwise a volume name; `-v /dest` alone is an anonymous volume. OPTS:
    /// `ro`, `rw`, `nocopy`, a propagation mode, SELinux's `z`/`Z` (ignored).
    pub fn parse(spec: &str) -> Result<MountSpec, ContainerError> {
        let bad = |reason: &str| ContainerError::BadOption {
            option: "-v".into(),
            value: spec.into(),
            reason: reason.into(),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, destination, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, None),
            [s, d, m] => (*s, *d, Some(*m)),
            [d] if d.starts_with('/') => ("", *d, None),
            [_] => return Err(bad("the destination must be an absolute path")),
            _ => return Err(bad("expected SOURCE:DEST[:ro]")),
        };
        if source.is_empty() && parts.len() > 1 {
            return Err(bad("empty source"));
        }
        if !destination.starts_with('/') {
            return Err(bad("the destination must be an absolute path"));
        }
        let mut read_only = false;
        let mut propagation = None;
        let mut no_copy = false;
        if let Some(mode) = mode {
            for m in mode.split(',') {
                match m {
                    "ro" => read_only = true,
                    "nocopy" => no_copy = true,
                    p if PROPAGATIONS.contains(&p) => propagation = Some(p.to_string()),
                    "rw" | "z" | "Z" | "" => {}
                    other => return Err(bad(&format!("unknown mode {other:?}"))),
                }
            }
        }
        let kind = if source.starts_with('/') || source.starts_with('.') {
            MountKind::Bind
        } else {
            if !source.is_empty() && !valid_name(source) {
                return Err(bad("a volume name may use [a-zA-Z0-9][a-zA-Z0-9_.-]*"));
            }
            if propagation.is_some() {
                return Err(bad("propagation applies to bind mounts only"));
            }
            MountKind::Volume
        };
        Ok(MountSpec {
            kind,
            source: source.into(),
            destination: destination.into(),
            read_only,
            propagation,
            create_host_path: true,
            no_copy,
        })
    }
}

/// Container and volume names: Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name.len() <= 128
}

/// Everything `berth run` can ask of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RunOptions {
    pub name: Option<String>,
    /// The image as the user wrote it.
    pub image: String,
    /// Replaces the image's entrypoint; `Some(vec![])` clears it (`--entrypoint ""`).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's `Cmd` when not empty.
    pub cmd: Vec<String>,
    /// `K=V` (or `K` alone, taken from the caller's environment by the CLI).
    pub env: Vec<String>,
    pub mounts: Vec<MountSpec>,
    /// `--tmpfs /path[:options]`.
    pub tmpfs: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// Bytes.
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub init: bool,
    pub tty: bool,
    pub stdin: bool,
    pub labels: BTreeMap<String, String>,
    pub network: NetworkMode,
    /// `-p` as given; parsed by berth-network.
    pub ports: Vec<String>,
    pub dns: Vec<String>,
    pub add_host: Vec<String>,
    pub auto_remove: bool,
    /// `--volumes-from CONTAINER[:ro|rw]`: that container's mounts, again.
    pub volumes_from: Vec<String>,
    /// Networks to join, in priority order (the first gets the default route and the
    /// published ports); when not empty it replaces `network`. Set by the agent for Compose
    /// services; the networks must exist.
    pub networks: Vec<NetworkAttachment>,
    /// The embedded DNS server (`nameserver` in `/etc/resolv.conf`) when the container is
    /// on Compose networks; `dns` servers then become its upstreams.
    pub resolver: Option<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub domainname: Option<String>,
    /// Every capability, every device, no seccomp filter, no masked paths.
    pub privileged: bool,
    pub ulimits: Vec<Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    /// `HOST[:CONTAINER[:PERMISSIONS]]`.
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
    /// Bytes of `/dev/shm`.
    pub shm_size: Option<i64>,
    /// Replaces the image's `StopSignal`.
    pub stop_signal: Option<String>,
    /// Extra groups of the process (names from the image's `/etc/group`, or numbers).
    pub group_add: Vec<String>,
    pub oom_score_adj: Option<i32>,
    /// Join this container's network namespace (`network_mode: service:x|container:x`):
    /// its id; the namespace is looked up when this container starts.
    pub network_from: Option<String>,
    /// Relative CPU weight (`--cpu-shares`, cgroup v1 `cpu.shares`; the runtime converts
    /// it to `cpu.weight` on v2).
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (`--cpuset-cpus`, `0-2,4`).
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use (`--cpuset-mems`).
    pub cpuset_mems: Option<String>,
    /// The PID namespace: `None` for its own, `host`, or `container:<id>` (that
    /// container's, looked up when this one starts).
    pub pid_mode: Option<String>,
    /// The IPC namespace: `None` for its own, or `host` (with the host's `/dev/shm`).
    pub ipc_mode: Option<String>,
}

/// A namespace mode (`pid_mode`, `ipc_mode`) checked: `Ok(None)` private, `Ok(Some(None))`
/// the host's, `Ok(Some(Some(id)))` a container's.
pub fn namespace_mode<'a>(
    option: &str,
    mode: Option<&'a str>,
) -> Result<Option<Option<&'a str>>, ContainerError> {
    match mode {
        None | Some("" | "private") => Ok(None),
        Some("host") => Ok(Some(None)),
        Some(m) => match m.strip_prefix("container:") {
            Some(id) if !id.is_empty() => Ok(Some(Some(id))),
            _ => Err(ContainerError::BadOption {
                option: option.into(),
                value: m.into(),
                reason: "expected private, host or container:<id>".into(),
            }),
        },
    }
}

/// One network a container joins, with its names on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NetworkAttachment {
    /// The berth network id.
    pub network: String,
    /// The service name the endpoint answers to in DNS (also `tasks.<service>`).
    pub service: Option<String>,
    pub aliases: Vec<String>,
    /// Static addresses (`ipv4_address`, `ipv6_address`).
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
}

/// One resource limit (`ulimits`): soft and hard values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// `nofile`, `nproc`, … (without `RLIMIT_`).
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Parses `--memory` values: `32m`, `1g`, `512k`, `1048576` (bytes), `1.5g`.
pub fn parse_bytes(s: &str) -> Result<i64, ContainerError> {
    let bad = || ContainerError::BadOption {
        option: "--memory".into(),
        value: s.into(),
        reason: "expected a size such as 32m or 1g".into(),
    };
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !(n.is_finite() && n > 0.0) {
        return Err(bad());
    }
    Ok((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs() {
        let m = MountSpec::parse("/host:/ctr:ro").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert!(m.read_only);
        let m = MountSpec::parse("data:/var/lib/x").unwrap();
        assert_eq!(m.kind, MountKind::Volume);
        assert!(!m.read_only);
        let m = MountSpec::parse("/only").unwrap();
        assert_eq!((m.kind, m.source.as_str()), (MountKind::Volume, ""));
        assert!(MountSpec::parse("only").is_err());
        let m = MountSpec::parse("/h:/c:ro,rshared").unwrap();
        assert_eq!(m.propagation.as_deref(), Some("rshared"));
        assert!(MountSpec::parse("v:/c:rshared").is_err());
        assert!(MountSpec::parse("v:/c:nocopy").unwrap().no_copy);
        let m = MountSpec::parse_mount(
            "type=bind,source=/h,target=/c,readonly,bind-propagation=rslave,bind-create-host-path",
        )
        .unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert!(m.read_only && m.create_host_path);
        assert_eq!(m.propagation.as_deref(), Some("rslave"));
        assert!(
            !MountSpec::parse_mount("type=bind,src=/h,dst=/c")
                .unwrap()
                .create_host_path
        );
        let m = MountSpec::parse_mount("type=volume,target=/c,volume-nocopy").unwrap();
        assert!(m.source.is_empty() && m.no_copy);
        assert!(MountSpec::parse_mount("type=bind,src=rel,dst=/c").is_err());
        assert!(
            MountSpec::parse_mount("type=volume,src=v,dst=/c,bind-propagation=shared").is_err()
        );
        assert!(MountSpec::parse_mount("type=nfs,dst=/c").is_err());
        assert!(MountSpec::parse("x:relative").is_err());
        assert!(MountSpec::parse("a:/b:bogus").is_err());
        assert!(MountSpec::parse("-bad:/b").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("32m").unwrap(), 32 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("512KB").unwrap(), 512 << 10);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1m").is_err());
    }

    #[test]
    fn network_modes() {
        assert_eq!(NetworkMode::parse("host"), NetworkMode::Host);
        assert_eq!(NetworkMode::parse("bridge"), NetworkMode::Default);
        assert_eq!(
            NetworkMode::parse("front"),
            NetworkMode::Bridge("front".into())
        );
    }
}
