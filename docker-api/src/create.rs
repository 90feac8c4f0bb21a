//! `POST /containers/create`: Docker's container config and `HostConfig` translated to
//! berth's [`RunOptions`], plus what berth's record has no field for (restart policy, log
//! driver, anonymous volumes), kept in this crate's side record. Pure: the caller supplies
//! fresh volume names and free host ports. Options berth cannot honour are refused with a
//! 400 naming them, never silently dropped when they change what the container may do.

use std::collections::BTreeMap;

use berth_node_agent::container::options::Ulimit;
use berth_node_agent::container::spec::security_opt_known;
use berth_node_agent::container::{MountKind, MountSpec, NetworkMode, RunOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;

/// Docker's `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `""`/`no`, `always`, `unless-stopped`, `on-failure`.
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "MaximumRetryCount", default)]
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    /// Whether a container that exited with `code` is started again (after `restarts`
    /// restarts so far); a container stopped through the API is never restarted.
    pub fn should_restart(&self, code: i32, restarts: i64, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0 && (self.maximum_retry_count == 0 || restarts < self.maximum_retry_count)
            }
            _ => false,
        }
    }
}

/// What the API keeps about a container beyond berth's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extra {
    pub restart: RestartPolicy,
    pub log_type: String,
    pub log_config: BTreeMap<String, String>,
    /// Volumes made for `Volumes`/bare `-v /path`, removed with `rm -v`.
    pub anonymous_volumes: Vec<String>,
    /// Network aliases asked for (recorded; berth's DNS answers the container name).
    pub aliases: Vec<String>,
    pub stop_timeout: Option<i64>,
    /// The config as the client sent it, for inspect.
    pub exposed_ports: Vec<String>,
    /// `HostConfig.ConsoleSize` (rows, columns): the TTY's size from the first moment.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    #[serde(default)]
    pub restart_count: i64,
    /// Set by stop/kill through the API; cleared by start.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// `Config.Healthcheck` as the client sent it (Docker's shape, durations in ns).
    #[serde(default)]
    pub healthcheck: Option<Value>,
    /// `HostConfig.Links` as given (`name:alias`); resolved to `/etc/hosts` entries at
    /// create.
    #[serde(default)]
    pub links: Vec<String>,
}

/// A create request, translated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub options: RunOptions,
    pub extra: Extra,
}

/// Where [`translate`] gets what is not in the request.
pub trait Supplies {
    fn volume_name(&mut self) -> String;
    fn free_port(&mut self, protocol: &str) -> Result<u16, ApiError>;
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        Value::String(s) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(String::from)
}

fn nonzero(v: &Value) -> Option<i64> {
    v.as_i64().filter(|n| *n != 0)
}

/// Translates the body of `POST /containers/create?name=…`.
pub fn translate(
    body: &Value,
    name: Option<&str>,
    supplies: &mut dyn Supplies,
) -> Result<Plan, ApiError> {
    let image = opt_str(&body["Image"]).ok_or_else(|| ApiError::bad_request("no image given"))?;
    let host = &body["HostConfig"];
    refuse_unsupported(host)?;
    let mut extra = Extra::default();
    let mut opts = RunOptions {
        name: name.filter(|n| !n.is_empty()).map(String::from),
        image,
        cmd: strings(&body["Cmd"]),
        env: strings(&body["Env"]),
        workdir: opt_str(&body["WorkingDir"]),
        user: opt_str(&body["User"]),
        hostname: opt_str(&body["Hostname"]),
        tty: body["Tty"].as_bool().unwrap_or(false),
        stdin: body["OpenStdin"].as_bool().unwrap_or(false),
        labels: string_map(&body["Labels"]),
        ..RunOptions::default()
    };
    if !body["Entrypoint"].is_null() {
        let e = strings(&body["Entrypoint"]);
        // `--entrypoint ""` arrives as [""] (or ""): clear the image's entrypoint
        opts.entrypoint = Some(e.into_iter().filter(|s| !s.is_empty()).collect());
    }
    if let Some(ports) = body["ExposedPorts"].as_object() {
        extra.exposed_ports = ports.keys().cloned().collect();
    }
    extra.stop_timeout = body["StopTimeout"].as_i64();
    opts.stop_signal = opt_str(&body["StopSignal"]);
    if let Some(sig) = &opts.stop_signal {
        berth_node_agent::container::parse_signal(sig)
            .map_err(|_| ApiError::bad_request(format!("StopSignal: invalid signal {sig:?}")))?;
    }
    opts.domainname = opt_str(&body["Domainname"]);
    if opt_str(&body["MacAddress"]).is_some() {
        return Err(ApiError::bad_request(
            "MacAddress is not supported by berth (addresses are assigned by its networks)",
        ));
    }
    if body["NetworkDisabled"].as_bool() == Some(true) {
        return Err(ApiError::bad_request(
            "NetworkDisabled is not supported by berth; use NetworkMode none",
        ));
    }
    extra.healthcheck = healthcheck(&body["Healthcheck"])?;
    if let Some([h, w]) = host["ConsoleSize"].as_array().map(Vec::as_slice) {
        let (h, w) = (h.as_u64().unwrap_or(0), w.as_u64().unwrap_or(0));
        if h > 0 && w > 0 {
            extra.console_size =
                Some((h.min(u16::MAX as u64) as u16, w.min(u16::MAX as u64) as u16));
        }
    }

    // storage: binds, mounts, tmpfs, anonymous volumes
    for b in strings(&host["Binds"]) {
        if !b.contains(':') {
            let dest = b.clone();
            opts.mounts
                .push(anonymous(&dest, false, supplies, &mut extra)?);
            continue;
        }
        opts.mounts.push(MountSpec::parse(&b)?);
    }
    if let Some(mounts) = host["Mounts"].as_array() {
        for m in mounts {
            let target = opt_str(&m["Target"])
                .ok_or_else(|| ApiError::bad_request("a mount needs a Target"))?;
            let ro = m["ReadOnly"].as_bool().unwrap_or(false);
            for (section, keys) in [
                (
                    "BindOptions",
                    &[
                        "NonRecursive",
                        "CreateMountpoint",
                        "ReadOnlyNonRecursive",
                        "ReadOnlyForceRecursive",
                    ][..],
                ),
                ("VolumeOptions", &["DriverConfig", "Subpath"][..]),
                ("TmpfsOptions", &["Options"][..]),
            ] {
                for k in keys {
                    let v = &m[section][k];
                    let set = match v {
                        Value::Bool(b) => *b,
                        Value::String(s) => !s.is_empty(),
                        Value::Array(a) => !a.is_empty(),
                        Value::Object(o) => o.values().any(|x| !x.is_null()),
                        _ => false,
                    };
                    if set {
                        return Err(ApiError::bad_request(format!(
                            "Mounts: {section}.{k} is not supported by berth"
                        )));
                    }
                }
            }
            match m["Type"].as_str().unwrap_or("volume") {
                "bind" => {
                    let source = opt_str(&m["Source"])
                        .ok_or_else(|| ApiError::bad_request("a bind mount needs a Source"))?;
                    opts.mounts.push(MountSpec {
                        kind: MountKind::Bind,
                        source,
                        destination: target,
                        read_only: ro,
                        propagation: opt_str(&m["BindOptions"]["Propagation"]),
                        // unlike `Binds`, a `Mounts` bind refuses a missing source (as Docker)
                        create_host_path: false,
                        no_copy: false,
                    });
                }
                "volume" => match opt_str(&m["Source"]) {
                    Some(source) => opts.mounts.push(MountSpec {
                        kind: MountKind::Volume,
                        source,
                        destination: target,
                        read_only: ro,
                        propagation: None,
                        create_host_path: false,
                        no_copy: m["VolumeOptions"]["NoCopy"].as_bool().unwrap_or(false),
                    }),
                    None => opts
                        .mounts
                        .push(anonymous(&target, ro, supplies, &mut extra)?),
                },
                "tmpfs" => {
                    let t = &m["TmpfsOptions"];
                    let mut o = Vec::new();
                    if let Some(size) = nonzero(&t["SizeBytes"]) {
                        o.push(format!("size={size}"));
                    }
                    if let Some(mode) = t["Mode"].as_u64() {
                        o.push(format!("mode={mode:o}"));
                    }
                    opts.tmpfs.push(if o.is_empty() {
                        target
                    } else {
                        format!("{target}:{}", o.join(","))
                    });
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "mount type {other:?} is not supported by berth"
                    )));
                }
            }
        }
    }
    if let Some(vols) = body["Volumes"].as_object() {
        for dest in vols.keys() {
            if !opts.mounts.iter().any(|m| &m.destination == dest) {
                opts.mounts
                    .push(anonymous(dest, false, supplies, &mut extra)?);
            }
        }
    }
    for (path, o) in string_map(&host["Tmpfs"]) {
        opts.tmpfs.push(if o.is_empty() {
            path
        } else {
            format!("{path}:{o}")
        });
    }

    // resources
    opts.memory = nonzero(&host["Memory"]);
    opts.cpus = nonzero(&host["NanoCpus"])
        .map(|n| n as f64 / 1e9)
        .or_else(|| {
            let quota = nonzero(&host["CpuQuota"])?;
            let period = nonzero(&host["CpuPeriod"]).unwrap_or(100_000);
            (quota > 0).then(|| quota as f64 / period as f64)
        });
    opts.pids_limit = host["PidsLimit"].as_i64().filter(|n| *n > 0);
    opts.cap_add = strings(&host["CapAdd"]);
    opts.cap_drop = strings(&host["CapDrop"]);
    opts.read_only = host["ReadonlyRootfs"].as_bool().unwrap_or(false);
    opts.init = host["Init"].as_bool().unwrap_or(false);
    opts.auto_remove = host["AutoRemove"].as_bool().unwrap_or(false);
    opts.dns = strings(&host["Dns"]);
    opts.dns_search = strings(&host["DnsSearch"]);
    opts.dns_opt = strings(&host["DnsOptions"]);
    opts.add_host = strings(&host["ExtraHosts"]);
    opts.sysctls = string_map(&host["Sysctls"]);
    opts.shm_size = nonzero(&host["ShmSize"]);
    opts.group_add = strings(&host["GroupAdd"]);
    opts.oom_score_adj =
        nonzero(&host["OomScoreAdj"]).map(|n| n.clamp(i32::MIN as i64, i32::MAX as i64) as i32);
    opts.privileged = host["Privileged"].as_bool().unwrap_or(false);
    opts.cpu_shares = nonzero(&host["CpuShares"])
        .map(|n| u64::try_from(n).map_err(|_| ApiError::bad_request("CpuShares must be positive")))
        .transpose()?;
    opts.cpuset_cpus = opt_str(&host["CpusetCpus"]);
    opts.cpuset_mems = opt_str(&host["CpusetMems"]);
    if let Some(swap) = nonzero(&host["MemorySwap"]) {
        if Some(swap) != opts.memory {
            return Err(ApiError::bad_request(
                "HostConfig.MemorySwap is not supported by berth: containers get no swap (the memory limit is the memory+swap limit)",
            ));
        }
    }
    for u in host["Ulimits"].as_array().into_iter().flatten() {
        let name = opt_str(&u["Name"])
            .ok_or_else(|| ApiError::bad_request("HostConfig.Ulimits: an entry needs a Name"))?;
        opts.ulimits.push(Ulimit {
            name,
            soft: u["Soft"].as_i64().unwrap_or(0),
            hard: u["Hard"].as_i64().unwrap_or(0),
        });
    }
    for o in strings(&host["SecurityOpt"]) {
        if let Some(o) = security_option(&o)? {
            opts.security_opt.push(o);
        }
    }
    for d in host["Devices"].as_array().into_iter().flatten() {
        let on_host = opt_str(&d["PathOnHost"])
            .ok_or_else(|| ApiError::bad_request("HostConfig.Devices: PathOnHost is required"))?;
        let inside = opt_str(&d["PathInContainer"]).unwrap_or_else(|| on_host.clone());
        let perms = opt_str(&d["CgroupPermissions"]).unwrap_or_else(|| "rwm".into());
        opts.devices.push(format!("{on_host}:{inside}:{perms}"));
    }
    opts.volumes_from = strings(&host["VolumesFrom"]);
    extra.links = strings(&host["Links"]);
    opts.pid_mode = opt_str(&host["PidMode"]).filter(|m| m != "private");
    opts.ipc_mode = match opt_str(&host["IpcMode"]).as_deref() {
        // `shareable` only matters when another container joins, which berth refuses
        None | Some("private" | "shareable") => None,
        Some("host") => Some("host".into()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "HostConfig.IpcMode={other} is not supported by berth (private, shareable and host are)"
            )));
        }
    };

    // network
    let mode = host["NetworkMode"].as_str().unwrap_or("");
    let endpoints = body["NetworkingConfig"]["EndpointsConfig"].as_object();
    for ep in endpoints.into_iter().flat_map(|e| e.values()) {
        if opt_str(&ep["MacAddress"]).is_some() {
            return Err(ApiError::bad_request(
                "MacAddress is not supported by berth (addresses are assigned by its networks)",
            ));
        }
    }
    if let Some(target) = mode.strip_prefix("container:") {
        if target.is_empty() {
            return Err(ApiError::bad_request(
                "NetworkMode container: needs a container",
            ));
        }
        if !opts.ports.is_empty()
            || host["PortBindings"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
        {
            return Err(ApiError::bad_request(
                "conflicting options: port publishing and the container network mode",
            ));
        }
        // the caller resolves the name to an id
        opts.network_from = Some(target.to_string());
        opts.network = NetworkMode::None;
    }
    opts.network = match (mode, endpoints) {
        _ if opts.network_from.is_some() => NetworkMode::None,
        ("" | "default" | "bridge", Some(eps)) if eps.len() == 1 => {
            let (net, _) = eps.iter().next().expect("one endpoint");
            NetworkMode::parse(net)
        }
        _ => NetworkMode::parse(mode),
    };
    if let Some(eps) = endpoints {
        for ep in eps.values() {
            extra.aliases.extend(strings(&ep["Aliases"]));
            // links on a user network (what docker-compose v1 sends): the same as legacy
            // ones here, names in this container's /etc/hosts
            for l in strings(&ep["Links"]) {
                if !extra.links.contains(&l) {
                    extra.links.push(l);
                }
            }
        }
    }
    if let Some(bindings) = host["PortBindings"].as_object() {
        for (port, binds) in bindings {
            let (cport, proto) = port.split_once('/').unwrap_or((port, "tcp"));
            let list = binds.as_array().cloned().unwrap_or_default();
            let list = if list.is_empty() {
                vec![Value::Null]
            } else {
                list
            };
            for b in list {
                let ip = opt_str(&b["HostIp"]);
                let hport = match opt_str(&b["HostPort"]) {
                    Some(p) => p,
                    None => supplies.free_port(proto)?.to_string(),
                };
                opts.ports.push(match ip {
                    Some(ip) if ip.contains(':') => format!("[{ip}]:{hport}:{cport}/{proto}"),
                    Some(ip) => format!("{ip}:{hport}:{cport}/{proto}"),
                    None => format!("{hport}:{cport}/{proto}"),
                });
            }
        }
    }

    // restart and logging
    if let Ok(p) = serde_json::from_value::<RestartPolicy>(host["RestartPolicy"].clone()) {
        if !matches!(
            p.name.as_str(),
            "" | "no" | "always" | "unless-stopped" | "on-failure"
        ) {
            return Err(ApiError::bad_request(format!(
                "invalid restart policy {:?}",
                p.name
            )));
        }
        if opts.auto_remove && !matches!(p.name.as_str(), "" | "no") {
            return Err(ApiError::bad_request(
                "conflicting options: AutoRemove and restart policy",
            ));
        }
        extra.restart = p;
    }
    let log_type = host["LogConfig"]["Type"].as_str().unwrap_or("");
    match log_type {
        "" | "json-file" | "local" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "logging driver {other:?} is not supported by berth (json-file and local are)"
            )));
        }
    }
    extra.log_type = if log_type.is_empty() {
        "json-file".into()
    } else {
        log_type.into()
    };
    extra.log_config = string_map(&host["LogConfig"]["Config"]);
    Ok(Plan {
        options: opts,
        extra,
    })
}

fn anonymous(
    dest: &str,
    read_only: bool,
    supplies: &mut dyn Supplies,
    extra: &mut Extra,
) -> Result<MountSpec, ApiError> {
    if !dest.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "invalid volume destination {dest:?}: must be an absolute path"
        )));
    }
    let name = supplies.volume_name();
    extra.anonymous_volumes.push(name.clone());
    Ok(MountSpec {
        kind: MountKind::Volume,
        source: name,
        destination: dest.to_string(),
        read_only,
        propagation: None,
        create_host_path: false,
        no_copy: false,
    })
}

/// `HostConfig` fields berth has no mapping for: set to anything but their zero value,
/// they are refused rather than ignored.
const UNSUPPORTED: [&str; 26] = [
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpuCount",
    "CpuPercent",
    "KernelMemory",
    "KernelMemoryTCP",
    "MemoryReservation",
    "OomKillDisable",
    "CgroupParent",
    "Cgroup",
    "DeviceCgroupRules",
    "DeviceRequests",
    "PublishAllPorts",
    "VolumeDriver",
    "StorageOpt",
    "MaskedPaths",
    "ReadonlyPaths",
    "IOMaximumBandwidth",
    "IOMaximumIOps",
    "Annotations",
];

/// Options that would change what the container may do; berth refuses rather than ignore.
fn refuse_unsupported(host: &Value) -> Result<(), ApiError> {
    let set = |k: &str| match &host[k] {
        Value::Bool(b) => *b,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Null => false,
    };
    for k in UNSUPPORTED {
        if set(k) {
            return Err(ApiError::bad_request(format!(
                "HostConfig.{k} is not supported by berth"
            )));
        }
    }
    if host["MemorySwappiness"].as_i64().is_some_and(|n| n >= 0) {
        return Err(ApiError::bad_request(
            "HostConfig.MemorySwappiness is not supported by berth: containers get no swap",
        ));
    }
    for (k, ok) in [
        ("UTSMode", &["", "private"][..]),
        // berth runs no user namespace: `host` is what every container gets
        ("UsernsMode", &["", "private", "host"][..]),
        ("CgroupnsMode", &["", "private"][..]),
        ("Runtime", &["", "runc", "berth-runc"][..]),
        ("Isolation", &["", "default"][..]),
    ] {
        if let Some(v) = host[k].as_str().filter(|v| !ok.contains(v)) {
            return Err(ApiError::bad_request(format!(
                "HostConfig.{k}={v} is not supported by berth"
            )));
        }
    }
    Ok(())
}

/// One `SecurityOpt` entry: the ones berth applies are passed on, the ones that ask for
/// what berth does anyway are dropped (`None`), everything else is refused.
fn security_option(o: &str) -> Result<Option<String>, ApiError> {
    if security_opt_known(o) {
        return Ok(Some(o.to_string()));
    }
    let (k, v) = o
        .split_once('=')
        .or_else(|| o.split_once(':'))
        .unwrap_or((o, ""));
    match (k, v) {
        // berth applies no SELinux labels and no AppArmor profile
        ("label", "disable") | ("apparmor", "unconfined") => Ok(None),
        ("seccomp", _) => Err(ApiError::bad_request(
            "SecurityOpt seccomp: berth takes seccomp=unconfined or a profile's JSON (what the docker CLI sends for --security-opt seccomp=FILE), not a path",
        )),
        ("apparmor", p) => Err(ApiError::bad_request(format!(
            "SecurityOpt apparmor={p}: AppArmor profiles are not supported by berth (apparmor=unconfined is)"
        ))),
        ("label", l) => Err(ApiError::bad_request(format!(
            "SecurityOpt label={l}: SELinux labels are not supported by berth (label=disable is)"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "SecurityOpt {o:?} is not supported by berth (no-new-privileges, seccomp=unconfined, apparmor=unconfined, label=disable are)"
        ))),
    }
}

/// `Config.Healthcheck`, checked: `None` when absent or empty (the image's applies).
fn healthcheck(h: &Value) -> Result<Option<Value>, ApiError> {
    if !h.is_object() {
        return Ok(None);
    }
    let test = strings(&h["Test"]);
    match test.first().map(String::as_str) {
        None | Some("NONE") => {}
        Some("CMD") if test.len() > 1 => {}
        Some("CMD-SHELL") if test.len() == 2 => {}
        _ => {
            return Err(ApiError::bad_request(format!(
                "Healthcheck.Test must be [\"CMD\", args…], [\"CMD-SHELL\", command] or [\"NONE\"], not {test:?}"
            )));
        }
    }
    for k in [
        "Interval",
        "Timeout",
        "StartPeriod",
        "StartInterval",
        "Retries",
    ] {
        if h[k].as_i64().is_some_and(|n| n < 0) {
            return Err(ApiError::bad_request(format!(
                "Healthcheck.{k} must not be negative"
            )));
        }
    }
    for k in ["Interval", "Timeout", "StartInterval"] {
        // Docker's minimum: a probe every millisecond would only load the machine
        if h[k].as_i64().is_some_and(|n| n > 0 && n < 1_000_000) {
            return Err(ApiError::bad_request(format!(
                "Healthcheck.{k} in past range: must be at least 1ms"
            )));
        }
    }
    Ok(Some(h.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixed(u16, u32);
    impl Supplies for Fixed {
        fn volume_name(&mut self) -> String {
            self.1 += 1;
            format!("anon{}", self.1)
        }
        fn free_port(&mut self, _: &str) -> Result<u16, ApiError> {
            Ok(self.0)
        }
    }

    #[test]
    fn host_config_translates() {
        let body = json!({
            "Image": "busybox", "Cmd": ["sh", "-c", "true"], "Env": ["A=1"], "Tty": true,
            "Labels": {"com.docker.compose.project": "demo"},
            "Entrypoint": [""],
            "Volumes": {"/anon": {}},
            "HostConfig": {
                "Binds": ["/srv:/srv:ro", "data:/data"],
                "Mounts": [{"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1048576}}],
                "Tmpfs": {"/run": "size=64m"},
                "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostPort": ""}]},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "Memory": 33554432, "NanoCpus": 500000000, "PidsLimit": 64,
                "CapAdd": ["NET_ADMIN"], "CapDrop": ["MKNOD"],
                "NetworkMode": "demo_default", "Init": true,
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m"}}
            }
        });
        let p = translate(&body, Some("web"), &mut Fixed(40000, 0)).unwrap();
        let o = &p.options;
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!(o.entrypoint, Some(vec![]));
        assert_eq!(o.cmd, ["sh", "-c", "true"]);
        assert!(o.tty && o.init);
        assert_eq!(o.mounts.len(), 3);
        assert!(o.mounts[0].read_only && o.mounts[0].kind == MountKind::Bind);
        assert_eq!(o.mounts[2].source, "anon1");
        assert_eq!(p.extra.anonymous_volumes, ["anon1"]);
        assert!(o.tmpfs.contains(&"/scratch:size=1048576".to_string()));
        assert!(o.tmpfs.contains(&"/run:size=64m".to_string()));
        assert!(o.ports.contains(&"127.0.0.1:8080:80/tcp".to_string()));
        assert!(o.ports.contains(&"40000:53/udp".to_string()));
        assert_eq!(o.memory, Some(32 << 20));
        assert_eq!(o.cpus, Some(0.5));
        assert_eq!(o.network, NetworkMode::Bridge("demo_default".into()));
        assert_eq!(p.extra.restart.maximum_retry_count, 3);
        assert_eq!(p.extra.log_config["max-size"], "10m");
    }

    #[test]
    fn security_resources_and_namespaces_translate() {
        let body = json!({
            "Image": "busybox", "StopSignal": "SIGUSR1", "Domainname": "example.org",
            "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000u64, "Retries": 2},
            "HostConfig": {
                "Privileged": true,
                "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/x", "CgroupPermissions": "rw"}],
                "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                "SecurityOpt": ["no-new-privileges", "seccomp=unconfined", "label=disable", "apparmor=unconfined"],
                "CpuShares": 512, "CpusetCpus": "0", "CpusetMems": "0",
                "Memory": 1048576, "MemorySwap": 1048576, "MemorySwappiness": -1,
                "VolumesFrom": ["data:ro"], "Links": ["db:database"],
                "PidMode": "host", "IpcMode": "shareable", "UsernsMode": "host",
                "NetworkMode": "container:web",
                "Sysctls": {"net.ipv4.ip_forward": "1"}, "ShmSize": 1048576,
                "OomKillDisable": false, "PublishAllPorts": false, "BlkioWeight": 0
            }
        });
        let p = translate(&body, None, &mut Fixed(1, 0)).unwrap();
        let o = &p.options;
        assert_eq!(o.stop_signal.as_deref(), Some("SIGUSR1"));
        assert_eq!(o.domainname.as_deref(), Some("example.org"));
        assert!(o.privileged);
        assert_eq!(o.devices, ["/dev/null:/dev/x:rw"]);
        assert_eq!(o.ulimits[0].name, "nofile");
        assert_eq!((o.ulimits[0].soft, o.ulimits[0].hard), (1024, 2048));
        assert_eq!(o.security_opt, ["no-new-privileges", "seccomp=unconfined"]);
        assert_eq!(o.cpu_shares, Some(512));
        assert_eq!(o.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(o.volumes_from, ["data:ro"]);
        assert_eq!(p.extra.links, ["db:database"]);
        assert_eq!(o.pid_mode.as_deref(), Some("host"));
        assert_eq!(o.ipc_mode, None);
        assert_eq!(o.network_from.as_deref(), Some("web"));
        assert_eq!(o.network, NetworkMode::None);
        assert_eq!(o.shm_size, Some(1 << 20));
        assert_eq!(p.extra.healthcheck.as_ref().unwrap()["Retries"], 2);
    }

    #[test]
    fn refusals_and_restart_policy() {
        let mut s = Fixed(1, 0);
        assert!(translate(&json!({}), None, &mut s).is_err());
        for host in [
            json!({"UTSMode": "host"}),
            json!({"IpcMode": "container:x"}),
            json!({"SecurityOpt": ["apparmor=docker-default"]}),
            json!({"SecurityOpt": ["seccomp=/etc/profile.json"]}),
            json!({"SecurityOpt": ["label=type:svirt_lxc_net_t"]}),
            json!({"BlkioWeight": 300}),
            json!({"MemoryReservation": 1048576}),
            json!({"MemorySwap": -1, "Memory": 1048576}),
            json!({"MemorySwappiness": 10}),
            json!({"DeviceRequests": [{"Count": -1}]}),
            json!({"PublishAllPorts": true}),
            json!({"CgroupParent": "/x"}),
            json!({"Annotations": {"a": "b"}}),
            json!({"Mounts": [{"Type": "bind", "Source": "/x", "Target": "/y", "BindOptions": {"NonRecursive": true}}]}),
            json!({"Mounts": [{"Type": "volume", "Target": "/y", "VolumeOptions": {"DriverConfig": {"Name": "nfs"}}}]}),
            json!({"Ulimits": [{"Soft": 1, "Hard": 2}]}),
            json!({"NetworkMode": "container:x", "PortBindings": {"80/tcp": []}}),
            json!({"LogConfig": {"Type": "syslog"}}),
            json!({"RestartPolicy": {"Name": "sometimes"}}),
            json!({"AutoRemove": true, "RestartPolicy": {"Name": "always"}}),
        ] {
            let body = json!({"Image": "busybox", "HostConfig": host});
            assert!(translate(&body, None, &mut s).is_err(), "{host}");
        }
        for body in [
            json!({"Image": "busybox", "MacAddress": "02:42:ac:11:00:02"}),
            json!({"Image": "busybox", "StopSignal": "SIGNOPE"}),
            json!({"Image": "busybox", "Healthcheck": {"Test": ["BOGUS"]}}),
            json!({"Image": "busybox", "Healthcheck": {"Test": ["CMD"]}}),
            json!({"Image": "busybox", "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5}}),
            json!({"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"n": {"MacAddress": "02:42:ac:11:00:02"}}}}),
        ] {
            assert!(translate(&body, None, &mut s).is_err(), "{body}");
        }
        let p = RestartPolicy {
            name: "on-failure".into(),
            maximum_retry_count: 2,
        };
        assert!(p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(!RestartPolicy::default().should_restart(1, 0, false));
        let always = RestartPolicy {
            name: "always".into(),
            maximum_retry_count: 0,
        };
        assert!(!always.should_restart(0, 0, true));
    }
}
