//! The desired shape of an app as the controller sees it: the subset of each Compose service
//! that the orchestrator and scheduler decide with. The whole canonical Compose document
//! travels alongside, opaque here, for the node agent.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::placement::Placement;
use super::restart::RestartPolicy;

/// One deployed Compose app (a project).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    pub services: IndexMap<String, ServiceSpec>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    /// The canonical Compose JSON of the whole app; the controller never looks inside.
    #[serde(default)]
    pub document: serde_json::Value,
    /// The project directory the app was loaded from, for the agent's labels.
    #[serde(default)]
    pub working_dir: String,
    /// The Compose files the app was loaded from, for the agent's labels and `ls`.
    #[serde(default)]
    pub config_files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub image: String,
    #[serde(default = "one")]
    pub replicas: u32,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Keyed by the name of the service depended on.
    #[serde(default)]
    pub depends_on: IndexMap<String, Dependency>,
    /// Whether the service has a (non-disabled) healthcheck; without one it never becomes
    /// healthy.
    #[serde(default)]
    pub healthcheck: bool,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    #[serde(default)]
    pub update_config: UpdateConfig,
    #[serde(default)]
    pub rollback_config: UpdateConfig,
    /// Milliseconds between the stop signal and the kill.
    #[serde(default = "ten_seconds")]
    pub stop_grace_period: u64,
    /// The Compose model's hash of this service's configuration: tasks made from another hash
    /// are outdated and get replaced.
    pub config_hash: String,
}

fn one() -> u32 {
    1
}

fn ten_seconds() -> u64 {
    10_000
}

impl ServiceSpec {
    /// A replicated service with defaults everywhere else; the starting point of tests and of
    /// the conversion from the Compose model.
    pub fn new(image: impl Into<String>, config_hash: impl Into<String>) -> Self {
        ServiceSpec {
            image: image.into(),
            replicas: 1,
            mode: Mode::Replicated,
            restart: RestartPolicy::default(),
            depends_on: IndexMap::new(),
            healthcheck: false,
            resources: Resources::default(),
            placement: Placement::default(),
            ports: Vec::new(),
            update_config: UpdateConfig::default(),
            rollback_config: UpdateConfig::default(),
            stop_grace_period: ten_seconds(),
            config_hash: config_hash.into(),
        }
    }

    /// Host-mode published ports: the ones that conflict between tasks on one node.
    pub fn host_ports(&self) -> impl Iterator<Item = &PublishedPort> {
        self.ports.iter().filter(|port| port.mode == PortMode::Host)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Replicated,
    /// One task on every eligible node.
    Global,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DependencyCondition {
    #[default]
    Started,
    Healthy,
    CompletedSuccessfully,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default)]
    pub condition: DependencyCondition,
    /// Restart this service when the dependency is restarted.
    #[serde(default)]
    pub restart: bool,
    /// When false, a dependency that is not part of the app is ignored.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

impl Dependency {
    pub fn on(condition: DependencyCondition) -> Self {
        Dependency {
            condition,
            restart: false,
            required: true,
        }
    }
}

/// Reservations are what the scheduler subtracts from a node's capacity; limits are enforced
/// by the agent only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub reserve_nano_cpus: u64,
    #[serde(default)]
    pub reserve_memory: u64,
    #[serde(default)]
    pub limit_nano_cpus: u64,
    #[serde(default)]
    pub limit_memory: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortMode {
    /// Published on the node that runs the task: two such tasks conflict on one node.
    #[default]
    Host,
    /// Published through the cluster's routing mesh; never conflicts per node.
    Ingress,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    /// The host address; empty means every address.
    #[serde(default)]
    pub ip: String,
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub mode: PortMode,
}

impl PublishedPort {
    /// Two bindings collide when protocol and port match and either listens everywhere or
    /// both name the same address.
    pub fn collides_with(&self, other: &PublishedPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip.is_empty() || other.ip.is_empty() || self.ip == other.ip)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    #[default]
    Pause,
    Continue,
    Rollback,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

/// `deploy.update_config` and `deploy.rollback_config`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks replaced at once; 0 means all at once.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Milliseconds to wait after a batch is running before starting the next.
    #[serde(default)]
    pub delay: u64,
    #[serde(default)]
    pub failure_action: FailureAction,
    /// Milliseconds after a task starts during which its failure counts against the update.
    #[serde(default = "five_seconds")]
    pub monitor: u64,
    /// Fraction of the service's tasks allowed to fail before `failure_action` applies.
    #[serde(default)]
    pub max_failure_ratio: f64,
    #[serde(default)]
    pub order: UpdateOrder,
}

fn five_seconds() -> u64 {
    5_000
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: 0,
            failure_action: FailureAction::Pause,
            monitor: five_seconds(),
            max_failure_ratio: 0.0,
            order: UpdateOrder::StopFirst,
        }
    }
}
