//! Consistency checks on a normalized `App`, with the meaning of Docker Compose's own
//! messages: references to undefined services, networks, volumes, secrets, configs and
//! models; invalid names; port ranges; conflicting options. Each failure names its key path.
//!
//! Runs after normalization (so the implicit `default` network exists). Reads nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::deploy::DeviceRequest;
use crate::model::{App, Condition, Service};
use crate::path::PathSeg;

/// One failed rule at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub path: Vec<PathSeg>,
    pub message: String,
}

/// Validates `app`, returning the first failure (in service name order).
pub fn validate(app: &App) -> Result<(), ValidationError> {
    match validate_all(app).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Compose's rule for service, network, volume, secret, config and model keys.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn is_valid_container_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

struct Checker<'a> {
    app: &'a App,
    errors: Vec<ValidationError>,
}

impl Checker<'_> {
    fn fail(&mut self, path: Vec<PathSeg>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path,
            message: message.into(),
        });
    }
}

fn p(segs: &[&dyn AsSeg]) -> Vec<PathSeg> {
    segs.iter().map(|s| s.seg()).collect()
}

trait AsSeg {
    fn seg(&self) -> PathSeg;
}

impl AsSeg for &str {
    fn seg(&self) -> PathSeg {
        PathSeg::Key((*self).to_string())
    }
}

impl AsSeg for String {
    fn seg(&self) -> PathSeg {
        PathSeg::Key(self.clone())
    }
}

impl AsSeg for usize {
    fn seg(&self) -> PathSeg {
        PathSeg::Index(*self)
    }
}

/// Every failure, in a stable order.
pub fn validate_all(app: &App) -> Vec<ValidationError> {
    let mut c = Checker {
        app,
        errors: Vec::new(),
    };
    for (kind, names) in [
        ("services", app.services.keys().collect::<Vec<_>>()),
        ("networks", app.networks.keys().collect()),
        ("volumes", app.volumes.keys().collect()),
        ("secrets", app.secrets.keys().collect()),
        ("configs", app.configs.keys().collect()),
        ("models", app.models.keys().collect()),
    ] {
        for name in names {
            if !is_valid_name(name) {
                c.fail(
                    p(&[&kind, name]),
                    format!(
                        "invalid {} name \"{name}\": only [a-zA-Z0-9._-] characters are allowed",
                        singular(kind)
                    ),
                );
            }
        }
    }
    for (name, svc) in &app.services {
        check_service(&mut c, name, svc);
    }
    check_resources(&mut c);
    c.errors
}

fn singular(kind: &str) -> &str {
    kind.strip_suffix('s').unwrap_or(kind)
}

fn check_resources(c: &mut Checker<'_>) {
    let app = c.app;
    for (name, n) in &app.networks {
        if n.external.external {
            let conflict = [
                ("driver", n.driver.is_some()),
                ("driver_opts", !n.driver_opts.is_empty()),
                ("ipam", !n.ipam.is_empty()),
                ("internal", n.internal),
                ("attachable", n.attachable),
                ("labels", !n.labels.is_empty()),
            ]
            .into_iter()
            .find(|(_, set)| *set);
            if let Some((k, _)) = conflict {
                c.fail(
                    p(&[&"networks", name]),
                    format!("conflicting parameters \"external\" and \"{k}\" specified"),
                );
            }
        }
        for (i, pool) in n.ipam.config.iter().enumerate() {
            if let Some(subnet) = &pool.subnet {
                if !is_cidr(subnet) {
                    c.fail(
                        p(&[&"networks", name, &"ipam", &"config", &i, &"subnet"]),
                        format!(
                            "invalid subnet \"{subnet}\": expected an address in CIDR notation"
                        ),
                    );
                }
            }
        }
    }
    for (name, v) in &app.volumes {
        if v.external.external {
            let conflict = [
                ("driver", v.driver.is_some()),
                ("driver_opts", !v.driver_opts.is_empty()),
                ("labels", !v.labels.is_empty()),
            ]
            .into_iter()
            .find(|(_, set)| *set);
            if let Some((k, _)) = conflict {
                c.fail(
                    p(&[&"volumes", name]),
                    format!("conflicting parameters \"external\" and \"{k}\" specified"),
                );
            }
        }
    }
    for (kind, map, sources) in [
        ("secrets", &app.secrets, &["file", "environment"][..]),
        (
            "configs",
            &app.configs,
            &["file", "environment", "content"][..],
        ),
    ] {
        for (name, obj) in map {
            let set: Vec<&str> = sources
                .iter()
                .copied()
                .filter(|s| match *s {
                    "file" => obj.file.is_some(),
                    "environment" => obj.environment.is_some(),
                    _ => obj.content.is_some(),
                })
                .collect();
            let path = p(&[&kind, name]);
            if set.len() > 1 {
                c.fail(
                    path,
                    format!("{} attributes are mutually exclusive", sources.join("|")),
                );
            } else if set.is_empty() && !obj.external.external && obj.driver.is_none() {
                c.fail(path, format!("one of {} must be set", sources.join("|")));
            }
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    match (ip.parse::<IpAddr>(), len.parse::<u8>()) {
        (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
        (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
        _ => false,
    }
}

fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && b <= 65535).then_some((a, b))
}

const RESTART_POLICIES: &[&str] = &["no", "always", "on-failure", "unless-stopped"];

fn valid_restart(r: &str) -> bool {
    if RESTART_POLICIES.contains(&r) {
        return true;
    }
    r.strip_prefix("on-failure:")
        .is_some_and(|n| n.parse::<u32>().is_ok())
}

fn valid_pull_policy(p: &str) -> bool {
    if [
        "always",
        "never",
        "build",
        "if_not_present",
        "missing",
        "refresh",
        "daily",
        "weekly",
    ]
    .contains(&p)
    {
        return true;
    }
    p.strip_prefix("every_")
        .is_some_and(|d| !d.is_empty() && crate::model::units::parse_duration(d).is_ok())
}

fn check_device_requests(c: &mut Checker<'_>, base: Vec<PathSeg>, reqs: &[DeviceRequest]) {
    for (i, r) in reqs.iter().enumerate() {
        if r.count.is_some() && !r.device_ids.is_empty() {
            let mut path = base.clone();
            path.push(PathSeg::Index(i));
            c.fail(
                path,
                "\"count\" and \"device_ids\" attributes are exclusive",
            );
        }
    }
}

fn check_service(c: &mut Checker<'_>, name: &str, svc: &Service) {
    let app = c.app;
    let at = |rest: &[&dyn AsSeg]| {
        let mut v = vec![PathSeg::key("services"), PathSeg::key(name)];
        v.extend(rest.iter().map(|s| s.seg()));
        v
    };
    let has_service = |s: &str| app.services.contains_key(s);

    if svc.image.is_none() && svc.build.is_none() && svc.provider.is_none() {
        c.fail(
            at(&[]),
            format!("service \"{name}\" has neither an image nor a build context specified"),
        );
    }
    if let Some(b) = &svc.build {
        if b.dockerfile_inline.is_some() && b.dockerfile.is_some() {
            c.fail(at(&[&"build"]), format!("service \"{name}\" declares mutually exclusive dockerfile and dockerfile_inline"));
        }
        if let Some(platform) = &svc.platform {
            if !b.platforms.is_empty() && !b.platforms.contains(platform) {
                c.fail(
                    at(&[&"build", &"platforms"]),
                    format!("build.platforms must include service platform \"{platform}\""),
                );
            }
        }
        for (i, s) in b.secrets.iter().enumerate() {
            if !app.secrets.contains_key(&s.source) {
                c.fail(
                    at(&[&"build", &"secrets", &i]),
                    format!(
                        "service \"{name}\" refers to undefined build secret {}",
                        s.source
                    ),
                );
            }
        }
        for (ctx_name, ctx) in &b.additional_contexts {
            if let Some(target) = ctx.strip_prefix("service:") {
                match app.services.get(target) {
                    None => c.fail(
                        at(&[&"build", &"additional_contexts", &ctx_name.clone()]),
                        format!("service \"{name}\" declares unknown service \"{target}\" as additional contexts {ctx_name}"),
                    ),
                    Some(t) if t.build.is_none() => c.fail(
                        at(&[&"build", &"additional_contexts", &ctx_name.clone()]),
                        format!("service \"{name}\" declares non-buildable service \"{target}\" as additional contexts {ctx_name}"),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
    if let Some(cn) = &svc.container_name {
        if !is_valid_container_name(cn) {
            c.fail(
                at(&[&"container_name"]),
                format!(
                    "invalid container name \"{cn}\": only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed"
                ),
            );
        }
    }
    if let Some(mode) = &svc.network_mode {
        if !svc.networks.is_empty() {
            c.fail(
                at(&[&"network_mode"]),
                format!("service {name} declares mutually exclusive `network_mode` and `networks`"),
            );
        }
        if let Some(target) = mode.strip_prefix("service:") {
            if !has_service(target) {
                c.fail(
                    at(&[&"network_mode"]),
                    format!("service \"{target}\" not found for network_mode 'service:{target}'"),
                );
            }
        }
    }
    for (attr, value) in [("ipc", &svc.ipc), ("pid", &svc.pid), ("uts", &svc.uts)] {
        if let Some(target) = value.as_deref().and_then(|v| v.strip_prefix("service:")) {
            if !has_service(target) {
                c.fail(
                    at(&[&attr]),
                    format!("service \"{target}\" not found for {attr} 'service:{target}'"),
                );
            }
        }
    }
    if let Some(cg) = &svc.cgroup {
        if cg != "host" && cg != "private" {
            c.fail(
                at(&[&"cgroup"]),
                format!("invalid cgroup \"{cg}\": must be one of host, private"),
            );
        }
    }
    for net in svc.networks.keys() {
        if !app.networks.contains_key(net) {
            c.fail(
                at(&[&"networks", &net.clone()]),
                format!("service \"{name}\" refers to undefined network {net}"),
            );
        }
    }
    if let Some(hc) = &svc.healthcheck {
        if let Some(first) = hc.test.as_ref().and_then(|t| t.first()) {
            if !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE") {
                c.fail(
                    at(&[&"healthcheck", &"test"]),
                    "healthcheck.test must start either by \"CMD\", \"CMD-SHELL\" or \"NONE\"",
                );
            }
        }
        if hc.disable
            && hc
                .test
                .as_ref()
                .is_some_and(|t| t.first().map(String::as_str) != Some("NONE"))
        {
            c.fail(
                at(&[&"healthcheck", &"disable"]),
                "healthcheck.disable is set along with a test; use one or the other",
            );
        }
    }
    for (i, link) in svc.links.iter().enumerate() {
        let target = link.split_once(':').map_or(link.as_str(), |(n, _)| n);
        if !has_service(target) {
            c.fail(
                at(&[&"links", &i]),
                format!("service \"{name}\" links to undefined service \"{target}\""),
            );
        }
    }
    for (i, from) in svc.volumes_from.iter().enumerate() {
        if from.starts_with("container:") {
            continue;
        }
        let target = from.split(':').next().unwrap_or(from);
        if !has_service(target) {
            c.fail(
                at(&[&"volumes_from", &i]),
                format!("service \"{name}\" mounts volumes from undefined service \"{target}\""),
            );
        }
    }
    for (dep, cfg) in &svc.depends_on {
        if !has_service(dep) && cfg.required {
            c.fail(
                at(&[&"depends_on", &dep.clone()]),
                format!("service \"{name}\" depends on undefined service \"{dep}\""),
            );
        }
        if dep == name {
            c.fail(
                at(&[&"depends_on", &dep.clone()]),
                format!("service \"{name}\" depends on itself"),
            );
        }
        if cfg.condition == Condition::ServiceHealthy {
            if let Some(t) = app.services.get(dep) {
                let disabled = t.healthcheck.as_ref().is_some_and(|h| {
                    h.disable
                        || h.test.as_ref().and_then(|t| t.first()).map(String::as_str)
                            == Some("NONE")
                });
                if disabled {
                    c.fail(
                        at(&[&"depends_on", &dep.clone()]),
                        format!("service \"{name}\" waits for \"{dep}\" to be healthy, but its healthcheck is disabled"),
                    );
                }
            }
        }
    }
    if let Some(ext) = &svc.extends {
        if ext.file.is_none() && !has_service(&ext.service) {
            c.fail(
                at(&[&"extends"]),
                format!(
                    "service \"{name}\" extends undefined service \"{}\"",
                    ext.service
                ),
            );
        }
    }
    for (i, v) in svc.volumes.iter().enumerate() {
        if v.kind == "volume" {
            if let Some(src) = &v.source {
                if !app.volumes.contains_key(src) {
                    c.fail(
                        at(&[&"volumes", &i]),
                        format!("service \"{name}\" refers to undefined volume {src}"),
                    );
                }
            }
        }
        if v.target.as_deref().unwrap_or("").is_empty() && v.kind != "npipe" {
            c.fail(
                at(&[&"volumes", &i]),
                format!(
                    "invalid mount config for type \"{}\": field Target must not be empty",
                    v.kind
                ),
            );
        }
    }
    for (kind, refs, defined) in [
        ("config", &svc.configs, &app.configs),
        ("secret", &svc.secrets, &app.secrets),
    ] {
        for (i, r) in refs.iter().enumerate() {
            if !defined.contains_key(&r.source) {
                c.fail(
                    at(&[&format!("{kind}s"), &i]),
                    format!("service \"{name}\" refers to undefined {kind} {}", r.source),
                );
            }
        }
    }
    for model in svc.models.keys() {
        if !app.models.contains_key(model) {
            c.fail(
                at(&[&"models", &model.clone()]),
                format!("service \"{name}\" refers to undefined model {model}"),
            );
        }
    }

    for (i, port) in svc.ports.iter().enumerate() {
        if port.target > 65535 {
            c.fail(
                at(&[&"ports", &i, &"target"]),
                format!("invalid containerPort: {}", port.target),
            );
        }
        if let Some(published) = &port.published {
            match parse_range(published) {
                None => c.fail(
                    at(&[&"ports", &i, &"published"]),
                    format!("invalid hostPort: {published}"),
                ),
                Some((a, b)) if a != b && port.target == 0 => c.fail(
                    at(&[&"ports", &i, &"published"]),
                    format!("invalid hostPort: {published}"),
                ),
                Some(_) => {}
            }
        }
        if let Some(ip) = &port.host_ip {
            if ip.parse::<IpAddr>().is_err() {
                c.fail(
                    at(&[&"ports", &i, &"host_ip"]),
                    format!("invalid ip address: {ip}"),
                );
            }
        }
        if let Some(proto) = &port.protocol {
            if !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
                c.fail(
                    at(&[&"ports", &i, &"protocol"]),
                    format!("invalid proto: {proto}"),
                );
            }
        }
        if let Some(mode) = &port.mode {
            if mode != "ingress" && mode != "host" {
                c.fail(
                    at(&[&"ports", &i, &"mode"]),
                    format!("invalid port mode \"{mode}\": must be ingress or host"),
                );
            }
        }
    }
    for (i, e) in svc.expose.iter().enumerate() {
        let port = e.split_once('/').map_or(e.as_str(), |(p, _)| p);
        if parse_range(port).is_none() {
            c.fail(at(&[&"expose", &i]), format!("invalid port \"{e}\""));
        }
    }

    if let Some(r) = &svc.restart {
        if !valid_restart(r) {
            c.fail(at(&[&"restart"]), format!("invalid restart policy \"{r}\": must be no, always, on-failure[:max-retries] or unless-stopped"));
        }
    }
    if let Some(pp) = &svc.pull_policy {
        if !valid_pull_policy(pp) {
            c.fail(
                at(&[&"pull_policy"]),
                format!("invalid pull policy \"{pp}\""),
            );
        }
    }
    if !(-1000..=1000).contains(&svc.oom_score_adj) {
        c.fail(
            at(&[&"oom_score_adj"]),
            format!(
                "oom_score_adj {} is out of range -1000..1000",
                svc.oom_score_adj
            ),
        );
    }
    if let Some(pct) = svc.cpu_percent {
        if !(0.0..=100.0).contains(&pct) {
            c.fail(
                at(&[&"cpu_percent"]),
                format!("cpu_percent {pct} is out of range 0..100"),
            );
        }
    }

    if let Some(scale) = svc.scale {
        if scale < 0 {
            c.fail(at(&[&"scale"]), "must be greater than or equal to 0");
        }
    }
    let deploy = svc.deploy.as_ref();
    if let Some(r) = deploy.and_then(|d| d.replicas) {
        if r < 0 {
            c.fail(
                at(&[&"deploy", &"replicas"]),
                "must be greater than or equal to 0",
            );
        }
        if svc.scale.is_some_and(|s| s != r) {
            c.fail(
                at(&[]),
                "can't set distinct values on 'scale' and 'deploy.replicas'",
            );
        }
    }
    if svc.replicas() > 1 && svc.container_name.is_some() {
        let attr = if svc.scale.is_some() {
            "scale"
        } else {
            "deploy.replicas"
        };
        c.fail(
            at(&[&"container_name"]),
            format!("can't set container_name and {attr} as container name must be unique"),
        );
    }
    let limits = deploy.and_then(|d| d.resources.limits.as_ref());
    let reservations = deploy.and_then(|d| d.resources.reservations.as_ref());
    if let (Some(cpus), Some(l)) = (svc.cpus, limits) {
        if l.cpus.is_some_and(|lc| lc != cpus) {
            c.fail(
                at(&[]),
                "can't set distinct values on 'cpus' and 'deploy.resources.limits.cpus'",
            );
        }
    }
    if let (Some(mem), Some(l)) = (svc.mem_limit, limits) {
        if l.memory.is_some_and(|lm| lm != mem) {
            c.fail(
                at(&[]),
                "can't set distinct values on 'mem_limit' and 'deploy.resources.limits.memory'",
            );
        }
    }
    if let (Some(mem), Some(r)) = (svc.mem_reservation, reservations) {
        if r.memory.is_some_and(|rm| rm != mem) {
            c.fail(at(&[]), "can't set distinct values on 'mem_reservation' and 'deploy.resources.reservations.memory'");
        }
    }
    if let (true, Some(l)) = (svc.pids_limit != 0, limits) {
        if l.pids != 0 && l.pids != svc.pids_limit {
            c.fail(
                at(&[]),
                "can't set distinct values on 'pids_limit' and 'deploy.resources.limits.pids'",
            );
        }
    }
    let limit = svc.mem_limit.or_else(|| limits.and_then(|l| l.memory));
    let reservation = svc
        .mem_reservation
        .or_else(|| reservations.and_then(|r| r.memory));
    if let (Some(l), Some(r)) = (limit, reservation) {
        if l.0 > 0 && r.0 > l.0 {
            c.fail(
                at(&[&"mem_reservation"]),
                format!(
                    "mem_reservation ({}) must not be greater than mem_limit ({})",
                    r.0, l.0
                ),
            );
        }
    }
    if let Some(d) = deploy {
        if let Some(mode) = &d.mode {
            if !matches!(
                mode.as_str(),
                "replicated" | "global" | "replicated-job" | "global-job"
            ) {
                c.fail(
                    at(&[&"deploy", &"mode"]),
                    format!("invalid deploy mode \"{mode}\""),
                );
            }
            if mode.starts_with("global") && d.replicas.is_some_and(|r| r != 1) {
                c.fail(
                    at(&[&"deploy", &"replicas"]),
                    "replicas can only be used with replicated mode",
                );
            }
        }
        if let Some(em) = &d.endpoint_mode {
            if em != "vip" && em != "dnsrr" {
                c.fail(
                    at(&[&"deploy", &"endpoint_mode"]),
                    format!("invalid endpoint mode \"{em}\": must be vip or dnsrr"),
                );
            }
        }
        if let Some(l) = limits {
            if !l.devices.is_empty() || !l.generic_resources.is_empty() {
                c.fail(
                    at(&[&"deploy", &"resources", &"limits"]),
                    "devices and generic_resources are only allowed in reservations",
                );
            }
        }
        if let Some(r) = reservations {
            check_device_requests(
                c,
                at(&[&"deploy", &"resources", &"reservations", &"devices"]),
                &r.devices,
            );
        }
    }
    check_device_requests(c, at(&[&"gpus"]), &svc.gpus);

    if let Some(dev) = &svc.develop {
        for (i, w) in dev.watch.iter().enumerate() {
            if w.path.is_empty() {
                c.fail(
                    at(&[&"develop", &"watch", &i, &"path"]),
                    "value can't be blank",
                );
            }
            if w.target.is_none() && w.action != "rebuild" && w.action != "restart" {
                c.fail(
                    at(&[&"develop", &"watch", &i]),
                    "target is required for non-rebuild actions",
                );
            }
        }
    }

    let mut mounts: HashMap<String, Vec<PathSeg>> = HashMap::new();
    for (i, t) in svc.tmpfs.iter().enumerate() {
        let path = t.split(':').next().unwrap_or(t).to_string();
        let here = at(&[&"tmpfs", &i]);
        if let Some(prev) = mounts.get(&path) {
            let prev = crate::path::DisplayPath(prev).to_string();
            c.fail(here, format!("target {path} already mounted as {prev}"));
        } else {
            mounts.insert(path, here);
        }
    }
    for (i, v) in svc.volumes.iter().enumerate() {
        let Some(target) = v.target.clone() else {
            continue;
        };
        let here = at(&[&"volumes", &i]);
        if let Some(prev) = mounts.get(&target) {
            let prev = crate::path::DisplayPath(prev).to_string();
            c.fail(here, format!("target {target} already mounted as {prev}"));
        } else {
            mounts.insert(target, here);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "a", "my_app.v2-x", "0db"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "my app", "web/1", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(is_valid_container_name("web-1"));
        assert!(!is_valid_container_name("-web"));
        assert!(!is_valid_container_name("w"));
    }

    #[test]
    fn restart_and_pull_policies() {
        assert!(valid_restart("on-failure:3"));
        assert!(!valid_restart("sometimes"));
        assert!(valid_pull_policy("every_12h"));
        assert!(!valid_pull_policy("every_"));
        assert!(!valid_pull_policy("often"));
    }
}
