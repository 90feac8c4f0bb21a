//! A task: one container's worth of a service. The controller owns its desired state; the
//! agent reports its observed status. The two are never mixed.

use serde::{Deserialize, Serialize};

pub type TaskId = String;
pub type NodeId = String;
/// Milliseconds since the Unix epoch, chosen by whoever proposes a command.
pub type Timestamp = u64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub app: String,
    pub service: String,
    /// The replica number of a replicated service (1-based); `None` for a global service.
    pub slot: Option<u32>,
    /// The service's `config_hash` this task was made from.
    pub spec_hash: String,
    /// Where the task runs. Preset at creation for a global service.
    pub node: Option<NodeId>,
    pub desired: DesiredState,
    pub status: TaskStatus,
    /// How many restarts preceded this task in its slot.
    pub restart_count: u32,
    /// When the earlier restarts of the slot happened (only kept for a restart `window`).
    #[serde(default)]
    pub restart_history: Vec<Timestamp>,
    pub created_at: Timestamp,
    /// When the agent first reported it running.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Why the scheduler could not place it, until it can.
    #[serde(default)]
    pub unplaceable_reason: Option<String>,
    /// Why it is held at `Ready` (a `depends_on` condition), until released.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// Set when the user stopped it explicitly (`berth stop`): it is not restarted.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// `-t` of the `stop`/`down`/`restart`/`up` that asked for its stop: milliseconds
    /// between the stop signal and the kill, over the service's `stop_grace_period`. In
    /// the replicated state (not an agent's memory) so an agent acting after a daemon
    /// restart honours it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_ms: Option<u64>,
    /// Its anonymous volumes stay when it is removed (`rm`/`down` without `-v`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_volumes: bool,
}

impl Task {
    /// A fresh task; `desired` is `Ready` when it must wait for dependencies.
    pub fn new(
        id: impl Into<TaskId>,
        app: &str,
        service: &str,
        spec_hash: &str,
        desired: DesiredState,
        now: Timestamp,
    ) -> Self {
        Task {
            id: id.into(),
            app: app.to_owned(),
            service: service.to_owned(),
            slot: None,
            spec_hash: spec_hash.to_owned(),
            node: None,
            desired,
            status: TaskStatus::new(TaskState::New, now),
            restart_count: 0,
            restart_history: Vec::new(),
            created_at: now,
            started_at: None,
            unplaceable_reason: None,
            waiting_for: None,
            stopped_by_user: false,
            stop_timeout_ms: None,
            keep_volumes: false,
        }
    }

    /// Desired to exist and run (possibly held at `Ready`).
    pub fn is_live(&self) -> bool {
        matches!(self.desired, DesiredState::Ready | DesiredState::Running)
    }

    /// Holds node resources: placed and not yet observed finished.
    pub fn holds_resources(&self) -> bool {
        self.node.is_some() && !self.status.state.is_terminal()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    /// Created and prepared but held before start (waiting on `depends_on`).
    Ready,
    Running,
    Shutdown,
    /// Shut down and then deleted from the store.
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub state: TaskState,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub message: String,
    pub timestamp: Timestamp,
}

impl TaskStatus {
    pub fn new(state: TaskState, timestamp: Timestamp) -> Self {
        TaskStatus {
            state,
            health: Health::None,
            exit_code: None,
            message: String::new(),
            timestamp,
        }
    }
}

/// Observed states in lifecycle order; a task only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    New,
    Pending,
    Assigned,
    Preparing,
    Starting,
    Running,
    Complete,
    Failed,
    Shutdown,
    Rejected,
    Orphaned,
}

impl TaskState {
    /// The container is gone (or will never exist).
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No healthcheck.
    #[default]
    None,
    Starting,
    Healthy,
    Unhealthy,
}
