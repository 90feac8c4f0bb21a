//! The plain data the worker exchanges with whoever assigns it work (the daemon's
//! dispatcher): what a task should be ([`Assignment`], [`Desired`]) and what it is
//! ([`StatusReport`], [`Observed`], [`Health`]). No behaviour here, and nothing from the
//! controller crate: the daemon converts its own types into these.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What the controller wants of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Prepared: image present, networks and volumes made, container created, not started.
    Ready,
    /// Started (prepared first if needed).
    Running,
    /// Stopped with the service's `stop_signal`, killed after `stop_grace_period`; the
    /// container stays.
    Shutdown,
    /// Stopped, then the container and its anonymous volumes removed.
    Remove,
}

/// What the worker last saw of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Observed {
    /// Pulling the image, making networks and volumes, creating the container.
    Preparing,
    /// The container exists and was not started (desired `Ready`).
    Ready,
    /// The container is being started.
    Starting,
    Running,
    /// The container exited with code 0 on its own.
    Complete,
    /// The container exited with another code on its own, or could not be started.
    Failed,
    /// The container was stopped because the controller asked.
    Shutdown,
    /// The task cannot run here (no image and no registry, bad option, …); see `message`.
    Rejected,
    /// The container is gone (desired `Remove`); the worker forgets the task after this.
    Removed,
}

impl Observed {
    /// No container process runs in this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Observed::Complete
                | Observed::Failed
                | Observed::Shutdown
                | Observed::Rejected
                | Observed::Removed
        )
    }
}

/// The healthcheck's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No healthcheck (none defined, `disable: true`, or `test: ["NONE"]`).
    #[default]
    None,
    /// Within the start period or before the first verdict.
    Starting,
    Healthy,
    Unhealthy,
}

/// One task assigned to this node.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Unique and stable for the task's life; the container carries it as `berth.task.id`.
    pub task_id: String,
    /// The Compose project (`App::name`).
    pub project: String,
    /// The service's key in `app.services`.
    pub service: String,
    /// Replica number (1-based) for replicated services; `None` for global ones.
    pub slot: Option<u32>,
    pub desired: Desired,
    /// The service's configuration hash (`com.docker.compose.config-hash`): a different hash
    /// for the same task means its container is recreated.
    pub config_hash: String,
    /// The controller bumps this to make a task whose container ended on its own
    /// (`Complete`, `Failed`) run again in place: such a container is started again only
    /// when this is higher than when it last started. A task the controller shut down
    /// (`Shutdown`) starts again as soon as it is desired `Running`.
    pub restarts: u32,
    pub app: Arc<berth_spec::App>,
    /// The project directory (`com.docker.compose.project.working_dir`).
    pub working_dir: PathBuf,
    /// The Compose files (`com.docker.compose.project.config_files`).
    pub config_files: Vec<PathBuf>,
    /// Time between the stop signal and the kill when this task is stopped, over the
    /// service's `stop_grace_period` (`-t` of `stop`, `down`, `restart`, `up`).
    pub stop_timeout: Option<std::time::Duration>,
    /// Desired `Ready` only until the controller releases it (its `depends_on` conditions
    /// hold): the worker launches its container ahead (shim, runtime `create`, networks),
    /// so the release costs only the runtime's `start`.
    pub launch_ahead: bool,
    /// When the task is removed its anonymous volumes stay (Compose's `rm` and `down`
    /// without `-v`); [`Worker::remove_project`](super::Worker::remove_project) with
    /// volumes takes them later.
    pub keep_volumes: bool,
}

impl Assignment {
    /// The service of this task in its app, if the app has it.
    pub fn service_spec(&self) -> Option<&berth_spec::model::Service> {
        self.app.services.get(&self.service)
    }
}

/// The status of one task, sent on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub task_id: String,
    pub state: Observed,
    /// Set in `Complete`, `Failed` and `Shutdown` once the process has exited.
    pub exit_code: Option<i32>,
    pub health: Health,
    /// 64 hex characters, once the container exists.
    pub container_id: Option<String>,
    /// Why (errors, warnings about Compose keys not honoured), or empty.
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

impl StatusReport {
    pub(crate) fn new(task_id: &str, state: Observed) -> StatusReport {
        StatusReport {
            task_id: task_id.to_string(),
            state,
            exit_code: None,
            health: Health::None,
            container_id: None,
            message: String::new(),
            at_ms: now_ms(),
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
