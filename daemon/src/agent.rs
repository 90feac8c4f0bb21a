//! The agent role of berthd: connects this node's worker (`berth_node_agent::worker`) to
//! the dispatcher. Each new assignment set goes to `Worker::apply` as the worker's plain
//! types; every status the worker reports goes back as the controller's `TaskStatus`. After
//! a restart the worker has adopted the containers that run, and its observed state is
//! reported first, so nothing is restarted for the daemon's sake.
//!
//! Only type conversions and the two flows live here; reconciling is the worker's.

use std::path::{Path, PathBuf};

use berth_controller::store::{self, DesiredState, TaskId, TaskState, TaskStatus};
use berth_node_agent::container::Containers;
use berth_node_agent::worker::{
    Assignment, Desired, Health, Observed, StatusReport, Worker, WorkerConfig, WorkerError,
};
use tokio::sync::{broadcast, mpsc, watch};

use crate::dispatcher::{NodeTask, Session};

pub struct Agent {
    worker: Worker,
}

impl Agent {
    /// Opens the worker over `data_root` with the helper binaries in `libexec_dir`; it adopts
    /// the containers that already run.
    pub async fn open(
        data_root: &Path,
        run_root: &Path,
        libexec_dir: &Path,
    ) -> Result<Agent, WorkerError> {
        let mut config = WorkerConfig::new(data_root, libexec_dir);
        config.run_root = run_root.to_owned();
        let worker = Worker::open(config).await?;
        Ok(Agent { worker })
    }

    pub fn containers(&self) -> &Containers {
        self.worker.containers()
    }

    /// The node's networks, shared with the Docker API so one process holds one copy.
    pub fn networks(&self) -> &std::sync::Arc<berth_network::networks::Networks> {
        self.worker.networks()
    }

    /// Removes what the worker made for `project` (networks; volumes on request). Call it
    /// once the project's tasks are gone.
    pub async fn remove_project(
        &self,
        project: &str,
        remove_volumes: bool,
    ) -> Result<(Vec<String>, Vec<String>), WorkerError> {
        let resources = self.worker.project_resources(project);
        let networks = resources.networks.keys().cloned().collect();
        let volumes = if remove_volumes {
            resources
                .volumes
                .iter()
                .filter(|(_, r)| !r.external)
                .map(|(name, _)| name.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.worker.remove_project(project, remove_volumes).await?;
        Ok((networks, volumes))
    }

    /// Whether the worker still holds any of `tasks` (it lets go of a removed task only
    /// once its container and, unless kept, its anonymous volumes are gone).
    pub fn holds_any(&self, tasks: &std::collections::BTreeSet<String>) -> bool {
        self.worker
            .observed()
            .iter()
            .any(|r| tasks.contains(&r.task_id))
    }

    /// Runs the two flows of `session` until `shutdown` turns true.
    pub fn run(&self, session: Session, shutdown: watch::Receiver<bool>) {
        let Session {
            mut assignments,
            reports,
        } = session;
        let worker = self.worker.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let current = assignments.borrow_and_update().clone();
                worker.apply(current.iter().map(assignment).collect()).await;
                tokio::select! {
                    r = assignments.changed() => if r.is_err() { return },
                    _ = stop.changed() => return,
                }
            }
        });
        let worker = self.worker.clone();
        let mut stop = shutdown;
        tokio::spawn(async move {
            let mut updates = worker.subscribe();
            // What the worker adopted and saw before this subscription.
            if !resync(&worker, &reports).await {
                return;
            }
            loop {
                let report = tokio::select! {
                    r = updates.recv() => r,
                    _ = stop.changed() => return,
                };
                match report {
                    Ok(report) => {
                        if reports.send(status(&report)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "status reports lagged; re-syncing");
                        if !resync(&worker, &reports).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

async fn resync(worker: &Worker, reports: &mpsc::Sender<(TaskId, TaskStatus)>) -> bool {
    for report in worker.observed() {
        if reports.send(status(&report)).await.is_err() {
            return false;
        }
    }
    true
}

fn assignment(task: &NodeTask) -> Assignment {
    Assignment {
        task_id: task.task.id.clone(),
        project: task.task.app.clone(),
        service: task.task.service.clone(),
        slot: task.task.slot,
        desired: match task.task.desired {
            DesiredState::Ready => Desired::Ready,
            DesiredState::Running => Desired::Running,
            DesiredState::Shutdown => Desired::Shutdown,
            DesiredState::Remove => Desired::Remove,
        },
        config_hash: task.task.spec_hash.clone(),
        // A restart is a new task for the controller, never an in-place restart.
        restarts: 0,
        app: task.app.clone(),
        working_dir: PathBuf::from(&task.working_dir),
        config_files: task.config_files.iter().map(PathBuf::from).collect(),
        stop_timeout: task.stop_timeout,
        launch_ahead: task.held_for_dependencies,
        keep_volumes: task.keep_volumes,
    }
}

/// The controller's view of a worker report.
pub fn status(report: &StatusReport) -> (TaskId, TaskStatus) {
    let state = match report.state {
        Observed::Preparing | Observed::Ready => TaskState::Preparing,
        Observed::Starting => TaskState::Starting,
        Observed::Running => TaskState::Running,
        Observed::Complete => TaskState::Complete,
        Observed::Failed => TaskState::Failed,
        Observed::Shutdown | Observed::Removed => TaskState::Shutdown,
        Observed::Rejected => TaskState::Rejected,
    };
    let health = match report.health {
        Health::None => store::Health::None,
        Health::Starting => store::Health::Starting,
        Health::Healthy => store::Health::Healthy,
        Health::Unhealthy => store::Health::Unhealthy,
    };
    let status = TaskStatus {
        state,
        health,
        exit_code: report.exit_code,
        message: report.message.clone(),
        timestamp: report.at_ms,
    };
    (report.task_id.clone(), status)
}
