//! Turns the canonical Compose model (`berth_spec::App`) into the controller's [`AppSpec`]:
//! the subset of every service the orchestrator and scheduler decide with, plus the whole
//! document for the agent.
//!
//! Pure: no I/O, no clock. It must not interpret what only the agent needs (commands,
//! mounts, environment); those travel inside `document` untouched.

use berth_spec::App;
use berth_spec::model::deploy;
use berth_spec::model::{Condition, Service};
use indexmap::IndexMap;

use super::app::{
    AppSpec, Dependency, DependencyCondition, FailureAction, Mode, PortMode, Protocol,
    PublishedPort, Resources, ServiceSpec, UpdateConfig, UpdateOrder,
};
use super::node::Platform;
use super::placement::{Constraint, Placement, Strategy};

/// The `deploy.placement` extension that picks the scoring strategy.
pub const STRATEGY_KEY: &str = "x-berth-strategy";
use super::restart::RestartPolicy;
use super::state::MAX_REPLICAS;

/// Why a Compose app cannot become an [`AppSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromComposeError {
    #[error("service {service:?}: {reason}")]
    Service { service: String, reason: String },
    #[error("the app cannot be serialized: {reason}")]
    Document { reason: String },
}

fn bad(service: &str, reason: impl Into<String>) -> FromComposeError {
    FromComposeError::Service {
        service: service.to_owned(),
        reason: reason.into(),
    }
}

/// Converts a loaded app named `project`. `scale` overrides replicas per service (`--scale`).
pub fn app_spec(
    project: &str,
    app: &App,
    scale: &IndexMap<String, u32>,
) -> Result<AppSpec, FromComposeError> {
    let mut services = IndexMap::new();
    for (name, service) in &app.services {
        let mut spec = service_spec(project, name, service)?;
        if let Some(replicas) = scale.get(name) {
            if spec.mode == Mode::Global {
                return Err(bad(name, "cannot scale a global service"));
            }
            spec.replicas = *replicas;
        }
        services.insert(name.clone(), spec);
    }
    for service in scale.keys() {
        if !app.services.contains_key(service) {
            return Err(bad(
                service,
                "--scale names a service that is not in the app",
            ));
        }
    }
    let document = serde_json::to_value(app).map_err(|e| FromComposeError::Document {
        reason: e.to_string(),
    })?;
    Ok(AppSpec {
        name: project.to_owned(),
        services,
        networks: app.networks.keys().cloned().collect(),
        volumes: app.volumes.keys().cloned().collect(),
        document,
        working_dir: String::new(),
        config_files: Vec::new(),
    })
}

/// Converts one service.
pub fn service_spec(
    project: &str,
    name: &str,
    service: &Service,
) -> Result<ServiceSpec, FromComposeError> {
    let deploy = service.deploy.as_ref();
    // Compose names the image of a service that is only built `<project>-<service>`.
    let image = service
        .image
        .clone()
        .unwrap_or_else(|| format!("{project}-{name}"));
    let mut spec = ServiceSpec::new(image, service.hash());

    spec.mode = match deploy.and_then(|d| d.mode.as_deref()) {
        None | Some("replicated") => Mode::Replicated,
        Some("global") => Mode::Global,
        Some(other) => return Err(bad(name, format!("deploy.mode {other:?} is not supported"))),
    };
    let replicas = service.replicas();
    if replicas < 0 || replicas > i64::from(MAX_REPLICAS) {
        return Err(bad(
            name,
            format!("{replicas} replicas: expected 0 to {MAX_REPLICAS}"),
        ));
    }
    spec.replicas = replicas as u32;
    spec.restart = restart_policy(name, service)?;
    spec.depends_on = service
        .depends_on
        .iter()
        .map(|(dep, d)| {
            let condition = match d.condition {
                Condition::ServiceStarted => DependencyCondition::Started,
                Condition::ServiceHealthy => DependencyCondition::Healthy,
                Condition::ServiceCompletedSuccessfully => {
                    DependencyCondition::CompletedSuccessfully
                }
            };
            let dependency = Dependency {
                condition,
                restart: d.restart,
                required: d.required,
            };
            (dep.clone(), dependency)
        })
        .collect();
    spec.healthcheck = service.healthcheck.as_ref().is_some_and(|h| {
        !h.disable
            && h.test
                .as_ref()
                .is_some_and(|t| t.first().is_some_and(|w| w != "NONE"))
    });
    spec.resources = resources(service);
    spec.placement = placement(name, service)?;
    spec.ports = ports(name, service)?;
    if let Some(d) = deploy {
        if let Some(c) = &d.update_config {
            spec.update_config = update_config(name, c)?;
        }
        if let Some(c) = &d.rollback_config {
            spec.rollback_config = update_config(name, c)?;
        }
    }
    if let Some(grace) = service.stop_grace_period {
        spec.stop_grace_period = millis(grace);
    }
    Ok(spec)
}

fn millis(d: berth_spec::model::Duration) -> u64 {
    u64::try_from(d.as_std().as_millis()).unwrap_or(u64::MAX)
}

/// `restart:` wins over `deploy.restart_policy`, as in Compose on one machine.
fn restart_policy(name: &str, service: &Service) -> Result<RestartPolicy, FromComposeError> {
    if let Some(value) = &service.restart {
        return RestartPolicy::parse_compose(value).map_err(|e| bad(name, e.to_string()));
    }
    let Some(policy) = service
        .deploy
        .as_ref()
        .and_then(|d| d.restart_policy.as_ref())
    else {
        return Ok(RestartPolicy::default());
    };
    RestartPolicy::from_deploy(
        policy.condition.as_deref().unwrap_or("any"),
        policy.delay.map(millis),
        policy
            .max_attempts
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        policy.window.map(millis),
    )
    .map_err(|e| bad(name, e.to_string()))
}

fn nano_cpus(cpus: f64) -> u64 {
    if cpus.is_finite() && cpus > 0.0 {
        (cpus * 1e9) as u64
    } else {
        0
    }
}

fn bytes(size: Option<berth_spec::model::ByteSize>) -> u64 {
    size.map(|s| u64::try_from(s.bytes()).unwrap_or(0))
        .unwrap_or(0)
}

fn resources(service: &Service) -> Resources {
    let declared = service.deploy.as_ref().map(|d| &d.resources);
    let reservations = declared.and_then(|r| r.reservations.as_ref());
    let limits = declared.and_then(|r| r.limits.as_ref());
    Resources {
        reserve_nano_cpus: nano_cpus(reservations.and_then(|r| r.cpus).unwrap_or(0.0)),
        reserve_memory: bytes(
            reservations
                .and_then(|r| r.memory)
                .or(service.mem_reservation),
        ),
        limit_nano_cpus: nano_cpus(limits.and_then(|r| r.cpus).or(service.cpus).unwrap_or(0.0)),
        limit_memory: bytes(limits.and_then(|r| r.memory).or(service.mem_limit)),
    }
}

fn platform(name: &str, value: &str) -> Result<Platform, FromComposeError> {
    let mut parts = value.split('/');
    match (parts.next(), parts.next()) {
        (Some(os), Some(arch)) if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch)),
        _ => Err(bad(
            name,
            format!("platform {value:?}: expected os/architecture"),
        )),
    }
}

fn placement(name: &str, service: &Service) -> Result<Placement, FromComposeError> {
    let mut placement = Placement::default();
    if let Some(value) = &service.platform {
        placement.platforms.push(platform(name, value)?);
    }
    let Some(declared) = service.deploy.as_ref().map(|d| &d.placement) else {
        return Ok(placement);
    };
    for expression in &declared.constraints {
        placement
            .constraints
            .push(Constraint::parse(expression).map_err(|e| bad(name, e.to_string()))?);
    }
    for preference in &declared.preferences {
        if let Some(spread) = &preference.spread {
            let label = spread.strip_prefix("node.labels.").unwrap_or(spread);
            placement.spread_over.push(label.to_owned());
        }
    }
    placement.max_replicas_per_node = declared
        .max_replicas_per_node
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
        .unwrap_or(0);
    // Compose has no field for the scoring strategy: berth reads it from an extension of
    // `deploy.placement`, which other tools ignore.
    if let Some(value) = declared.extensions.get(STRATEGY_KEY) {
        placement.strategy = match value.as_str() {
            Some("spread") => Strategy::Spread,
            Some("binpack") => Strategy::Binpack,
            _ => {
                return Err(bad(
                    name,
                    format!("deploy.placement.{STRATEGY_KEY} {value:?}: use spread or binpack"),
                ));
            }
        };
    }
    Ok(placement)
}

/// Published ports with a fixed host port (a range gives one entry per port); ports
/// published on an ephemeral host port never conflict and are left out.
fn ports(name: &str, service: &Service) -> Result<Vec<PublishedPort>, FromComposeError> {
    let mut out = Vec::new();
    for port in &service.ports {
        let Some(published) = port.published.as_deref().filter(|p| !p.is_empty()) else {
            continue;
        };
        let protocol = match port.protocol.as_deref() {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some("sctp") => Protocol::Sctp,
            Some(other) => return Err(bad(name, format!("port protocol {other:?}"))),
        };
        let mode = match port.mode.as_deref() {
            Some("ingress") => PortMode::Ingress,
            _ => PortMode::Host,
        };
        let (first, last) = match published.split_once('-') {
            Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
            None => (published.parse::<u16>(), published.parse::<u16>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            return Err(bad(name, format!("published port {published:?}")));
        };
        if first > last {
            return Err(bad(name, format!("published port range {published:?}")));
        }
        for number in first..=last {
            out.push(PublishedPort {
                ip: port.host_ip.clone().unwrap_or_default(),
                port: number,
                protocol,
                mode,
            });
        }
    }
    Ok(out)
}

fn update_config(
    name: &str,
    declared: &deploy::UpdateConfig,
) -> Result<UpdateConfig, FromComposeError> {
    let mut config = UpdateConfig::default();
    if let Some(p) = declared.parallelism {
        config.parallelism = u32::try_from(p).unwrap_or(u32::MAX);
    }
    if let Some(d) = declared.delay {
        config.delay = millis(d);
    }
    if let Some(action) = declared.failure_action.as_deref() {
        config.failure_action = match action {
            "pause" => FailureAction::Pause,
            "continue" => FailureAction::Continue,
            "rollback" => FailureAction::Rollback,
            other => return Err(bad(name, format!("failure_action {other:?}"))),
        };
    }
    if let Some(m) = declared.monitor {
        config.monitor = millis(m);
    }
    if let Some(r) = declared.max_failure_ratio {
        config.max_failure_ratio = r;
    }
    if let Some(order) = declared.order {
        config.order = match order {
            deploy::UpdateOrder::StartFirst => UpdateOrder::StartFirst,
            deploy::UpdateOrder::StopFirst => UpdateOrder::StopFirst,
        };
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RestartCondition;

    fn app(json: serde_json::Value) -> App {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_compose_app_becomes_a_spec() {
        let app = app(serde_json::json!({
            "name": "shop",
            "services": {
                "db": {
                    "image": "busybox",
                    "restart": "on-failure:3",
                    "healthcheck": {"test": ["CMD", "true"], "interval": "1s"},
                    "stop_grace_period": "3s"
                },
                "web": {
                    "image": "busybox",
                    "depends_on": {"db": {"condition": "service_healthy", "restart": true}},
                    "ports": [{"target": 80, "published": "8080", "protocol": "tcp"}],
                    "deploy": {
                        "replicas": 3,
                        "restart_policy": {"condition": "any", "delay": "2s", "max_attempts": 5},
                        "update_config": {"parallelism": 2, "order": "start-first",
                                          "failure_action": "rollback"},
                        "placement": {"constraints": ["node.role == manager"],
                                      "preferences": [{"spread": "node.labels.zone"}]},
                        "resources": {"reservations": {"cpus": 0.5, "memory": "64m"}}
                    }
                },
                "built": {"build": {"context": "."}, "scale": 2, "healthcheck": {"test": ["NONE"]}}
            },
            "volumes": {"data": {}},
            "networks": {"default": {}}
        }));
        let spec = app_spec("shop", &app, &IndexMap::new()).unwrap();
        assert_eq!(spec.name, "shop");
        assert_eq!(spec.volumes, ["data"]);
        assert_eq!(spec.networks, ["default"]);
        assert_eq!(spec.document["services"]["db"]["image"], "busybox");

        let db = &spec.services["db"];
        assert_eq!(db.config_hash, app.services["db"].hash());
        assert_eq!(db.restart.condition, RestartCondition::OnFailure);
        assert_eq!(db.restart.max_attempts, Some(3));
        assert!(db.healthcheck);
        assert_eq!(db.stop_grace_period, 3_000);
        assert_eq!(db.replicas, 1);

        let web = &spec.services["web"];
        assert_eq!(web.replicas, 3);
        assert_eq!(web.restart.condition, RestartCondition::Always);
        assert_eq!(web.restart.delay, Some(2_000));
        assert_eq!(web.restart.max_attempts, Some(5));
        let dep = web.depends_on["db"];
        assert_eq!(dep.condition, DependencyCondition::Healthy);
        assert!(dep.restart && dep.required);
        assert!(!web.healthcheck);
        assert_eq!(web.ports.len(), 1);
        assert_eq!(web.ports[0].port, 8080);
        assert_eq!(web.update_config.parallelism, 2);
        assert_eq!(web.update_config.order, UpdateOrder::StartFirst);
        assert_eq!(web.update_config.failure_action, FailureAction::Rollback);
        assert_eq!(web.placement.constraints.len(), 1);
        assert_eq!(web.placement.spread_over, ["zone"]);
        assert_eq!(web.resources.reserve_nano_cpus, 500_000_000);
        assert_eq!(web.resources.reserve_memory, 64 << 20);
        assert_eq!(web.stop_grace_period, 10_000);

        let built = &spec.services["built"];
        assert_eq!(built.image, "shop-built");
        assert_eq!(built.replicas, 2);
        assert!(!built.healthcheck);
    }

    #[test]
    fn the_placement_extension_picks_binpack() {
        let packed = app(serde_json::json!({
            "services": {
                "b": {"image": "busybox",
                      "deploy": {"placement": {"x-berth-strategy": "binpack"}}},
                "s": {"image": "busybox"}
            }
        }));
        let spec = app_spec("p", &packed, &IndexMap::new()).unwrap();
        assert_eq!(spec.services["b"].placement.strategy, Strategy::Binpack);
        assert_eq!(spec.services["s"].placement.strategy, Strategy::Spread);
        let wrong = app(serde_json::json!({
            "services": {"b": {"image": "busybox",
                               "deploy": {"placement": {"x-berth-strategy": "fill"}}}}
        }));
        let err = app_spec("p", &wrong, &IndexMap::new()).unwrap_err();
        assert!(err.to_string().contains("use spread or binpack"), "{err}");
    }

    #[test]
    fn scale_overrides_and_errors() {
        let app = app(serde_json::json!({
            "services": {
                "w": {"image": "busybox", "deploy": {"replicas": 2}},
                "g": {"image": "busybox", "deploy": {"mode": "global"}},
                "p": {"image": "busybox", "ports": [{"target": 1, "published": "9000-9002"}]}
            }
        }));
        let scale = IndexMap::from([("w".to_owned(), 7)]);
        let spec = app_spec("p", &app, &scale).unwrap();
        assert_eq!(spec.services["w"].replicas, 7);
        assert_eq!(spec.services["g"].mode, Mode::Global);
        let ports: Vec<u16> = spec.services["p"].ports.iter().map(|p| p.port).collect();
        assert_eq!(ports, [9000, 9001, 9002]);

        let err = app_spec("p", &app, &IndexMap::from([("g".to_owned(), 2)])).unwrap_err();
        assert!(err.to_string().contains("global"), "{err}");
        let err = app_spec("p", &app, &IndexMap::from([("nope".to_owned(), 2)])).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");

        let bad_restart = self::app(serde_json::json!({
            "services": {"x": {"image": "busybox", "restart": "sometimes"}}
        }));
        let err = app_spec("p", &bad_restart, &IndexMap::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("service \"x\": restart policy"),
            "{err}"
        );
    }

    #[test]
    fn a_changed_service_changes_only_its_hash() {
        let one = app(serde_json::json!({
            "services": {"a": {"image": "busybox"}, "b": {"image": "busybox"}}
        }));
        let two = app(serde_json::json!({
            "services": {"a": {"image": "busybox", "command": ["true"]}, "b": {"image": "busybox"}}
        }));
        let one = app_spec("p", &one, &IndexMap::new()).unwrap();
        let two = app_spec("p", &two, &IndexMap::new()).unwrap();
        assert_ne!(one.services["a"].config_hash, two.services["a"].config_hash);
        assert_eq!(one.services["b"].config_hash, two.services["b"].config_hash);
    }
}
