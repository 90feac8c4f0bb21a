//! The closed set of changes to the store, as they travel in the Raft log (JSON), and the
//! typed answer each one gets when applied.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::app::AppSpec;
use super::node::{Availability, Node, NodeStatus, Role};
use super::secret::StoredSecret;
use super::state::{AppFiles, ClusterSecrets};
use super::task::{DesiredState, NodeId, Task, TaskId, TaskState, TaskStatus, Timestamp};

/// Every change to the store. Each is validated against the state it is applied to; ids and
/// timestamps are chosen by the proposer so that applying is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Creates an app or replaces its spec. A service whose `config_hash` changed keeps its
    /// previous spec for rollback and starts a rolling update.
    DeployApp(AppSpec),
    /// Forgets the app; the orchestrator then removes its tasks.
    RemoveApp {
        name: String,
    },
    ScaleService {
        app: String,
        service: String,
        replicas: u32,
    },
    /// Adds a node, or refreshes what a known node reports about itself (keeping the
    /// operator's availability, labels and role).
    RegisterNode(Node),
    UpdateNode {
        id: NodeId,
        #[serde(default)]
        availability: Option<Availability>,
        #[serde(default)]
        labels_add: BTreeMap<String, String>,
        #[serde(default)]
        labels_rm: Vec<String>,
        #[serde(default)]
        role: Option<Role>,
    },
    RemoveNode {
        id: NodeId,
    },
    NodeStatus {
        id: NodeId,
        status: NodeStatus,
    },
    CreateTasks(Vec<Task>),
    AssignTasks(Vec<(TaskId, NodeId)>),
    SetDesired(Vec<(TaskId, DesiredState)>),
    /// Observed status from agents (or the orchestrator marking tasks of a lost node
    /// orphaned). Stale entries are skipped and reported, the others applied.
    TaskStatusUpdate(Vec<(TaskId, TaskStatus)>),
    RemoveTasks(Vec<TaskId>),
    MarkUnplaceable(Vec<(TaskId, String)>),
    /// Records why tasks held at `Ready` are still waiting.
    HoldTasks(Vec<(TaskId, String)>),
    /// `berth stop`: the service's tasks are shut down and not restarted.
    StopService {
        app: String,
        service: String,
    },
    /// `berth start` after a stop (or `up --no-start`): the tasks the stop shut down start
    /// again with their containers; tasks held by `--no-start` are released.
    StartService {
        app: String,
        service: String,
    },
    /// The daemon came back: services the user stopped come back only if their restart
    /// policy is `always` (not `unless-stopped`).
    DaemonRestarted,
    SetUpdateState {
        app: String,
        service: String,
        state: UpdateState,
    },
    /// Swaps the service's spec with the one it replaced and rolls its tasks back.
    RollbackService {
        app: String,
        service: String,
        reason: String,
        at: Timestamp,
    },
    /// `up --no-start`: like `DeployApp`, but the new tasks of services that run nothing
    /// yet are created and held before their start until `StartService`.
    DeployAppNoStart(AppSpec),
    /// `cluster init` and join-token rotation: the cluster's CA and sealed secrets.
    SetClusterSecrets(ClusterSecrets),
    /// The overlay allocator's decisions (VNIs, subnets, task addresses) and releases.
    Overlay(super::overlay::OverlayChange),
    /// An app's Compose secrets and configs, each sealed (the store never sees a content);
    /// replaces what the app had.
    SetAppFiles {
        app: String,
        files: AppFiles,
    },
    /// A removed node: certificates of `id` issued before `at` (ms since the epoch) are
    /// refused from now on (the cluster's deny list).
    RevokeNode {
        id: NodeId,
        at: Timestamp,
    },
    /// `-t` of `stop`, `restart`, `down` and `up`: the tasks are stopped with this many
    /// milliseconds between the stop signal and the kill (`None`: their services'
    /// `stop_grace_period`). Proposed before the stop itself; tasks already gone are
    /// skipped.
    SetStopTimeout {
        tasks: Vec<TaskId>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// `rm` and `down` without `-v`: the tasks' anonymous volumes stay when their
    /// containers are removed (`keep`), or go with them. Proposed before the removal;
    /// tasks already gone are skipped.
    SetKeepVolumes {
        tasks: Vec<TaskId>,
        keep: bool,
    },
    /// `berth secret create`: a new stored secret (its value sealed by the proposer).
    CreateSecret(StoredSecret),
    /// `berth secret rm` (by name or id); refused while an app uses it.
    RemoveSecret {
        name: String,
    },
    /// `down` of the whole app: what is left to remove once its tasks and containers are
    /// gone (the project's networks, and with `remove_volumes` its volumes). Proposed before
    /// `RemoveApp`, so a berthd restarted in the middle of the `down` finishes it.
    BeginTakedown {
        app: String,
        #[serde(default)]
        remove_volumes: bool,
        /// `-t` of the `down`, for the project's one-off containers.
        #[serde(default)]
        timeout_seconds: Option<u32>,
    },
    /// The `down` of `app` is complete (its networks and volumes dealt with); nothing
    /// happens when none is pending.
    EndTakedown {
        app: String,
    },
}

/// Where a service's rolling update stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Nothing to roll (or the last update finished).
    #[default]
    Completed,
    /// The spec changed; the orchestrator stamps the start on its next pass.
    Pending,
    Updating {
        started_at: Timestamp,
    },
    Paused {
        reason: String,
    },
    RollingBack {
        started_at: Timestamp,
        reason: String,
    },
    RolledBack {
        reason: String,
    },
    RollbackPaused {
        reason: String,
    },
}

impl UpdateState {
    pub fn is_paused(&self) -> bool {
        matches!(
            self,
            UpdateState::Paused { .. } | UpdateState::RollbackPaused { .. }
        )
    }
}

/// A command that was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Objects created, changed or removed.
    pub changed: usize,
    /// Entries of a status batch that were skipped, with why.
    #[serde(default)]
    pub rejected: Vec<ApplyError>,
}

impl Applied {
    pub fn changed(changed: usize) -> Self {
        Applied {
            changed,
            rejected: Vec::new(),
        }
    }
}

/// Why a command was refused; shown to the API's caller as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    #[error("the command is not valid JSON: {message}")]
    Decode { message: String },
    #[error("invalid app {app:?}: {reason}")]
    InvalidApp { app: String, reason: String },
    #[error("no app named {app:?}")]
    UnknownApp { app: String },
    #[error("app {app:?} has no service {service:?}")]
    UnknownService { app: String, service: String },
    #[error(
        "service {service:?} of app {app:?}: {replicas} replicas is more than the {max} a service may have"
    )]
    TooManyReplicas {
        app: String,
        service: String,
        replicas: u32,
        max: u32,
    },
    #[error("service {service:?} of app {app:?} is global: it runs one task per node")]
    ScaleGlobal { app: String, service: String },
    #[error("no node {id:?}")]
    UnknownNode { id: NodeId },
    #[error("no task {id:?}")]
    UnknownTask { id: TaskId },
    #[error("task {id:?} already exists")]
    DuplicateTask { id: TaskId },
    #[error("task {id:?} is already assigned to node {node:?}")]
    AlreadyAssigned { id: TaskId, node: NodeId },
    #[error("task {id:?}: desired state cannot go from {from:?} back to {to:?}")]
    DesiredRegression {
        id: TaskId,
        from: DesiredState,
        to: DesiredState,
    },
    #[error("task {id:?}: status cannot go from {from:?} back to {to:?}")]
    StatusRegression {
        id: TaskId,
        from: TaskState,
        to: TaskState,
    },
    #[error("service {service:?} of app {app:?} has no previous spec to roll back to")]
    NoPreviousSpec { app: String, service: String },
    #[error("{reason}")]
    InvalidSecret { reason: String },
    #[error("a secret named {name:?} already exists")]
    SecretExists { name: String },
    #[error("no secret {name:?}")]
    UnknownSecret { name: String },
    #[error("secret {name:?} is in use by {users}")]
    SecretInUse { name: String, users: String },
    #[error(
        "external secret {name:?} (secrets.{key} of app {app:?}) does not exist: create it with `berth secret create {name} FILE`"
    )]
    MissingExternalSecret {
        app: String,
        key: String,
        name: String,
    },
}
