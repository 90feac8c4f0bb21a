//! The OCI runtime spec of a container, as a pure function of the image's config, the run
//! options and Docker's defaults. No I/O here: everything the host decides (the rootfs
//! path, resolved user, host paths of volumes and generated `/etc` files, the `berth-init`
//! binary) comes in through [`SpecInputs`].

use std::path::PathBuf;

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::ContainerError;
use super::options::{NetworkMode, RunOptions};

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths: bind-mounted over with `/dev/null` (files) or an empty read-only
/// tmpfs (directories) by the runtime.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// `rprivate` when `None`.
    pub propagation: Option<String>,
}

/// Everything the spec depends on besides the options and the image.
#[derive(Debug, Clone)]
pub struct SpecInputs<'a> {
    /// 64 hex characters.
    pub id: &'a str,
    pub rootfs: PathBuf,
    pub image: Option<&'a ImageConfig>,
    pub options: &'a RunOptions,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Binds and volumes, already resolved to host paths.
    pub mounts: Vec<HostMount>,
    /// Host paths of the generated `/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`.
    pub etc_files: Option<EtcFiles>,
    /// Host path of `berth-init`, when `--init`.
    pub init_binary: Option<PathBuf>,
    /// Host devices made available (`devices:`), already looked up on the host.
    pub devices: Vec<DeviceNode>,
}

/// A host device node to create in the container (`devices: [HOST:CONTAINER:rwm]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the container.
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Cgroup access: a subset of `rwm`.
    pub access: String,
}

/// The `security_opt` values the spec understands: `no-new-privileges[:true|false]`,
/// `seccomp=unconfined` (also with `:`). Anything else is an error here; the agent warns
/// about and drops what it cannot honour before it gets here.
pub fn security_opt_known(opt: &str) -> bool {
    security_opt(opt).is_some()
}

/// A Docker seccomp profile (`seccomp=<json>`, what the docker CLI sends for
/// `--security-opt seccomp=FILE`) turned into the OCI form for a process with `caps`:
/// `archMap` (or `architectures`) give the architectures; a rule applies when its
/// `includes` hold (every capability in `caps`, this architecture) and its `excludes` do
/// not. `minKernel` conditions are refused rather than guessed.
pub fn docker_seccomp(profile: &str, caps: &[String]) -> Result<Value, ContainerError> {
    let bad = |reason: String| ContainerError::BadOption {
        option: "security_opt seccomp".into(),
        value: profile.chars().take(60).collect(),
        reason,
    };
    let p: Value = serde_json::from_str(profile).map_err(|e| bad(format!("not JSON: {e}")))?;
    let default = p["defaultAction"]
        .as_str()
        .ok_or_else(|| bad("no defaultAction".into()))?;
    let mut arches: Vec<Value> = Vec::new();
    for a in p["architectures"].as_array().into_iter().flatten() {
        arches.push(a.clone());
    }
    for m in p["archMap"].as_array().into_iter().flatten() {
        arches.push(m["architecture"].clone());
        arches.extend(
            m["subArchitectures"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let has_cap = |c: &str| {
        let c = if c.starts_with("CAP_") {
            c.to_string()
        } else {
            format!("CAP_{c}")
        };
        caps.contains(&c)
    };
    let mut rules = Vec::new();
    for r in p["syscalls"].as_array().into_iter().flatten() {
        for cond in [&r["includes"]["minKernel"], &r["excludes"]["minKernel"]] {
            if !cond.is_null() {
                return Err(bad("minKernel conditions are not supported".into()));
            }
        }
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        };
        let inc_caps = list(&r["includes"]["caps"]);
        let exc_caps = list(&r["excludes"]["caps"]);
        let inc_arches = list(&r["includes"]["arches"]);
        let exc_arches = list(&r["excludes"]["arches"]);
        let applies = inc_caps.iter().all(|c| has_cap(c))
            && !exc_caps.iter().any(|c| has_cap(c))
            && (inc_arches.is_empty() || inc_arches.iter().any(|a| a == arch))
            && !exc_arches.iter().any(|a| a == arch);
        if !applies {
            continue;
        }
        let mut names = list(&r["names"]);
        if let Some(n) = r["name"].as_str() {
            names.push(n.to_string());
        }
        let action = r["action"]
            .as_str()
            .ok_or_else(|| bad("a rule without an action".into()))?;
        let mut rule = json!({"names": names, "action": action});
        for k in ["args", "errnoRet"] {
            if !r[k].is_null() {
                rule[k] = r[k].clone();
            }
        }
        rules.push(rule);
    }
    let mut out = json!({"defaultAction": default, "architectures": arches, "syscalls": rules});
    for k in [
        "defaultErrnoRet",
        "flags",
        "listenerPath",
        "listenerMetadata",
    ] {
        if !p[k].is_null() {
            out[k] = p[k].clone();
        }
    }
    Ok(out)
}

/// (no_new_privileges, seccomp_unconfined) changes of one `security_opt` value.
fn security_opt(opt: &str) -> Option<(Option<bool>, bool)> {
    let (k, v) = opt
        .split_once('=')
        .or_else(|| opt.split_once(':'))
        .unwrap_or((opt, ""));
    match (k, v) {
        ("no-new-privileges", "" | "true") => Some((Some(true), false)),
        ("no-new-privileges", "false") => Some((Some(false), false)),
        ("seccomp", "unconfined") => Some((None, true)),
        // an inline Docker profile (checked when the spec is built)
        ("seccomp", p) if p.trim_start().starts_with('{') => Some((None, false)),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
}

/// The hostname a container gets unless told otherwise: the first 12 hex of its id.
pub fn default_hostname(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The process arguments: Docker's rule — `--entrypoint` replaces the image's Entrypoint
/// and then drops the image's Cmd; a non-empty command replaces the image's Cmd.
pub fn process_args(
    image: Option<&ImageConfig>,
    opts: &RunOptions,
) -> Result<Vec<String>, ContainerError> {
    let image_entry = image
        .and_then(|c| c.entrypoint().clone())
        .unwrap_or_default();
    let image_cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let mut args = match &opts.entrypoint {
        Some(e) => e.clone(),
        None => image_entry,
    };
    if !opts.cmd.is_empty() {
        args.extend(opts.cmd.iter().cloned());
    } else if opts.entrypoint.is_none() {
        args.extend(image_cmd);
    }
    if args.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    Ok(args)
}

/// The environment: `PATH` default, the image's, then the user's (later wins per key), and
/// `HOSTNAME` (and `TERM` with a tty) as Docker sets them.
pub fn environment(image: Option<&ImageConfig>, opts: &RunOptions, hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    };
    set(DEFAULT_PATH.to_string());
    set(format!("HOSTNAME={hostname}"));
    if opts.tty {
        set("TERM=xterm".into());
    }
    for e in image.and_then(|c| c.env().clone()).unwrap_or_default() {
        set(e);
    }
    for e in &opts.env {
        set(e.clone());
    }
    env
}

/// The capability set: Docker's defaults, then `--cap-add` (`ALL` for every capability the
/// runtime knows), then `--cap-drop` (`ALL` empties the set first, as Docker does).
pub fn capabilities(opts: &RunOptions) -> Result<Vec<String>, ContainerError> {
    let norm = |c: &str| -> Result<String, ContainerError> {
        let up = c.trim().to_ascii_uppercase();
        let full = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        if full.len() < 5
            || !full[4..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'_')
        {
            return Err(ContainerError::BadOption {
                option: "--cap-add/--cap-drop".into(),
                value: c.into(),
                reason: "not a capability name".into(),
            });
        }
        Ok(full)
    };
    let drop_all = opts.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("all"));
    let mut caps: Vec<String> = if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    };
    for c in &opts.cap_add {
        if c.eq_ignore_ascii_case("all") {
            for c in ALL_CAPS {
                if !caps.iter().any(|x| x == c) {
                    caps.push(c.to_string());
                }
            }
            continue;
        }
        let c = norm(c)?;
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    if !drop_all {
        for c in &opts.cap_drop {
            let c = norm(c)?;
            caps.retain(|x| *x != c);
        }
    }
    Ok(caps)
}

const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Drops the capabilities outside `bounding` (a `CapBnd` mask) from a spec: "every
/// capability" of a privileged container can only be those the caller itself may pass on,
/// and asking for more makes the runtime's `capset` fail.
pub fn within_bounding_set(spec: Spec, bounding: u64) -> Result<Spec, ContainerError> {
    let mut v = serde_json::to_value(&spec).map_err(|e| ContainerError::Spec(e.to_string()))?;
    let allowed = |c: &Value| {
        ALL_CAPS
            .iter()
            .position(|k| Some(*k) == c.as_str())
            .is_none_or(|bit| bounding & (1u64 << bit) != 0)
    };
    if let Some(caps) = v["process"]["capabilities"].as_object_mut() {
        for set in caps.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.retain(allowed);
            }
        }
    }
    serde_json::from_value(v).map_err(|e| ContainerError::Spec(e.to_string()))
}

/// Docker's default device allow-list for the devices cgroup (after a deny-all).
fn device_rules() -> Vec<Value> {
    let mut v = vec![json!({"allow": false, "access": "rwm"})];
    for (typ, major, minor, access) in [
        ("c", Some(1), Some(3), "rwm"),    // null
        ("c", Some(1), Some(5), "rwm"),    // zero
        ("c", Some(1), Some(7), "rwm"),    // full
        ("c", Some(1), Some(8), "rwm"),    // random
        ("c", Some(1), Some(9), "rwm"),    // urandom
        ("c", Some(5), Some(0), "rwm"),    // tty
        ("c", Some(5), Some(1), "rwm"),    // console
        ("c", Some(5), Some(2), "rwm"),    // ptmx
        ("c", Some(136), None, "rwm"),     // pts/*
        ("c", Some(10), Some(200), "rwm"), // net/tun
        ("c", None, None, "m"),
        ("b", None, None, "m"),
    ] {
        let mut r = json!({"allow": true, "type": typ, "access": access});
        if let Some(m) = major {
            r["major"] = json!(m);
        }
        if let Some(m) = minor {
            r["minor"] = json!(m);
        }
        v.push(r);
    }
    v
}

/// Parses one `--tmpfs /path[:opt,opt]` into a mount; Docker's defaults are
/// `noexec,nosuid,nodev`.
fn tmpfs_mount(spec: &str) -> Result<Value, ContainerError> {
    let (dest, opts) = spec.split_once(':').unwrap_or((spec, ""));
    if !dest.starts_with('/') {
        return Err(ContainerError::BadOption {
            option: "--tmpfs".into(),
            value: spec.into(),
            reason: "the destination must be an absolute path".into(),
        });
    }
    let mut options: Vec<String> = vec!["noexec".into(), "nosuid".into(), "nodev".into()];
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let key = o.split('=').next().unwrap_or(o);
        let opposite = match key {
            "exec" => Some("noexec"),
            "suid" => Some("nosuid"),
            "dev" => Some("nodev"),
            _ => None,
        };
        if let Some(opp) = opposite {
            options.retain(|x| x != opp);
        }
        options.push(o.to_string());
    }
    Ok(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}))
}

/// A cpuset list: `N`, `N-M`, comma-separated.
fn cpu_list_valid(s: &str) -> bool {
    let num = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    s.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => num(a) && num(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
        None => num(part),
    })
}

/// Builds the container's OCI spec.
pub fn build(inputs: &SpecInputs<'_>) -> Result<Spec, ContainerError> {
    let opts = inputs.options;
    let image = inputs.image;
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| default_hostname(inputs.id).to_string());
    let mut args = process_args(image, opts)?;
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(ContainerError::BadOption {
            option: "-w".into(),
            value: cwd,
            reason: "the working directory must be an absolute path".into(),
        });
    }
    let caps = if opts.privileged {
        ALL_CAPS.iter().map(|c| c.to_string()).collect()
    } else {
        capabilities(opts)?
    };
    let mut no_new_privileges = true;
    let mut seccomp_unconfined = opts.privileged;
    for o in &opts.security_opt {
        let (nnp, unconfined) = security_opt(o).ok_or_else(|| ContainerError::BadOption {
            option: "security_opt".into(),
            value: o.clone(),
            reason: "supported: no-new-privileges[:true|false], seccomp=unconfined".into(),
        })?;
        if let Some(n) = nnp {
            no_new_privileges = n;
        }
        seccomp_unconfined |= unconfined;
    }

    let shm_size = match opts.shm_size {
        Some(b) if b > 0 => format!("size={b}"),
        Some(b) => {
            return Err(ContainerError::BadOption {
                option: "shm_size".into(),
                value: b.to_string(),
                reason: "must be positive".into(),
            });
        }
        None => "size=65536k".to_string(),
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", shm_size]}),
    ];
    if let Some(etc) = &inputs.etc_files {
        for (dest, src) in [
            ("/etc/resolv.conf", &etc.resolv_conf),
            ("/etc/hostname", &etc.hostname),
            ("/etc/hosts", &etc.hosts),
        ] {
            mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
        }
    }
    for m in &inputs.mounts {
        let mut o = vec!["rbind", m.propagation.as_deref().unwrap_or("rprivate")];
        if m.read_only {
            o.push("ro");
        }
        mounts.push(
            json!({"destination": m.destination, "type": "bind", "source": m.source, "options": o}),
        );
    }
    for t in &opts.tmpfs {
        mounts.push(tmpfs_mount(t)?);
    }
    if let Some(init) = &inputs.init_binary {
        mounts.push(json!({"destination": berth_shim::init::CONTAINER_PATH, "type": "bind", "source": init, "options": ["bind", "ro"]}));
        args = berth_shim::init::wrap_args(&args);
    }

    // `container:<id>` modes keep a namespace entry here; `start` points it at that
    // container's namespace, which only exists while it runs.
    let pid = super::options::namespace_mode("pid", opts.pid_mode.as_deref())?;
    let ipc = super::options::namespace_mode("ipc", opts.ipc_mode.as_deref())?;
    if let Some(Some(_)) = ipc {
        return Err(ContainerError::BadOption {
            option: "ipc".into(),
            value: opts.ipc_mode.clone().unwrap_or_default(),
            reason: "sharing another container's IPC namespace is not supported (its /dev/shm cannot be shared); use host or private".into(),
        });
    }
    if ipc == Some(None) {
        // the host's IPC namespace comes with the host's POSIX shared memory
        for m in &mut mounts {
            if m["destination"] == "/dev/shm" {
                *m = json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]});
            }
        }
    }
    let mut namespaces = Vec::new();
    if pid != Some(None) {
        namespaces.push(json!({"type": "pid"}));
    }
    if ipc.is_none() {
        namespaces.push(json!({"type": "ipc"}));
    }
    namespaces.extend([
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ]);
    if opts.network != NetworkMode::Host {
        namespaces.push(json!({"type": "network"}));
    }

    let mut rules = if opts.privileged {
        vec![json!({"allow": true, "access": "rwm"})]
    } else {
        device_rules()
    };
    let mut devices = Vec::new();
    for d in &inputs.devices {
        devices.push(json!({
            "path": d.path, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
            "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid,
        }));
        rules.push(json!({
            "allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
            "access": d.access,
        }));
    }
    let mut resources = json!({"devices": rules});
    if let Some(mem) = opts.memory {
        // No swap on top of the limit: the limit is what the container can use, and an
        // allocation past it is OOM-killed rather than swapped.
        resources["memory"] = json!({"limit": mem, "swap": mem});
    }
    if let Some(cpus) = opts.cpus {
        if !(cpus.is_finite() && cpus > 0.0) {
            return Err(ContainerError::BadOption {
                option: "--cpus".into(),
                value: cpus.to_string(),
                reason: "must be a positive number".into(),
            });
        }
        resources["cpu"] = json!({"quota": (cpus * 100_000.0) as i64, "period": 100_000});
    }
    if let Some(shares) = opts.cpu_shares {
        if shares < 2 {
            return Err(ContainerError::BadOption {
                option: "--cpu-shares".into(),
                value: shares.to_string(),
                reason: "must be at least 2".into(),
            });
        }
        resources["cpu"]["shares"] = json!(shares);
    }
    for (option, key, value) in [
        ("--cpuset-cpus", "cpus", &opts.cpuset_cpus),
        ("--cpuset-mems", "mems", &opts.cpuset_mems),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            if !cpu_list_valid(v) {
                return Err(ContainerError::BadOption {
                    option: option.into(),
                    value: v.into(),
                    reason: "expected a list such as 0-2,4".into(),
                });
            }
            resources["cpu"][key] = json!(v);
        }
    }
    if let Some(p) = opts.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let profile = opts.security_opt.iter().rev().find_map(|o| {
        let p = o
            .strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))?;
        p.trim_start().starts_with('{').then_some(p)
    });
    let seccomp = if seccomp_unconfined {
        Value::Null
    } else if let Some(p) = profile {
        docker_seccomp(p, &caps)?
    } else {
        serde_json::to_value(berth_runtime::default_seccomp())
            .map_err(|e| ContainerError::Spec(e.to_string()))?
    };
    let mut rlimits = Vec::new();
    for u in &opts.ulimits {
        let name = u.name.to_ascii_uppercase();
        if !name.bytes().all(|b| b.is_ascii_uppercase()) || name.is_empty() {
            return Err(ContainerError::BadOption {
                option: "ulimits".into(),
                value: u.name.clone(),
                reason: "not a resource limit name (nofile, nproc, core, …)".into(),
            });
        }
        if u.soft > u.hard || u.soft < 0 {
            return Err(ContainerError::BadOption {
                option: "ulimits".into(),
                value: format!("{}={}:{}", u.name, u.soft, u.hard),
                reason: "soft must be between 0 and hard".into(),
            });
        }
        rlimits.push(json!({"type": format!("RLIMIT_{name}"), "soft": u.soft, "hard": u.hard}));
    }

    let mut process = json!({
        "terminal": opts.tty,
        "user": {"uid": inputs.uid, "gid": inputs.gid},
        "args": args,
        "env": environment(image, opts, &hostname),
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "noNewPrivileges": no_new_privileges,
        "oomScoreAdj": opts.oom_score_adj.unwrap_or(0),
    });
    if !rlimits.is_empty() {
        process["rlimits"] = json!(rlimits);
    }
    if !inputs.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(inputs.additional_gids);
    }

    let (masked, readonly): (&[&str], &[&str]) = if opts.privileged {
        (&[], &[])
    } else {
        (&MASKED_PATHS, &READONLY_PATHS)
    };
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": {"path": inputs.rootfs, "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "process": process,
        "annotations": {"org.berth.container.id": inputs.id},
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "cgroupsPath": format!("/berth/{}", inputs.id),
            "maskedPaths": masked,
            "readonlyPaths": readonly,
            "seccomp": seccomp,
        },
    });
    if seccomp_unconfined {
        if let Some(l) = spec["linux"].as_object_mut() {
            l.remove("seccomp");
        }
    }
    if !devices.is_empty() {
        spec["linux"]["devices"] = json!(devices);
    }
    if !opts.sysctls.is_empty() {
        spec["linux"]["sysctl"] = json!(opts.sysctls);
    }
    if let Some(d) = &opts.domainname {
        spec["domainname"] = json!(d);
    }
    serde_json::from_value(spec).map_err(|e| ContainerError::Spec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn image() -> ImageConfig {
        ConfigBuilder::default()
            .entrypoint(vec!["/entry".to_string()])
            .cmd(vec!["serve".to_string(), "--port=80".to_string()])
            .env(vec!["PATH=/img/bin".to_string(), "A=1".to_string()])
            .working_dir("/srv".to_string())
            .build()
            .unwrap()
    }

    fn inputs<'a>(opts: &'a RunOptions, img: Option<&'a ImageConfig>) -> SpecInputs<'a> {
        SpecInputs {
            id: ID,
            rootfs: "/r".into(),
            image: img,
            options: opts,
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            mounts: vec![],
            etc_files: None,
            init_binary: None,
            devices: vec![],
        }
    }

    #[test]
    fn compose_options_reach_the_spec() {
        use crate::container::options::Ulimit;
        let mut o = RunOptions {
            cmd: vec!["sh".into()],
            shm_size: Some(1 << 20),
            oom_score_adj: Some(500),
            domainname: Some("example.org".into()),
            security_opt: vec!["no-new-privileges:false".into()],
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 100,
                hard: 200,
            }],
            ..RunOptions::default()
        };
        o.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        let mut i = inputs(&o, None);
        i.devices.push(DeviceNode {
            path: "/dev/mynull".into(),
            kind: 'c',
            major: 1,
            minor: 3,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
            access: "rw".into(),
        });
        let v = serde_json::to_value(build(&i).unwrap()).unwrap();
        let shm = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert!(
            shm["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=1048576"))
        );
        assert_eq!(v["process"]["oomScoreAdj"], 500);
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert_eq!(v["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(v["process"]["rlimits"][0]["soft"], 100);
        assert_eq!(v["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        assert_eq!(v["linux"]["devices"][0]["path"], "/dev/mynull");
        assert_eq!(v["domainname"], "example.org");
        assert!(v["linux"]["seccomp"].is_object());
        assert_eq!(
            v["linux"]["maskedPaths"].as_array().unwrap().len(),
            MASKED_PATHS.len()
        );

        o.privileged = true;
        let v = serde_json::to_value(build(&inputs(&o, None)).unwrap()).unwrap();
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            ALL_CAPS.len()
        );
        assert!(v["linux"].get("seccomp").is_none());
        assert!(v["linux"]["maskedPaths"].as_array().unwrap().is_empty());

        o.privileged = false;
        o.security_opt = vec!["apparmor=x".into()];
        assert!(build(&inputs(&o, None)).is_err());
        o.security_opt.clear();
        o.ulimits[0].soft = 300;
        assert!(build(&inputs(&o, None)).is_err());
    }

    #[test]
    fn cpu_weights_cpusets_and_namespace_modes() {
        let ns = |v: &Value| -> Vec<String> {
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].as_str().unwrap().to_string())
                .collect()
        };
        let mut o = RunOptions {
            cmd: vec!["sh".into()],
            cpus: Some(0.5),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-1,3".into()),
            cpuset_mems: Some("0".into()),
            ..RunOptions::default()
        };
        let v = serde_json::to_value(build(&inputs(&o, None)).unwrap()).unwrap();
        let cpu = &v["linux"]["resources"]["cpu"];
        assert_eq!(cpu["shares"], 512);
        assert_eq!(cpu["quota"], 50_000);
        assert_eq!(cpu["cpus"], "0-1,3");
        assert_eq!(cpu["mems"], "0");
        assert!(ns(&v).contains(&"pid".to_string()) && ns(&v).contains(&"ipc".to_string()));

        o.pid_mode = Some("host".into());
        o.ipc_mode = Some("host".into());
        let v = serde_json::to_value(build(&inputs(&o, None)).unwrap()).unwrap();
        assert!(!ns(&v).contains(&"pid".to_string()) && !ns(&v).contains(&"ipc".to_string()));
        let shm = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert_eq!(shm["source"], "/dev/shm");
        // a container's PID namespace: the entry stays, start points it at the target
        o.pid_mode = Some("container:abc".into());
        o.ipc_mode = None;
        let v = serde_json::to_value(build(&inputs(&o, None)).unwrap()).unwrap();
        assert!(ns(&v).contains(&"pid".to_string()));

        for bad in [
            RunOptions {
                ipc_mode: Some("container:abc".into()),
                ..o.clone()
            },
            RunOptions {
                pid_mode: Some("sibling".into()),
                ..o.clone()
            },
            RunOptions {
                cpuset_cpus: Some("1-0".into()),
                ..o.clone()
            },
            RunOptions {
                cpuset_cpus: Some("a".into()),
                ..o.clone()
            },
            RunOptions {
                cpu_shares: Some(1),
                ..o.clone()
            },
        ] {
            assert!(build(&inputs(&bad, None)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn docker_seccomp_profiles_follow_caps_and_arches() {
        let profile = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_BOOT"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_NET_ADMIN"]}},
                {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["s390x"]}}
            ]
        }"#;
        let v = docker_seccomp(profile, &["CAP_CHOWN".to_string()]).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        let names: Vec<&Value> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["names"][0])
            .collect();
        assert_eq!(names, [&json!("mkdir"), &json!("reboot")]);
        assert_eq!(v["syscalls"][0]["errnoRet"], 1);
        let v = docker_seccomp(profile, &["CAP_SYS_BOOT".into(), "CAP_NET_ADMIN".into()]).unwrap();
        let names: Vec<&Value> = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["names"][0])
            .collect();
        assert_eq!(names, [&json!("mkdir"), &json!("ptrace")]);
        assert!(docker_seccomp("{}", &[]).is_err());
        assert!(docker_seccomp("nope", &[]).is_err());
        assert!(
            docker_seccomp(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","includes":{"minKernel":"4.8"}}]}"#,
                &[]
            )
            .is_err()
        );
        // through the spec: the profile replaces Docker's default
        let o = RunOptions {
            cmd: vec!["sh".into()],
            security_opt: vec![format!("seccomp={profile}")],
            ..RunOptions::default()
        };
        let v = serde_json::to_value(build(&inputs(&o, None)).unwrap()).unwrap();
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn privileged_keeps_to_the_bounding_set() {
        let o = RunOptions {
            cmd: vec!["sh".into()],
            privileged: true,
            ..RunOptions::default()
        };
        let spec = build(&inputs(&o, None)).unwrap();
        // everything but CAP_SYS_RESOURCE (24)
        let v = serde_json::to_value(within_bounding_set(spec, 0x1fffeffffff).unwrap()).unwrap();
        let eff = v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert_eq!(eff.len(), ALL_CAPS.len() - 1);
        assert!(!eff.contains(&json!("CAP_SYS_RESOURCE")));
        assert!(eff.contains(&json!("CAP_SYS_ADMIN")));
    }

    #[test]
    fn args_follow_docker_rules() {
        let img = image();
        let mut o = RunOptions::default();
        assert_eq!(
            process_args(Some(&img), &o).unwrap(),
            ["/entry", "serve", "--port=80"]
        );
        o.cmd = vec!["x".into()];
        assert_eq!(process_args(Some(&img), &o).unwrap(), ["/entry", "x"]);
        o.cmd.clear();
        o.entrypoint = Some(vec!["sh".into()]);
        assert_eq!(process_args(Some(&img), &o).unwrap(), ["sh"]);
        o.entrypoint = Some(vec![]);
        assert!(matches!(
            process_args(Some(&img), &o),
            Err(ContainerError::NoCommand)
        ));
        o.cmd = vec!["echo".into(), "hi".into()];
        assert_eq!(process_args(Some(&img), &o).unwrap(), ["echo", "hi"]);
    }

    #[test]
    fn env_merges_with_later_winning() {
        let img = image();
        let o = RunOptions {
            env: vec!["A=2".into(), "B=3".into()],
            ..Default::default()
        };
        let env = environment(Some(&img), &o, "h");
        assert_eq!(env, ["HOSTNAME=h", "PATH=/img/bin", "A=2", "B=3"]);
    }

    #[test]
    fn caps_default_add_drop() {
        let mut o = RunOptions::default();
        let caps = capabilities(&o).unwrap();
        assert_eq!(caps.len(), 14);
        assert!(!caps.contains(&"CAP_NET_ADMIN".to_string()));
        o.cap_add = vec!["net_admin".into()];
        o.cap_drop = vec!["CAP_CHOWN".into()];
        let caps = capabilities(&o).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        o.cap_drop = vec!["ALL".into()];
        o.cap_add = vec!["KILL".into()];
        assert_eq!(capabilities(&o).unwrap(), ["CAP_KILL"]);
        o.cap_add = vec!["no such!".into()];
        assert!(capabilities(&o).is_err());
    }

    #[test]
    fn spec_has_docker_defaults_and_limits() {
        let img = image();
        let o = RunOptions {
            memory: Some(32 << 20),
            cpus: Some(1.5),
            pids_limit: Some(50),
            read_only: true,
            tmpfs: vec!["/run:size=1m,exec".into()],
            workdir: Some("/w".into()),
            ..Default::default()
        };
        let mut i = inputs(&o, Some(&img));
        i.init_binary = Some("/libexec/berth-init".into());
        i.mounts = vec![HostMount {
            source: "/data".into(),
            destination: "/d".into(),
            read_only: true,
            propagation: Some("rslave".into()),
        }];
        let spec = build(&i).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["hostname"], "0123456789ab");
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["process"]["cwd"], "/w");
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["args"][0], "/sbin/berth-init");
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 32 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 150_000);
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 50);
        assert!(
            v["linux"]["seccomp"]["syscalls"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
        );
        let masked = v["linux"]["maskedPaths"].as_array().unwrap();
        assert!(masked.iter().any(|p| p == "/proc/kcore"));
        let mounts = v["mounts"].as_array().unwrap();
        let shm = mounts
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert!(
            shm["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "size=65536k")
        );
        let run = mounts.iter().find(|m| m["destination"] == "/run").unwrap();
        let run_opts: Vec<_> = run["options"].as_array().unwrap().iter().collect();
        assert!(!run_opts.iter().any(|o| *o == "noexec"));
        let d = mounts.iter().find(|m| m["destination"] == "/d").unwrap();
        assert!(d["options"].as_array().unwrap().iter().any(|o| o == "ro"));
        assert!(
            d["options"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o == "rslave")
        );
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn host_network_shares_the_namespace() {
        let o = RunOptions {
            network: NetworkMode::Host,
            cmd: vec!["true".into()],
            ..Default::default()
        };
        let v = serde_json::to_value(build(&inputs(&o, None)).unwrap()).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let o = RunOptions {
            cmd: vec!["true".into()],
            workdir: Some("relative".into()),
            ..Default::default()
        };
        assert!(build(&inputs(&o, None)).is_err());
        let o = RunOptions {
            cmd: vec!["true".into()],
            tmpfs: vec!["nope".into()],
            ..Default::default()
        };
        assert!(build(&inputs(&o, None)).is_err());
    }
}
