//! A Compose service → the container layer's [`RunOptions`], plus one warning per Compose
//! key the agent does not honour (never silence). Pure: the networks, volumes and images
//! the options name are made by the caller.

use std::collections::BTreeMap;

use berth_spec::model::mount::ServiceVolume;
use berth_spec::model::{Service, Ulimit as SpecUlimit};

use crate::container::options::{
    MountKind, MountSpec, NetworkAttachment, NetworkMode, RunOptions, Ulimit,
};

use super::naming;
use super::task::Assignment;

/// How a service is networked, from `network_mode` and `networks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networking {
    /// Compose networks by key (the service's `networks`, or `default`).
    Networks(Vec<(String, NetworkAttachment)>),
    Host,
    None,
    /// `service:<name>`: share the namespace of a container of that service.
    Service(String),
    /// `container:<name or id>`.
    Container(String),
}

/// The run options and what could not be honoured.
#[derive(Debug, Clone)]
pub struct Translated {
    pub options: RunOptions,
    pub networking: Networking,
    /// Volume names (Compose-scoped) the container mounts, keyed by their Compose key, or
    /// by `None` for anonymous ones.
    pub volumes: Vec<(Option<String>, String)>,
    pub warnings: Vec<String>,
}

/// Errors in the service that make the task impossible (reported as `Rejected`).
pub type Rejection = String;

/// Translates the service of `a` (which must exist in its app).
pub fn translate(a: &Assignment, svc: &Service) -> Result<Translated, Rejection> {
    let mut w = Vec::new();
    let mut o = RunOptions {
        // a service that is only built runs the image `berth up` built for it, named as
        // Compose names it
        image: match (&svc.image, &svc.build) {
            (Some(image), _) => image.clone(),
            (None, Some(_)) => format!("{}-{}", a.project, a.service),
            (None, None) => return Err(format!("service {}: no image and no build", a.service)),
        },
        entrypoint: svc.entrypoint.clone(),
        cmd: svc.command.clone().unwrap_or_default(),
        env: svc
            .environment
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
        workdir: svc.working_dir.clone(),
        user: svc.user.clone(),
        hostname: svc.hostname.clone(),
        domainname: svc.domainname.clone(),
        cap_add: svc.cap_add.clone(),
        cap_drop: svc.cap_drop.clone(),
        privileged: svc.privileged,
        read_only: svc.read_only,
        init: svc.init.unwrap_or(false),
        tty: svc.tty,
        stdin: svc.stdin_open,
        labels: naming::container_labels(a),
        dns: svc.dns.clone(),
        dns_search: svc.dns_search.clone(),
        dns_opt: svc.dns_opt.clone(),
        sysctls: svc
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        security_opt: svc
            .security_opt
            .iter()
            .filter(|o| crate::container::spec::security_opt_known(o))
            .cloned()
            .collect(),
        shm_size: svc.shm_size.map(|b| b.0),
        stop_signal: svc.stop_signal.clone(),
        group_add: svc.group_add.clone(),
        tmpfs: svc.tmpfs.clone(),
        ..RunOptions::default()
    };
    for opt in svc
        .security_opt
        .iter()
        .filter(|o| !crate::container::spec::security_opt_known(o))
    {
        w.push(format!(
            "security_opt {opt:?} is not supported (only no-new-privileges and seccomp=unconfined); ignored"
        ));
    }
    if svc.oom_score_adj != 0 {
        o.oom_score_adj = Some(svc.oom_score_adj as i32);
    }
    for (host, ips) in &svc.extra_hosts.0 {
        for ip in ips {
            o.add_host.push(format!("{host}={ip}"));
        }
    }
    for (name, u) in &svc.ulimits {
        let (soft, hard) = match u {
            SpecUlimit::Single(v) => (*v, *v),
            SpecUlimit::Pair { soft, hard, .. } => (*soft, *hard),
        };
        o.ulimits.push(Ulimit {
            name: name.clone(),
            soft,
            hard,
        });
    }
    for d in &svc.devices {
        let mut s = d.source.clone();
        if let Some(t) = &d.target {
            s.push(':');
            s.push_str(t);
            if let Some(p) = &d.permissions {
                s.push(':');
                s.push_str(p);
            }
        }
        o.devices.push(s);
    }

    // limits: the service's own keys, else deploy.resources.limits
    let limits = svc
        .deploy
        .as_ref()
        .and_then(|d| d.resources.limits.as_ref());
    o.memory = svc
        .mem_limit
        .map(|b| b.0)
        .or_else(|| limits.and_then(|l| l.memory.map(|b| b.0)))
        .filter(|m| *m > 0);
    o.cpus = svc
        .cpus
        .or_else(|| limits.and_then(|l| l.cpus))
        .filter(|c| *c > 0.0);
    o.pids_limit = Some(svc.pids_limit)
        .filter(|p| *p > 0)
        .or_else(|| limits.map(|l| l.pids).filter(|p| *p > 0));

    for p in &svc.ports {
        let Some(published) = p.published.as_deref().filter(|s| !s.is_empty()) else {
            w.push(format!(
                "ports: container port {} has no published port; berth does not pick host ports, so it is not published",
                p.target
            ));
            continue;
        };
        if p.mode
            .as_deref()
            .is_some_and(|m| m != "ingress" && m != "host")
        {
            w.push(format!("ports: mode {:?} is not supported", p.mode));
        }
        let mut spec = String::new();
        if let Some(ip) = p.host_ip.as_deref().filter(|s| !s.is_empty()) {
            if ip.contains(':') {
                spec.push_str(&format!("[{ip}]:"));
            } else {
                spec.push_str(&format!("{ip}:"));
            }
        }
        spec.push_str(&format!("{published}:{}", p.target));
        if let Some(proto) = &p.protocol {
            spec.push('/');
            spec.push_str(proto);
        }
        o.ports.push(spec);
    }

    let mut volumes = Vec::new();
    for v in &svc.volumes {
        mount(a, v, &mut o, &mut volumes, &mut w)?;
    }

    let networking = match svc.network_mode.as_deref() {
        Some("host") => Networking::Host,
        Some("none") => Networking::None,
        Some(m) if m.starts_with("service:") => Networking::Service(m[8..].to_string()),
        Some(m) if m.starts_with("container:") => Networking::Container(m[10..].to_string()),
        Some("bridge") | Some("default") | None => {
            let mut nets: Vec<(i32, String, NetworkAttachment)> = Vec::new();
            let entries: Vec<(String, Option<berth_spec::model::ServiceNetwork>)> =
                if svc.networks.is_empty() {
                    vec![("default".to_string(), None)]
                } else {
                    svc.networks
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                };
            for (key, sn) in entries {
                let def = a.app.networks.get(&key);
                let id = naming::network_id(&a.project, &key, def.and_then(|n| n.name.as_deref()));
                let sn = sn.unwrap_or_default();
                if sn.mac_address.is_some() {
                    w.push(format!("networks.{key}.mac_address is not supported; a MAC is derived from the address"));
                }
                if !sn.link_local_ips.is_empty() {
                    w.push(format!("networks.{key}.link_local_ips is not supported"));
                }
                if !sn.driver_opts.is_empty() {
                    w.push(format!("networks.{key}.driver_opts is not supported"));
                }
                if sn.interface_name.is_some() {
                    w.push(format!("networks.{key}.interface_name is not supported"));
                }
                let mut aliases = sn.aliases.clone();
                for link in &svc.links {
                    // `links: [db:database]` makes `database` resolve too
                    if let Some((_, alias)) = link.split_once(':') {
                        aliases.push(alias.to_string());
                    }
                }
                let prio = if sn.gw_priority != 0 {
                    sn.gw_priority
                } else {
                    sn.priority
                };
                nets.push((
                    prio,
                    key.clone(),
                    NetworkAttachment {
                        network: id,
                        service: Some(a.service.clone()),
                        aliases,
                        ipv4: sn.ipv4_address.clone(),
                        ipv6: sn.ipv6_address.clone(),
                    },
                ));
            }
            // highest priority first (it gets the default route); stable otherwise
            nets.sort_by_key(|n| std::cmp::Reverse(n.0));
            Networking::Networks(nets.into_iter().map(|(_, k, n)| (k, n)).collect())
        }
        Some(other) => return Err(format!("network_mode {other:?} is not supported")),
    };
    match &networking {
        Networking::Host => o.network = NetworkMode::Host,
        Networking::None | Networking::Service(_) | Networking::Container(_) => {
            o.network = NetworkMode::None
        }
        Networking::Networks(n) => {
            o.networks = n.iter().map(|(_, n)| n.clone()).collect();
        }
    }
    unsupported(svc, &mut w);
    Ok(Translated {
        options: o,
        networking,
        volumes,
        warnings: w,
    })
}

fn mount(
    a: &Assignment,
    v: &ServiceVolume,
    o: &mut RunOptions,
    volumes: &mut Vec<(Option<String>, String)>,
    w: &mut Vec<String>,
) -> Result<(), Rejection> {
    let target = v
        .target
        .clone()
        .ok_or_else(|| format!("volumes: a {} mount without a target", v.kind))?;
    match v.kind.as_str() {
        "bind" => {
            let source = v
                .source
                .clone()
                .ok_or("volumes: a bind mount without a source")?;
            if v.bind
                .as_ref()
                .and_then(|b| b.propagation.as_ref())
                .is_some()
            {
                w.push(format!(
                    "volumes: bind propagation of {target} is not supported"
                ));
            }
            o.mounts
                .push(mount_spec(MountKind::Bind, &source, &target, v.read_only)?);
        }
        "volume" => {
            if let Some(opts) = &v.volume {
                if opts.nocopy {
                    w.push(format!("volumes: nocopy of {target} is not supported; a new volume is filled from the image"));
                }
                if opts.subpath.is_some() {
                    w.push(format!("volumes: subpath of {target} is not supported"));
                }
            }
            let (key, name) = match &v.source {
                Some(key) => {
                    let def = a.app.volumes.get(key);
                    (
                        Some(key.clone()),
                        naming::volume_name(&a.project, key, def.and_then(|d| d.name.as_deref())),
                    )
                }
                None => (None, naming::anonymous_volume_name(&a.task_id, &target)),
            };
            volumes.push((key, name.clone()));
            o.mounts
                .push(mount_spec(MountKind::Volume, &name, &target, v.read_only)?);
        }
        "tmpfs" => {
            let mut opts = Vec::new();
            if let Some(t) = &v.tmpfs {
                if let Some(size) = t.size {
                    opts.push(format!("size={}", size.0));
                }
                if let Some(mode) = t.mode {
                    opts.push(format!("mode={mode:o}"));
                }
            }
            o.tmpfs.push(if opts.is_empty() {
                target
            } else {
                format!("{target}:{}", opts.join(","))
            });
        }
        other => w.push(format!(
            "volumes: {other} mounts ({target}) are not supported"
        )),
    }
    Ok(())
}

/// A bind or volume mount, through the container layer's own `-v` parser (so every field
/// it has gets its default).
fn mount_spec(
    kind: MountKind,
    source: &str,
    target: &str,
    read_only: bool,
) -> Result<MountSpec, Rejection> {
    let mut m = MountSpec::parse(&format!("{source}:{target}"))
        .map_err(|e| format!("volumes: {source}:{target}: {e}"))?;
    if m.kind != kind {
        return Err(format!(
            "volumes: {source}:{target}: a {} source must be {}",
            if kind == MountKind::Bind {
                "bind"
            } else {
                "volume"
            },
            if kind == MountKind::Bind {
                "a path"
            } else {
                "a volume name"
            }
        ));
    }
    m.read_only = read_only;
    Ok(m)
}

/// One warning per set key the agent ignores.
fn unsupported(svc: &Service, w: &mut Vec<String>) {
    let mut warn = |cond: bool, key: &str| {
        if cond {
            w.push(format!(
                "{key} is not supported by the berth agent yet; ignored"
            ));
        }
    };
    warn(svc.blkio_config.is_some(), "blkio_config");
    warn(svc.cgroup_parent.is_some(), "cgroup_parent");
    warn(svc.cgroup.is_some(), "cgroup");
    warn(svc.cpu_count != 0, "cpu_count");
    warn(svc.cpu_percent.is_some(), "cpu_percent");
    warn(svc.cpu_period != 0, "cpu_period");
    warn(svc.cpu_quota != 0, "cpu_quota");
    warn(svc.cpu_rt_period != 0, "cpu_rt_period");
    warn(svc.cpu_rt_runtime != 0, "cpu_rt_runtime");
    warn(svc.cpuset.is_some(), "cpuset");
    warn(svc.cpu_shares != 0, "cpu_shares");
    warn(svc.credential_spec.is_some(), "credential_spec");
    warn(!svc.device_cgroup_rules.is_empty(), "device_cgroup_rules");
    warn(!svc.external_links.is_empty(), "external_links");
    warn(!svc.gpus.is_empty(), "gpus");
    warn(svc.ipc.is_some(), "ipc");
    warn(svc.isolation.is_some(), "isolation");
    warn(
        svc.logging
            .as_ref()
            .and_then(|l| l.driver.as_deref())
            .is_some_and(|d| d != "json-file" && d != "local"),
        "logging.driver",
    );
    warn(svc.mem_reservation.is_some(), "mem_reservation");
    warn(svc.memswap_limit.is_some(), "memswap_limit");
    warn(svc.mem_swappiness.is_some(), "mem_swappiness");
    warn(svc.mac_address.is_some(), "mac_address");
    warn(!svc.models.is_empty(), "models");
    warn(svc.oom_kill_disable, "oom_kill_disable");
    warn(svc.pid.is_some(), "pid");
    warn(svc.platform.is_some(), "platform");
    warn(svc.runtime.is_some(), "runtime");
    warn(!svc.storage_opt.is_empty(), "storage_opt");
    warn(svc.userns_mode.is_some(), "userns_mode");
    warn(svc.uts.is_some(), "uts");
    warn(svc.use_api_socket, "use_api_socket");
    warn(!svc.volumes_from.is_empty(), "volumes_from");
    warn(!svc.pre_start.is_empty(), "pre_start");
    warn(!svc.post_start.is_empty(), "post_start");
    warn(!svc.pre_stop.is_empty(), "pre_stop");
    warn(svc.provider.is_some(), "provider");
    warn(
        svc.deploy
            .as_ref()
            .and_then(|d| d.resources.reservations.as_ref())
            .is_some(),
        "deploy.resources.reservations",
    );
}
