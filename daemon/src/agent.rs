//! The agent role of berthd: connects this node's worker (`berth_node_agent::worker`) to
//! the dispatcher. Each new assignment set goes to `Worker::apply` as the worker's plain
//! types; every status the worker reports goes back as the controller's `TaskStatus`. After
//! a restart the worker has adopted the containers that run, and its observed state is
//! reported first, so nothing is restarted for the daemon's sake.
//!
//! Only type conversions and the two flows live here; reconciling is the worker's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        files: Option<std::sync::Arc<dyn berth_node_agent::task_files::FileSource>>,
    ) -> Result<Agent, WorkerError> {
        let mut config = WorkerConfig::new(data_root, libexec_dir);
        config.run_root = run_root.to_owned();
        config.files = files;
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

    /// `run`: the networks and named volumes a one-off container of `service` uses, made
    /// by the worker as for the service's tasks (see `Worker::prepare_one_off`); the
    /// warnings about them.
    pub async fn prepare_one_off(
        &self,
        app: Arc<berth_spec::App>,
        service: &str,
        working_dir: &str,
        config_files: &[String],
    ) -> Result<Vec<String>, String> {
        let one_off = Assignment {
            // no task: only the names of anonymous volumes would use it, and those are
            // left to the one-off container
            task_id: String::new(),
            project: app.name.clone(),
            service: service.to_owned(),
            slot: None,
            desired: Desired::Running,
            config_hash: String::new(),
            restarts: 0,
            app,
            working_dir: PathBuf::from(working_dir),
            config_files: config_files.iter().map(PathBuf::from).collect(),
            stop_timeout: None,
            launch_ahead: false,
            keep_volumes: false,
        };
        self.worker.prepare_one_off(&one_off).await
    }

    /// Whether the worker still holds any of `tasks` (it lets go of a removed task only
    /// once its container and, unless kept, its anonymous volumes are gone).
    pub fn holds_any(&self, tasks: &std::collections::BTreeSet<String>) -> bool {
        self.worker
            .observed()
            .iter()
            .any(|r| tasks.contains(&r.task_id))
    }

    /// The tasks the worker holds (running, or with a container still being removed).
    pub fn held(&self) -> std::collections::BTreeSet<String> {
        self.worker
            .observed()
            .into_iter()
            .map(|r| r.task_id)
            .collect()
    }

    /// Runs the two flows of `session` until `shutdown` turns true.
    pub fn run(&self, session: Session, shutdown: watch::Receiver<bool>) {
        self.run_with(session, shutdown, None)
    }

    /// [`Agent::run`], with a cluster's `hook` (overlay addresses, peer images) between the
    /// dispatcher and the worker.
    pub fn run_with(
        &self,
        session: Session,
        shutdown: watch::Receiver<bool>,
        hook: Option<Arc<crate::cluster::hook::Hook>>,
    ) {
        let Session {
            mut assignments,
            reports,
        } = session;
        let worker = self.worker.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut state_changes = hook.as_ref().map(|h| h.changes());
            let mut last_key = None;
            let mut dispatched = true;
            loop {
                let current = assignments.borrow_and_update().clone();
                match &hook {
                    None => worker.apply(current.iter().map(assignment).collect()).await,
                    Some(h) => {
                        let prepared = h
                            .prepare(
                                &current,
                                worker.containers(),
                                assignment,
                                last_key.as_ref(),
                                dispatched,
                            )
                            .await;
                        if let Some((list, key)) = prepared {
                            worker.apply(list).await;
                            last_key = Some(key);
                        }
                    }
                }
                tokio::select! {
                    r = assignments.changed() => {
                        if r.is_err() { return }
                        dispatched = true;
                    }
                    r = changed(&mut state_changes) => {
                        if r.is_err() { return }
                        dispatched = false;
                    }
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

/// The next change of `rx`; never, without one.
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) -> Result<(), watch::error::RecvError> {
    match rx {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
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
