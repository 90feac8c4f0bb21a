//! The dispatcher: between the controller's store and the node agents. For every node it
//! keeps the set of tasks assigned there (with desired state and the app document) and
//! publishes it whenever it changes; it turns the agents' status reports into batched
//! `Command::TaskStatusUpdate`s.
//!
//! Written for many nodes: an agent opens a [`Session`] for its node id and consumes it. The
//! embedded default runs the one local agent in-process over the same interface; a remote
//! agent would carry the same two flows over the network. The dispatcher never touches a
//! container.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_controller::store::{DesiredState, NodeId, State, Task, TaskId, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch};

use crate::controller::Controller;
use crate::events::Events;
use crate::metrics::Metrics;

/// One task as the agent of its node receives it.
#[derive(Debug, Clone)]
pub struct NodeTask {
    pub task: Task,
    /// The app's canonical Compose model (shared by every task of the app).
    pub app: Arc<berth_spec::App>,
    pub working_dir: String,
    pub config_files: Vec<String>,
    /// `-t` of the `stop`/`down`/`restart`/`up` that asked for this task's stop: time
    /// between the stop signal and the kill, over the service's `stop_grace_period`
    /// (from the task in the replicated state, so it outlives a daemon restart).
    pub stop_timeout: Option<Duration>,
    /// Held at `Ready` only until its `depends_on` conditions hold (not by `up
    /// --no-start`): the agent may launch its container ahead of the release.
    pub held_for_dependencies: bool,
    /// Its anonymous volumes stay when it is removed (`rm`/`down` without `-v`; from the
    /// task in the replicated state too).
    pub keep_volumes: bool,
}

/// The tasks of one node; replaced whole on every change.
pub type Assignments = Arc<Vec<NodeTask>>;

/// An agent's connection to the dispatcher.
pub struct Session {
    /// The node's whole desired set; the agent applies each new value idempotently.
    pub assignments: watch::Receiver<Assignments>,
    /// Where the agent sends what it observes.
    pub reports: mpsc::Sender<(TaskId, TaskStatus)>,
}

pub struct Dispatcher {
    controller: Arc<Controller>,
    nodes: Mutex<HashMap<NodeId, watch::Sender<Assignments>>>,
    /// Parsed app documents, by app name, with the JSON they were parsed from. Kept after an
    /// app is removed so its tasks can still be stopped with the model they ran with.
    apps: Mutex<HashMap<String, (serde_json::Value, Arc<berth_spec::App>)>>,
    reports: mpsc::Sender<(TaskId, TaskStatus)>,
    /// Open [`Hold`]s: while any is open nothing is published, so commands proposed
    /// together reach the agents together.
    holds: AtomicUsize,
    /// One publisher at a time: a set computed earlier must never overwrite a later one.
    publishing: Mutex<()>,
}

/// Holds back publishing until dropped (see [`Dispatcher::hold`]).
pub struct Hold(Arc<Dispatcher>);

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.holds.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.publish();
        }
    }
}

/// What a task's app contributes to its assignment: document, working dir, config files.
type AppSource = (serde_json::Value, String, Vec<String>);

const BATCH_MAX: usize = 512;

impl Dispatcher {
    /// Starts the publishing and batching loops; they end when `shutdown` turns true.
    pub fn start(
        controller: Arc<Controller>,
        events: Arc<Events>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Dispatcher> {
        let (reports, inbox) = mpsc::channel(4096);
        let dispatcher = Arc::new(Dispatcher {
            controller: controller.clone(),
            nodes: Mutex::new(HashMap::new()),
            apps: Mutex::new(HashMap::new()),
            reports,
            holds: AtomicUsize::new(0),
            publishing: Mutex::new(()),
        });
        tokio::spawn(publish_loop(dispatcher.clone(), shutdown.clone()));
        tokio::spawn(batch_loop(controller, events, metrics, inbox, shutdown));
        dispatcher
    }

    /// Opens the session of `node`: its current assignments at once, then every change.
    pub fn session(&self, node: &str) -> Session {
        let current = self.assignments_of(node);
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let sender = nodes
            .entry(node.to_owned())
            .or_insert_with(|| watch::channel(Arc::new(Vec::new())).0);
        sender.send_replace(current);
        Session {
            assignments: sender.subscribe(),
            reports: self.reports.clone(),
        }
    }

    /// Nothing reaches the agents until the returned guard is dropped; then everything
    /// committed meanwhile goes out in one set. `stop` proposes one `StopService` per
    /// service under a hold, so every stop flag is recorded before any container is
    /// signalled, and the agent stops the services together in reverse dependency waves
    /// instead of one service after another in the order the commands were committed.
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.holds.fetch_add(1, Ordering::SeqCst);
        Hold(self.clone())
    }

    fn publish(&self) {
        if self.holds.load(Ordering::SeqCst) > 0 {
            return;
        }
        let _one = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let nodes: Vec<NodeId> = {
            let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            nodes.keys().cloned().collect()
        };
        for node in nodes {
            let current = self.assignments_of(&node);
            let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(sender) = nodes.get(&node) {
                sender.send_if_modified(|seen| {
                    if same_assignments(seen, &current) {
                        false
                    } else {
                        *seen = current;
                        true
                    }
                });
            }
        }
    }

    /// The tasks `node` should hold: every live task placed there, and every task that
    /// must still be stopped or removed, and every task a `stop` shut down (its container
    /// is kept). Any other task that is not wanted and already ended is left out, so the
    /// agent removes its container.
    fn assignments_of(&self, node: &str) -> Assignments {
        let (picked, held, sources): (Vec<Task>, HashSet<TaskId>, HashMap<String, AppSource>) =
            self.controller.read(|state: &State| {
                let tasks: Vec<Task> = state
                    .tasks
                    .values()
                    .filter(|t| t.node.as_deref() == Some(node))
                    .filter(|t| t.is_live() || !t.status.state.is_terminal() || kept(t))
                    .cloned()
                    .collect();
                let held = tasks
                    .iter()
                    .filter(|t| t.desired == DesiredState::Ready && t.waiting_for.is_some())
                    .filter(|t| {
                        !state
                            .apps
                            .get(&t.app)
                            .and_then(|a| a.services.get(&t.service))
                            .is_some_and(|r| r.created_only || r.stopped_by_user)
                    })
                    .map(|t| t.id.clone())
                    .collect();
                // One copy of each app's document, not one per task.
                let mut sources = HashMap::new();
                for t in &tasks {
                    if sources.contains_key(&t.app) {
                        continue;
                    }
                    if let Some(a) = state.apps.get(&t.app) {
                        let source = (
                            a.spec.document.clone(),
                            a.spec.working_dir.clone(),
                            a.spec.config_files.clone(),
                        );
                        sources.insert(t.app.clone(), source);
                    }
                }
                (tasks, held, sources)
            });
        let mut out = Vec::with_capacity(picked.len());
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        let mut dirs: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for (name, (document, dir, files)) in sources {
            let fresh = apps.get(&name).is_none_or(|(seen, _)| *seen != document);
            if fresh {
                match serde_json::from_value::<berth_spec::App>(document.clone()) {
                    Ok(parsed) => {
                        apps.insert(name.clone(), (document, Arc::new(parsed)));
                    }
                    Err(e) => {
                        tracing::error!(app = %name, error = %e, "the app document does not parse");
                    }
                }
            }
            dirs.insert(name, (dir, files));
        }
        for task in picked {
            let model = apps
                .get(&task.app)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| {
                    Arc::new(berth_spec::App {
                        name: task.app.clone(),
                        ..berth_spec::App::default()
                    })
                });
            let (working_dir, config_files) = dirs.get(&task.app).cloned().unwrap_or_default();
            out.push(NodeTask {
                stop_timeout: task.stop_timeout_ms.map(Duration::from_millis),
                held_for_dependencies: held.contains(&task.id),
                keep_volumes: task.keep_volumes,
                task,
                app: model,
                working_dir,
                config_files,
            });
        }
        Arc::new(out)
    }
}

/// A task `berth stop` shut down keeps its container (for `ps -a`, `logs` and a later
/// `start`) until `rm`, `down` or a removal of its service.
fn kept(t: &Task) -> bool {
    t.stopped_by_user && t.desired == DesiredState::Shutdown
}

/// Whether two sets ask the agent for the same thing (the observed status, which changes
/// on every report, does not count).
fn same_assignments(a: &[NodeTask], b: &[NodeTask]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.task.id == y.task.id
                && x.task.desired == y.task.desired
                && x.task.spec_hash == y.task.spec_hash
                && x.task.restart_count == y.task.restart_count
                && x.stop_timeout == y.stop_timeout
                && x.held_for_dependencies == y.held_for_dependencies
                && x.keep_volumes == y.keep_volumes
                && Arc::ptr_eq(&x.app, &y.app)
        })
}

async fn publish_loop(dispatcher: Arc<Dispatcher>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = dispatcher.controller.watch();
    loop {
        changes.borrow_and_update();
        dispatcher.publish();
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

async fn batch_loop(
    controller: Arc<Controller>,
    events: Arc<Events>,
    metrics: Arc<Metrics>,
    mut inbox: mpsc::Receiver<(TaskId, TaskStatus)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            r = inbox.recv() => match r { Some(r) => r, None => return },
            _ = shutdown.changed() => return,
        };
        // No window to wait out: what queued while the previous batch was being committed
        // goes together, and a lone report (the `Running` a dependent's start waits for)
        // is proposed at once.
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match inbox.try_recv() {
                Ok(report) => batch.push(report),
                Err(_) => break,
            }
        }
        metrics.status_reports.add(batch.len() as u64);
        let updates = coalesce(batch);
        for (id, status) in &updates {
            events.task_status(&controller, id, status);
        }
        match controller
            .propose(berth_controller::store::Command::TaskStatusUpdate(updates))
            .await
        {
            Ok(applied) => {
                for rejected in applied.rejected {
                    tracing::debug!(reason = %rejected, "stale task status skipped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "task status update failed"),
        }
    }
}

/// Keeps only the latest report of each task, in arrival order of their first report, and
/// drops reports that would move a task backwards within the batch.
fn coalesce(batch: Vec<(TaskId, TaskStatus)>) -> Vec<(TaskId, TaskStatus)> {
    let mut order: Vec<TaskId> = Vec::new();
    let mut latest: HashMap<TaskId, TaskStatus> = HashMap::new();
    for (id, status) in batch {
        match latest.get(&id) {
            None => {
                order.push(id.clone());
                latest.insert(id, status);
            }
            Some(seen) if status.state >= seen.state => {
                latest.insert(id, status);
            }
            Some(_) => {}
        }
    }
    order
        .into_iter()
        .filter_map(|id| latest.remove(&id).map(|s| (id, s)))
        .collect()
}

/// An observed state in a word, for events and `ps`.
pub fn state_word(state: TaskState) -> &'static str {
    match state {
        TaskState::New => "new",
        TaskState::Pending => "pending",
        TaskState::Assigned => "assigned",
        TaskState::Preparing => "preparing",
        TaskState::Starting => "starting",
        TaskState::Running => "running",
        TaskState::Complete => "complete",
        TaskState::Failed => "failed",
        TaskState::Shutdown => "shutdown",
        TaskState::Rejected => "rejected",
        TaskState::Orphaned => "orphaned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: TaskState, at: u64) -> TaskStatus {
        TaskStatus::new(state, at)
    }

    #[test]
    fn a_batch_keeps_each_tasks_latest_forward_report() {
        let batch = vec![
            ("a".to_owned(), status(TaskState::Preparing, 1)),
            ("b".to_owned(), status(TaskState::Running, 2)),
            ("a".to_owned(), status(TaskState::Running, 3)),
            ("a".to_owned(), status(TaskState::Starting, 4)),
        ];
        let out = coalesce(batch);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "a");
        assert_eq!(out[0].1.state, TaskState::Running);
        assert_eq!(out[0].1.timestamp, 3);
        assert_eq!(out[1].0, "b");
    }
}
