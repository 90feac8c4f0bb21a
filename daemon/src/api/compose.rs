//! `berth.v1.Compose`: the Compose verbs. Changes go through the controller as commands;
//! reads come from the applied state joined with this node's container records; logs, top,
//! kill and wait act on this node's containers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_api::v1::compose_server::Compose;
use berth_api::v1::service_change::Change;
use berth_api::v1::{self, Action};
use berth_controller::store::{self, AppSpec, Command, DesiredState, State, Task, TaskState};
use berth_node_agent::container::{LogOptions, Record};
use indexmap::IndexMap;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::{self, LABEL_ONEOFF, LABEL_PROJECT, LABEL_SERVICE, LABEL_TASK};
use super::{Node, status};
use crate::controller::now_ms;

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// How long `down`, `stop` and `restart` wait for tasks to stop beyond their grace period.
const STOP_SLACK: Duration = Duration::from_secs(30);

pub struct ComposeService {
    node: Arc<Node>,
}

impl ComposeService {
    pub fn new(node: Arc<Node>) -> Self {
        ComposeService { node }
    }

    fn app(&self, project: &str) -> Result<AppSpec, Status> {
        if project.is_empty() {
            return Err(Status::invalid_argument("no project name given"));
        }
        self.node
            .controller
            .read(|s| s.apps.get(project).map(|a| a.spec.clone()))
            .ok_or_else(|| Status::not_found(format!("no project named {project:?}")))
    }

    /// The services named, or all of them; an unknown name is an error.
    fn select(&self, app: &AppSpec, services: &[String]) -> Result<Vec<String>, Status> {
        if services.is_empty() {
            return Ok(app.services.keys().cloned().collect());
        }
        for s in services {
            if !app.services.contains_key(s) {
                return Err(Status::not_found(format!(
                    "project {:?} has no service {s:?}",
                    app.name
                )));
            }
        }
        Ok(services.to_vec())
    }

    /// This node's containers of `project` (all services, or those in `services`).
    async fn records(&self, project: &str, services: &[String]) -> Result<Vec<Record>, Status> {
        project_records(self.node.agent.containers().clone(), project, services).await
    }

    /// Waits until `done` holds on the applied state, or the deadline.
    async fn wait_until(
        &self,
        deadline: Duration,
        mut done: impl FnMut(&State) -> bool,
    ) -> Result<(), Status> {
        let mut changes = self.node.controller.watch();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            changes.borrow_and_update();
            if self.node.controller.read(&mut done) {
                return Ok(());
            }
            if tokio::time::timeout_at(until, changes.changed())
                .await
                .is_err()
            {
                return Err(Status::deadline_exceeded(
                    "timed out waiting for the tasks to stop",
                ));
            }
        }
    }

    /// How long stopping `services` may take: the agent stops them in reverse dependency
    /// waves, each container with `timeout` (else its own `stop_grace_period`), so in the
    /// worst case (a chain of containers that ignore the stop signal) one after another.
    fn grace(app: &AppSpec, services: &[String], timeout: Option<u32>) -> Duration {
        let timeout = timeout.map(|t| u64::from(t) * 1000);
        let total: u64 = services
            .iter()
            .filter_map(|s| app.services.get(s))
            .map(|s| timeout.unwrap_or(s.stop_grace_period))
            .sum();
        Duration::from_millis(total) + STOP_SLACK
    }

    /// Records `timeout` (`-t`) on the current tasks of `services` of `app` (all services
    /// when `None`); without one they stop with their grace period. Committed before the
    /// stop is proposed, so whichever agent acts on the stop (this one, or the one of a
    /// daemon restarted in the middle) sees it. Nothing is proposed when no task changes.
    async fn stop_timeout(
        &self,
        app: &str,
        services: Option<&BTreeSet<String>>,
        timeout: Option<u32>,
    ) -> Result<(), Status> {
        let timeout_ms = timeout.map(|t| u64::from(t) * 1000);
        let tasks = self.tasks_where(app, services, |t| t.stop_timeout_ms != timeout_ms);
        self.set_stop_timeout(tasks, timeout_ms).await
    }

    async fn set_stop_timeout(
        &self,
        tasks: Vec<String>,
        timeout_ms: Option<u64>,
    ) -> Result<(), Status> {
        if tasks.is_empty() {
            return Ok(());
        }
        self.node
            .controller
            .propose(Command::SetStopTimeout { tasks, timeout_ms })
            .await
            .map_err(status)?;
        Ok(())
    }

    /// `down`: the timeout each task of `services` of `app` (all when `None`) stops with —
    /// `-t`, else its service's `stop_grace_period` — recorded on the task before the
    /// services leave the app. Their part of the document goes with them, so an agent that
    /// acts on the stop after a daemon restart could no longer learn the grace period.
    async fn pin_stop_timeouts(
        &self,
        app: &AppSpec,
        services: Option<&BTreeSet<String>>,
        timeout: Option<u32>,
    ) -> Result<(), Status> {
        if timeout.is_some() {
            return self.stop_timeout(&app.name, services, timeout).await;
        }
        let mut by_grace: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for (name, service) in &app.services {
            if services.is_some_and(|set| !set.contains(name)) {
                continue;
            }
            by_grace
                .entry(service.stop_grace_period)
                .or_default()
                .insert(name.clone());
        }
        for (grace, services) in by_grace {
            let tasks = self.tasks_where(&app.name, Some(&services), |t| {
                t.stop_timeout_ms != Some(grace)
            });
            self.set_stop_timeout(tasks, Some(grace)).await?;
        }
        Ok(())
    }

    /// Records on the current tasks of `services` of `app` (all when `None`) whether they
    /// keep their anonymous volumes once removed: Compose's `rm` and `down` keep them
    /// unless `-v`. Committed before the removal is proposed, like [`Self::stop_timeout`].
    async fn keep_volumes(
        &self,
        app: &str,
        services: Option<&BTreeSet<String>>,
        keep: bool,
    ) -> Result<(), Status> {
        let tasks = self.tasks_where(app, services, |t| t.keep_volumes != keep);
        self.set_keep_volumes(tasks, keep).await
    }

    async fn set_keep_volumes(&self, tasks: Vec<String>, keep: bool) -> Result<(), Status> {
        if tasks.is_empty() {
            return Ok(());
        }
        self.node
            .controller
            .propose(Command::SetKeepVolumes { tasks, keep })
            .await
            .map_err(status)?;
        Ok(())
    }

    /// The ids of the tasks of `services` of `app` (all when `None`) for which `wanted`.
    fn tasks_where(
        &self,
        app: &str,
        services: Option<&BTreeSet<String>>,
        wanted: impl Fn(&Task) -> bool,
    ) -> Vec<String> {
        self.node.controller.read(|s| {
            s.tasks
                .values()
                .filter(|t| t.app == app && services.is_none_or(|set| set.contains(&t.service)))
                .filter(|t| wanted(t))
                .map(|t| t.id.clone())
                .collect()
        })
    }

    async fn stop_services(
        &self,
        app: &AppSpec,
        services: &[String],
        timeout: Option<u32>,
    ) -> Result<(), Status> {
        let set: BTreeSet<String> = services.iter().cloned().collect();
        self.stop_timeout(&app.name, Some(&set), timeout).await?;
        {
            // every service's stop is recorded before the agent signals any container:
            // it then stops them together, in reverse dependency waves
            let _hold = self.node.dispatcher.hold();
            for service in services {
                self.node
                    .controller
                    .propose(Command::StopService {
                        app: app.name.clone(),
                        service: service.clone(),
                    })
                    .await
                    .map_err(status)?;
                self.node.events.app("stop", &app.name, service);
            }
        }
        let name = app.name.clone();
        self.wait_until(Self::grace(app, services, timeout), move |s| {
            s.tasks
                .values()
                .all(|t| t.app != name || !set.contains(&t.service) || t.status.state.is_terminal())
        })
        .await
    }
}

/// How long `start` and `restart` wait for the services to run (dependencies that must
/// become healthy first may take a while).
const START_WAIT: Duration = Duration::from_secs(300);

impl ComposeService {
    /// After `StartService`: waits until every live task of `services` runs or has ended,
    /// or is held for a dependency that will not come (outside `services` and not running),
    /// so `start` returns once the containers run, as Compose's does.
    async fn wait_started(&self, app: &AppSpec, services: &[String]) -> Result<(), Status> {
        let set: BTreeSet<String> = services.iter().cloned().collect();
        let spec = app.clone();
        self.wait_until(START_WAIT, move |s| {
            let up = |service: &str| {
                s.tasks.values().any(|t| {
                    t.app == spec.name
                        && t.service == service
                        && matches!(t.status.state, TaskState::Running | TaskState::Complete)
                })
            };
            let stuck = |service: &str| {
                spec.services.get(service).is_some_and(|svc| {
                    svc.depends_on.keys().any(|dep| {
                        !set.contains(dep) && spec.services.contains_key(dep) && !up(dep)
                    })
                })
            };
            s.tasks
                .values()
                .filter(|t| t.app == spec.name && set.contains(&t.service) && t.is_live())
                .all(|t| {
                    t.status.state == TaskState::Running
                        || t.status.state.is_terminal()
                        || (t.desired == DesiredState::Ready
                            && t.waiting_for.is_some()
                            && stuck(&t.service))
                })
        })
        .await
        .map_err(|_| Status::deadline_exceeded("timed out waiting for the services to start"))
    }

    /// `down` without `--remove-orphans` while the app has services the file no longer
    /// names: the file's services go, the orphans stay deployed (and so do the networks
    /// and volumes they may use).
    async fn remove_keeping(
        &self,
        app: &AppSpec,
        orphans: &[String],
        request: &v1::RemoveRequest,
    ) -> Result<Response<v1::RemoveResponse>, Status> {
        let gone: Vec<String> = app
            .services
            .keys()
            .filter(|n| !orphans.contains(n))
            .cloned()
            .collect();
        let containers: Vec<String> = self
            .records(&app.name, &gone)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let gone_set: BTreeSet<String> = gone.iter().cloned().collect();
        self.pin_stop_timeouts(app, Some(&gone_set), request.timeout_seconds)
            .await?;
        self.keep_volumes(&app.name, Some(&gone_set), !request.remove_volumes)
            .await?;
        let mut kept = app.clone();
        kept.services.retain(|n, _| orphans.contains(n));
        if let Some(services) = kept
            .document
            .get_mut("services")
            .and_then(|s| s.as_object_mut())
        {
            services.retain(|n, _| orphans.contains(n));
        }
        self.node
            .controller
            .propose(Command::DeployApp(kept))
            .await
            .map_err(status)?;
        let name = app.name.clone();
        let set: BTreeSet<String> = gone.iter().cloned().collect();
        self.wait_until(Self::grace(app, &gone, request.timeout_seconds), move |s| {
            !s.tasks
                .values()
                .any(|t| t.app == name && set.contains(&t.service))
        })
        .await?;
        self.remove_one_offs(&app.name, &gone, request.timeout_seconds)
            .await?;
        let deadline = tokio::time::Instant::now() + STOP_SLACK;
        while !self.records(&app.name, &gone).await?.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "containers of project {:?} are still present",
                    app.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let orphan_containers = self
            .records(&app.name, orphans)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        self.node.events.app("remove", &app.name, "");
        Ok(Response::new(v1::RemoveResponse {
            containers,
            orphans: orphans.to_vec(),
            orphan_containers,
            ..Default::default()
        }))
    }

    /// `run`'s one-off containers of `services` of `project` (all when empty) on this node
    /// are stopped (with `-t`, else 10 s) and removed: Compose's `down` takes them with the
    /// project, and the networks they joined cannot go before them.
    async fn remove_one_offs(
        &self,
        project: &str,
        services: &[String],
        timeout: Option<u32>,
    ) -> Result<(), Status> {
        let one_offs: Vec<Record> = self
            .records(project, services)
            .await?
            .into_iter()
            .filter(|r| {
                !r.labels.contains_key(LABEL_TASK)
                    && r.labels.get(LABEL_ONEOFF).map(String::as_str) == Some("True")
            })
            .collect();
        if one_offs.is_empty() {
            return Ok(());
        }
        let containers = self.node.agent.containers().clone();
        let grace = Duration::from_secs(timeout.map_or(10, u64::from));
        tokio::task::spawn_blocking(move || {
            for r in one_offs {
                containers
                    .stop(&r.id, grace)
                    .and_then(|_| containers.remove(&r.id, true))
                    .map_err(|e| Status::internal(format!("container {}: {e}", r.name)))?;
            }
            Ok::<_, Status>(())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }

    /// The end of every `down` of a whole project, and of one a restart cut short
    /// (`crate::takedown`): the project's one-off containers are stopped (`timeout`, else
    /// 10 s) and removed, the agent's removal of the containers of its tasks (`tasks`, gone
    /// from the state) is waited for, then the project's networks (and volumes) go.
    /// Answers the networks and volumes removed.
    pub(crate) async fn finish_down(
        &self,
        project: &str,
        tasks: &BTreeSet<String>,
        remove_volumes: bool,
        timeout: Option<u32>,
    ) -> Result<(Vec<String>, Vec<String>), Status> {
        self.remove_one_offs(project, &[], timeout).await?;
        let deadline = tokio::time::Instant::now() + STOP_SLACK;
        loop {
            if self.records(project, &[]).await?.is_empty() && !self.node.agent.holds_any(tasks) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(format!(
                    "containers of project {project:?} are still present"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.node
            .agent
            .remove_project(project, remove_volumes)
            .await
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// For finishing an interrupted `down` of `project` (its app and tasks gone from the
    /// state): `None` while this node still has containers of its tasks; else the tasks
    /// the worker holds that the state no longer knows (their containers being removed).
    pub(crate) async fn down_leftovers(
        &self,
        project: &str,
    ) -> Result<Option<BTreeSet<String>>, Status> {
        let task_containers = self
            .records(project, &[])
            .await?
            .iter()
            .any(|r| r.labels.contains_key(LABEL_TASK));
        if task_containers {
            return Ok(None);
        }
        let held = self.node.agent.held();
        Ok(Some(self.node.controller.read(|s| {
            held.into_iter()
                .filter(|id| !s.tasks.contains_key(id))
                .collect()
        })))
    }

    /// `rm`: the stopped containers of `services` go (their tasks are removed); the
    /// services stay stopped until `start` or `up` makes new ones.
    async fn remove_stopped(
        &self,
        app: &AppSpec,
        services: &[String],
        remove_volumes: bool,
    ) -> Result<Vec<String>, Status> {
        let set: BTreeSet<String> = services.iter().cloned().collect();
        let name = app.name.clone();
        let doomed: Vec<(String, String)> = self.node.controller.read(|s| {
            s.tasks
                .values()
                .filter(|t| t.app == name && set.contains(&t.service))
                .filter(|t| t.status.state.is_terminal() && t.desired != DesiredState::Remove)
                .map(|t| (t.id.clone(), t.service.clone()))
                .collect()
        });
        let records = convert::by_task(self.records(&app.name, services).await?, &app.name);
        let removed: Vec<String> = doomed
            .iter()
            .filter_map(|(id, _)| records.get(id).map(|r| r.name.clone()))
            .collect();
        // A service whose containers ended on their own is marked stopped first, so that
        // removing its tasks does not make the orchestrator start new ones.
        let touched: BTreeSet<&String> = doomed.iter().map(|(_, s)| s).collect();
        for service in touched {
            let running = self.node.controller.read(|s| {
                s.tasks.values().any(|t| {
                    t.app == name && &t.service == service && !t.status.state.is_terminal()
                })
            });
            if !running {
                self.node
                    .controller
                    .propose(Command::StopService {
                        app: name.clone(),
                        service: service.clone(),
                    })
                    .await
                    .map_err(status)?;
            }
        }
        if doomed.is_empty() {
            return Ok(removed);
        }
        let ids: BTreeSet<String> = doomed.into_iter().map(|(id, _)| id).collect();
        self.set_keep_volumes(ids.iter().cloned().collect(), !remove_volumes)
            .await?;
        self.node
            .controller
            .propose(Command::SetDesired(
                ids.iter()
                    .map(|id| (id.clone(), DesiredState::Remove))
                    .collect(),
            ))
            .await
            .map_err(status)?;
        let watched = ids.clone();
        self.wait_until(STOP_SLACK, move |s| {
            !watched.iter().any(|id| s.tasks.contains_key(id))
        })
        .await?;
        let deadline = tokio::time::Instant::now() + STOP_SLACK;
        loop {
            let left = self
                .records(&app.name, services)
                .await?
                .into_iter()
                .any(|r| r.labels.get(LABEL_TASK).is_some_and(|t| ids.contains(t)))
                || self.node.agent.holds_any(&ids);
            if !left {
                return Ok(removed);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(
                    "the stopped containers are still present",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pause` / `unpause`: freezes or thaws the cgroups of the services' running
    /// containers through the runtime (cgroup v1 freezer or v2 `cgroup.freeze`).
    async fn freeze(
        &self,
        app: &AppSpec,
        services: &[String],
        on: bool,
    ) -> Result<Vec<String>, Status> {
        let run_root = self.node.agent.containers().config().run_root.clone();
        let running: Vec<Record> = self
            .records(&app.name, services)
            .await?
            .into_iter()
            .filter(|r| r.state.status == berth_node_agent::container::Status::Running)
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut names = Vec::new();
            for r in running {
                if convert::is_paused(&run_root, &r.id) == on {
                    continue;
                }
                let result = if on {
                    berth_runtime::ops::pause(&run_root, &r.id)
                } else {
                    berth_runtime::ops::resume(&run_root, &r.id)
                };
                result.map_err(|e| Status::internal(format!("container {}: {e}", r.name)))?;
                names.push(r.name);
            }
            Ok::<_, Status>(names)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }
}

/// This node's containers of `project` (all services, or those in `services`), by name.
async fn project_records(
    containers: berth_node_agent::container::Containers,
    project: &str,
    services: &[String],
) -> Result<Vec<Record>, Status> {
    let project = project.to_owned();
    let services: BTreeSet<String> = services.iter().cloned().collect();
    tokio::task::spawn_blocking(move || {
        let mut records = containers
            .records()
            .map_err(|e| Status::internal(e.to_string()))?;
        records.retain(|r| {
            r.labels.get(LABEL_PROJECT) == Some(&project)
                && (services.is_empty()
                    || r.labels
                        .get(LABEL_SERVICE)
                        .is_some_and(|s| services.contains(s)))
        });
        for r in &mut records {
            containers.observe(r);
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
}

/// The log followers of one `Logs` call: which containers are being read, and the time of
/// the last line sent from each (a container started again is read on from there).
#[derive(Clone, Default)]
struct Followers {
    state: Arc<std::sync::Mutex<HashMap<String, (bool, String)>>>,
}

impl Followers {
    fn active(&self, id: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.get(id).is_some_and(|(active, _)| *active)
    }

    fn idle(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.values().all(|(active, _)| !active)
    }

    /// Streams the container's log into `tx` on a blocking thread (the container layer
    /// reads and follows with blocking I/O).
    fn spawn(
        &self,
        containers: berth_node_agent::container::Containers,
        record: Record,
        mut options: LogOptions,
        until: Option<u64>,
        tx: mpsc::Sender<Result<v1::LogLine, Status>>,
    ) {
        let last = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let entry = state.entry(record.id.clone()).or_default();
            entry.0 = true;
            entry.1.clone()
        };
        if !last.is_empty() {
            options.since = Some(last.clone());
            options.tail = None;
        }
        let state = self.state.clone();
        let service = record
            .labels
            .get(LABEL_SERVICE)
            .cloned()
            .unwrap_or_default();
        let task_id = record.labels.get(LABEL_TASK).cloned().unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let mut seen = last;
            let result = containers.logs(&record.id, &options, |line| {
                if !seen.is_empty() && line.time.as_str() <= seen.as_str() {
                    return !tx.is_closed();
                }
                seen.clone_from(&line.time);
                let timestamp = crate::timefmt::parse_ms(&line.time).unwrap_or(0);
                if until.is_some_and(|u| timestamp > u) {
                    return !tx.is_closed();
                }
                let stream = match line.stream {
                    berth_shim::log::Stream::Stdout => v1::Stream::Stdout,
                    berth_shim::log::Stream::Stderr => v1::Stream::Stderr,
                };
                let text = line.log.strip_suffix('\n').unwrap_or(&line.log);
                tx.blocking_send(Ok(v1::LogLine {
                    container_name: record.name.clone(),
                    service: service.clone(),
                    stream: stream as i32,
                    timestamp,
                    line: text.as_bytes().to_vec(),
                    task_id: task_id.clone(),
                }))
                .is_ok()
            });
            match result {
                // a followed container can be removed under the reader (replaced after a
                // restart, scaled down): the others keep streaming
                Err(e) if options.follow => {
                    tracing::debug!(container = %record.id, error = %e, "log follower ended");
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
                }
                Ok(()) => {}
            }
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            state.insert(record.id.clone(), (false, seen));
        });
    }
}

/// The services `wanted` and, unless `no_deps`, everything they depend on.
fn with_dependencies(app: &AppSpec, wanted: &[String], no_deps: bool) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = wanted.iter().cloned().collect();
    if no_deps {
        return out;
    }
    let mut queue: Vec<String> = wanted.to_vec();
    while let Some(name) = queue.pop() {
        if let Some(service) = app.services.get(&name) {
            for dep in service.depends_on.keys() {
                if app.services.contains_key(dep) && out.insert(dep.clone()) {
                    queue.push(dep.clone());
                }
            }
        }
    }
    out
}

/// A forced recreation marks the hash with a suffix; the base hash is what `up` compares.
fn base_hash(hash: &str) -> &str {
    hash.split('~').next().unwrap_or(hash)
}

/// Builds the spec to deploy from the request and what is deployed now. Pure.
pub(crate) fn plan_deploy(
    request: &v1::DeployRequest,
    existing: Option<&AppSpec>,
    now: u64,
) -> Result<(AppSpec, Vec<v1::ServiceChange>), Status> {
    let options = request.options.clone().unwrap_or_default();
    if options.force_recreate && options.no_recreate {
        return Err(Status::invalid_argument(
            "--force-recreate and --no-recreate cannot be combined",
        ));
    }
    let mut app: berth_spec::App = serde_json::from_str(&request.app_json)
        .map_err(|e| Status::invalid_argument(format!("the app document does not parse: {e}")))?;
    if app.name.is_empty() {
        app.name = request.project.clone();
    }
    let scale: IndexMap<String, u32> = options.scale.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut spec = store::app_spec(&request.project, &app, &scale)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    spec.working_dir = request.working_dir.clone();
    spec.config_files = request.config_files.clone();
    if !options.pull.is_empty() {
        let valid = ["always", "missing", "never", "build", "if_not_present"];
        if !valid.contains(&options.pull.as_str()) {
            return Err(Status::invalid_argument(format!(
                "--pull {:?}: expected always, missing, never or build",
                options.pull
            )));
        }
        // After the hashes are taken: a pull override does not recreate anything.
        if let Some(services) = spec
            .document
            .get_mut("services")
            .and_then(|s| s.as_object_mut())
        {
            for service in services.values_mut() {
                if let Some(service) = service.as_object_mut() {
                    service.insert("pull_policy".into(), options.pull.clone().into());
                }
            }
        }
    }
    let selected = if options.services.is_empty() {
        None
    } else {
        for s in &options.services {
            if !spec.services.contains_key(s) {
                return Err(Status::not_found(format!("no such service: {s}")));
            }
        }
        Some(with_dependencies(&spec, &options.services, options.no_deps))
    };
    let mut changes = Vec::new();
    let names: Vec<String> = spec.services.keys().cloned().collect();
    for name in names {
        let old = existing.and_then(|e| e.services.get(&name));
        if let Some(selected) = &selected {
            if !selected.contains(&name) {
                // Not asked for: keep what runs, or leave it out.
                match old {
                    Some(old) => {
                        spec.services.insert(name.clone(), old.clone());
                    }
                    None => {
                        spec.services.shift_remove(&name);
                    }
                }
                continue;
            }
        }
        let service = spec.services.get_mut(&name).expect("listed above");
        let change = match old {
            None => Change::Created,
            Some(old) if options.force_recreate => {
                service.config_hash = format!("{}~{now:x}", service.config_hash);
                let _ = old;
                Change::Recreated
            }
            Some(old) if options.no_recreate => {
                service.config_hash = old.config_hash.clone();
                Change::Unchanged
            }
            Some(old) if base_hash(&old.config_hash) == service.config_hash => {
                service.config_hash = old.config_hash.clone();
                Change::Unchanged
            }
            Some(_) => Change::Recreated,
        };
        changes.push(v1::ServiceChange {
            service: name.clone(),
            change: change as i32,
            config_hash: service.config_hash.clone(),
            replicas: service.replicas,
        });
    }
    if let Some(existing) = existing {
        let orphans: Vec<&String> = existing
            .services
            .keys()
            .filter(|name| !spec.services.contains_key(*name))
            .collect();
        for name in orphans {
            if options.remove_orphans {
                changes.push(v1::ServiceChange {
                    service: name.clone(),
                    change: Change::Removed as i32,
                    config_hash: String::new(),
                    replicas: 0,
                });
            } else {
                // Compose keeps an orphan's containers unless told otherwise: the service
                // stays deployed as it was, with its part of the earlier document
                keep_orphan(&mut spec, existing, name);
            }
        }
    }
    Ok((spec, changes))
}

/// The services of `existing` that `spec` no longer has: the orphans.
pub(crate) fn orphans_of(spec: &AppSpec, existing: Option<&AppSpec>) -> Vec<String> {
    existing
        .map(|e| {
            e.services
                .keys()
                .filter(|n| !spec.services.contains_key(*n))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Carries service `name` of `existing` into `spec`: its spec, its entry in the document,
/// and the networks and volumes of the earlier document that the new one lacks (so its
/// container can still be recreated as it was).
fn keep_orphan(spec: &mut AppSpec, existing: &AppSpec, name: &str) {
    let Some(old) = existing.services.get(name) else {
        return;
    };
    spec.services.insert(name.to_owned(), old.clone());
    for section in ["services", "networks", "volumes"] {
        let Some(from) = existing.document.get(section).and_then(|v| v.as_object()) else {
            continue;
        };
        let Some(doc) = spec.document.as_object_mut() else {
            return;
        };
        let to = doc
            .entry(section)
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        let Some(to) = to.as_object_mut() else {
            continue;
        };
        for (key, value) in from {
            let wanted = if section == "services" {
                key == name
            } else {
                true
            };
            if wanted && !to.contains_key(key) {
                to.insert(key.clone(), value.clone());
            }
        }
    }
}

#[tonic::async_trait]
impl Compose for ComposeService {
    async fn deploy(
        &self,
        request: Request<v1::DeployRequest>,
    ) -> Result<Response<v1::DeployResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        if request.project.is_empty() {
            return Err(Status::invalid_argument("no project name given"));
        }
        let existing = self
            .node
            .controller
            .read(|s| s.apps.get(&request.project).map(|a| a.spec.clone()));
        let (spec, changes) = plan_deploy(&request, existing.as_ref(), now_ms())?;
        let options = request.options.unwrap_or_default();
        // The services no longer in the file: removed with `remove_orphans`, else kept
        // (and named, for the warning `up` prints).
        let orphans: Vec<String> = if options.remove_orphans {
            changes
                .iter()
                .filter(|c| c.change == Change::Removed as i32)
                .map(|c| c.service.clone())
                .collect()
        } else {
            let mut current = spec.clone();
            let file: BTreeSet<String> =
                serde_json::from_str::<serde_json::Value>(&request.app_json)
                    .ok()
                    .and_then(|v| {
                        v.get("services")?
                            .as_object()
                            .map(|o| o.keys().cloned().collect())
                    })
                    .unwrap_or_default();
            current.services.retain(|n, _| file.contains(n));
            orphans_of(&current, existing.as_ref())
        };
        // Services a `stop` left stopped start again (the same containers), in the same
        // command; `--no-start` creates without starting.
        if existing.is_some() {
            self.stop_timeout(&spec.name, None, options.timeout_seconds)
                .await?;
        }
        let command = if options.no_start {
            Command::DeployAppNoStart(spec.clone())
        } else {
            Command::DeployApp(spec.clone())
        };
        // Secrets and configs are sealed here: their contents never reach the log in clear.
        crate::cluster::files::propose_for_deploy(
            &self.node.controller,
            &self.node.data_root,
            &spec,
            request.files,
        )
        .await?;
        self.node
            .controller
            .propose(command)
            .await
            .map_err(status)?;
        self.node.events.app("deploy", &spec.name, "");
        Ok(Response::new(v1::DeployResponse {
            project: spec.name,
            services: changes,
            orphans,
        }))
    }

    async fn remove(
        &self,
        request: Request<v1::RemoveRequest>,
    ) -> Result<Response<v1::RemoveResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let project = request.project.clone();
        if project.is_empty() {
            return Err(Status::invalid_argument("no project name given"));
        }
        // one `down` of a project at a time here, the finishing of an interrupted one included
        let _claim = self
            .node
            .downs
            .claim(&project, STOP_SLACK)
            .await
            .ok_or_else(|| {
                Status::unavailable(format!("another down of project {project:?} is under way"))
            })?;
        let app = self
            .node
            .controller
            .read(|s| s.apps.get(&project).map(|a| a.spec.clone()));
        // a `down` cut short by a berthd restart, not finished yet: this one completes it
        let pending = self
            .node
            .controller
            .read(|s| s.takedowns.get(&project).cloned());
        if let Some(app) = &app {
            let orphans: Vec<String> = if request.remove_orphans || request.services.is_empty() {
                Vec::new()
            } else {
                app.services
                    .keys()
                    .filter(|n| !request.services.contains(n))
                    .cloned()
                    .collect()
            };
            if !orphans.is_empty() {
                return self.remove_keeping(app, &orphans, &request).await;
            }
        }
        let containers: Vec<String> = self
            .records(&project, &[])
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        // the worker lets go of a task once its container and volumes are dealt with
        let ids: BTreeSet<String> = self.node.controller.read(|s| {
            s.tasks
                .values()
                .filter(|t| t.app == project)
                .map(|t| t.id.clone())
                .collect()
        });
        if let Some(app) = &app {
            self.pin_stop_timeouts(app, None, request.timeout_seconds)
                .await?;
            self.keep_volumes(&app.name, None, !request.remove_volumes)
                .await?;
            // before the app goes: whichever berthd runs after a restart finishes the down
            self.node
                .controller
                .propose(Command::BeginTakedown {
                    app: project.clone(),
                    remove_volumes: request.remove_volumes,
                    timeout_seconds: request.timeout_seconds,
                })
                .await
                .map_err(status)?;
            self.node
                .controller
                .propose(Command::RemoveApp {
                    name: project.clone(),
                })
                .await
                .map_err(status)?;
            let services: Vec<String> = app.services.keys().cloned().collect();
            let name = project.clone();
            self.wait_until(
                Self::grace(app, &services, request.timeout_seconds),
                move |s| s.tasks.values().all(|t| t.app != name),
            )
            .await?;
        } else if pending.is_some() && !ids.is_empty() {
            // its tasks are still being stopped, with the timeouts that down pinned on them
            let longest = self.node.controller.read(|s| {
                s.tasks
                    .values()
                    .filter(|t| t.app == project)
                    .map(|t| t.stop_timeout_ms.unwrap_or(10_000))
                    .max()
                    .unwrap_or(0)
            });
            let name = project.clone();
            self.wait_until(Duration::from_millis(longest) + STOP_SLACK, move |s| {
                s.tasks.values().all(|t| t.app != name)
            })
            .await?;
        }
        let remove_volumes =
            request.remove_volumes || pending.as_ref().is_some_and(|t| t.remove_volumes);
        let timeout = request
            .timeout_seconds
            .or(pending.as_ref().and_then(|t| t.timeout_seconds));
        let (networks, volumes) = self
            .finish_down(&project, &ids, remove_volumes, timeout)
            .await?;
        if app.is_some() || pending.is_some() {
            self.node
                .controller
                .propose(Command::EndTakedown {
                    app: project.clone(),
                })
                .await
                .map_err(status)?;
        }
        if app.is_none()
            && pending.is_none()
            && containers.is_empty()
            && networks.is_empty()
            && volumes.is_empty()
        {
            return Err(Status::not_found(format!("no project named {project:?}")));
        }
        self.node.events.app("remove", &project, "");
        Ok(Response::new(v1::RemoveResponse {
            containers,
            networks,
            volumes,
            ..Default::default()
        }))
    }

    async fn scale(
        &self,
        request: Request<v1::ScaleRequest>,
    ) -> Result<Response<v1::ScaleResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        let wanted: Vec<String> = request.replicas.keys().cloned().collect();
        self.select(&app, &wanted)?;
        let mut services = Vec::new();
        for (service, replicas) in &request.replicas {
            self.node
                .controller
                .propose(Command::ScaleService {
                    app: app.name.clone(),
                    service: service.clone(),
                    replicas: *replicas,
                })
                .await
                .map_err(status)?;
            self.node.events.app("scale", &app.name, service);
            services.push(v1::ServiceChange {
                service: service.clone(),
                change: Change::Unchanged as i32,
                config_hash: app.services[service].config_hash.clone(),
                replicas: *replicas,
            });
        }
        Ok(Response::new(v1::ScaleResponse { services }))
    }

    async fn service_action(
        &self,
        request: Request<v1::ServiceActionRequest>,
    ) -> Result<Response<v1::ServiceActionResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        let services = self.select(&app, &request.services)?;
        let action = Action::try_from(request.action)
            .map_err(|_| Status::invalid_argument("unknown action"))?;
        let before: Vec<String> = self
            .records(&app.name, &services)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        match action {
            Action::Unspecified => return Err(Status::invalid_argument("no action given")),
            Action::Start => {
                for service in &services {
                    self.node
                        .controller
                        .propose(Command::StartService {
                            app: app.name.clone(),
                            service: service.clone(),
                        })
                        .await
                        .map_err(status)?;
                    self.node.events.app("start", &app.name, service);
                }
                self.wait_started(&app, &services).await?;
            }
            Action::Stop => {
                self.stop_services(&app, &services, request.timeout_seconds)
                    .await?
            }
            Action::Restart => {
                self.stop_services(&app, &services, request.timeout_seconds)
                    .await?;
                for service in &services {
                    self.node
                        .controller
                        .propose(Command::StartService {
                            app: app.name.clone(),
                            service: service.clone(),
                        })
                        .await
                        .map_err(status)?;
                    self.node.events.app("restart", &app.name, service);
                }
                self.wait_started(&app, &services).await?;
            }
            Action::Kill => {
                let signal = if request.signal.is_empty() {
                    "SIGKILL".to_owned()
                } else {
                    request.signal.clone()
                };
                let number = berth_node_agent::container::parse_signal(&signal)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let containers = self.node.agent.containers().clone();
                let running: Vec<Record> = self
                    .records(&app.name, &services)
                    .await?
                    .into_iter()
                    .filter(|r| r.state.status == berth_node_agent::container::Status::Running)
                    .collect();
                let names: Vec<String> = running.iter().map(|r| r.name.clone()).collect();
                tokio::task::spawn_blocking(move || {
                    for r in running {
                        containers
                            .kill(&r.id, number)
                            .map_err(|e| Status::internal(e.to_string()))?;
                    }
                    Ok::<_, Status>(())
                })
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
                return Ok(Response::new(v1::ServiceActionResponse {
                    containers: names,
                }));
            }
            Action::Pause | Action::Unpause => {
                let containers = self
                    .freeze(&app, &services, action == Action::Pause)
                    .await?;
                for service in &services {
                    let word = if action == Action::Pause {
                        "pause"
                    } else {
                        "unpause"
                    };
                    self.node.events.app(word, &app.name, service);
                }
                return Ok(Response::new(v1::ServiceActionResponse { containers }));
            }
            Action::Remove => {
                let containers = self
                    .remove_stopped(&app, &services, request.remove_volumes)
                    .await?;
                return Ok(Response::new(v1::ServiceActionResponse { containers }));
            }
        }
        Ok(Response::new(v1::ServiceActionResponse {
            containers: before,
        }))
    }

    async fn list_apps(
        &self,
        request: Request<v1::ListAppsRequest>,
    ) -> Result<Response<v1::ListAppsResponse>, Status> {
        self.node.metrics.api_requests.inc();
        self.node.controller.read_barrier().await.map_err(status)?;
        let all = request.into_inner().all;
        let apps = self.node.controller.read(|s| {
            s.apps
                .values()
                .map(|a| {
                    let mut counts: BTreeMap<&'static str, u32> = BTreeMap::new();
                    let mut tasks = 0;
                    for t in s
                        .tasks
                        .values()
                        .filter(|t| t.app == a.spec.name && (current(t) || kept_stopped(t)))
                    {
                        tasks += 1;
                        *counts.entry(compose_status(t.status.state)).or_default() += 1;
                    }
                    let running = counts.get("running").copied().unwrap_or(0);
                    let status = counts
                        .iter()
                        .map(|(k, v)| format!("{k}({v})"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    v1::AppSummary {
                        name: a.spec.name.clone(),
                        status,
                        config_files: a.spec.config_files.clone(),
                        working_dir: a.spec.working_dir.clone(),
                        services: a.spec.services.len() as u32,
                        running,
                        tasks,
                    }
                })
                .filter(|a| all || a.running > 0)
                .collect()
        });
        Ok(Response::new(v1::ListAppsResponse { apps }))
    }

    async fn ps(
        &self,
        request: Request<v1::PsRequest>,
    ) -> Result<Response<v1::PsResponse>, Status> {
        self.node.metrics.api_requests.inc();
        self.node.controller.read_barrier().await.map_err(status)?;
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        let services: BTreeSet<String> =
            self.select(&app, &request.services)?.into_iter().collect();
        let records = convert::by_task(self.records(&app.name, &[]).await?, &app.name);
        let tasks = self.node.controller.read(|s| {
            let mut tasks: Vec<&Task> = s
                .tasks
                .values()
                .filter(|t| t.app == app.name && services.contains(&t.service))
                .filter(|t| request.all || current(t))
                .collect();
            tasks.sort_by(|a, b| {
                (&a.service, a.slot, a.created_at).cmp(&(&b.service, b.slot, b.created_at))
            });
            tasks
                .into_iter()
                .map(|t| {
                    let image = app
                        .services
                        .get(&t.service)
                        .map(|s| s.image.as_str())
                        .unwrap_or("");
                    convert::task(t, image, records.get(&t.id))
                })
                .collect::<Vec<_>>()
        });
        let run_root = self.node.agent.containers().config().run_root.clone();
        let tasks = tokio::task::spawn_blocking(move || {
            let mut tasks = tasks;
            for t in &mut tasks {
                if t.container_status == "running" && convert::is_paused(&run_root, &t.container_id)
                {
                    t.container_status = "paused".into();
                }
            }
            tasks
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::PsResponse { tasks }))
    }

    type LogsStream = Streamed<v1::LogLine>;

    async fn logs(
        &self,
        request: Request<v1::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        let services = self.select(&app, &request.services)?;
        let records = self.records(&app.name, &services).await?;
        let (tx, rx) = mpsc::channel(256);
        let options = LogOptions {
            follow: request.follow,
            tail: request.tail.map(|n| n as usize),
            since: request.since.map(crate::timefmt::format_ms),
        };
        let followers = Followers::default();
        for record in records {
            followers.spawn(
                self.node.agent.containers().clone(),
                record,
                options.clone(),
                request.until,
                tx.clone(),
            );
        }
        if request.follow {
            // Containers that appear later (scale up, a restart by policy, `start` after a
            // stop) are followed too, from their first line, until the client goes away or
            // the app is removed.
            let node = self.node.clone();
            let project = app.name.clone();
            let until = request.until;
            let since = options.since.clone();
            tokio::spawn(async move {
                let mut changes = node.controller.watch();
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        r = changes.changed() => if r.is_err() { return },
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    if node.controller.read(|s| !s.apps.contains_key(&project)) && followers.idle()
                    {
                        return;
                    }
                    let containers = node.agent.containers().clone();
                    let Ok(records) =
                        project_records(containers.clone(), &project, &services).await
                    else {
                        continue;
                    };
                    for record in records {
                        if record.state.status != berth_node_agent::container::Status::Running
                            || followers.active(&record.id)
                        {
                            continue;
                        }
                        let options = LogOptions {
                            follow: true,
                            tail: None,
                            since: since.clone(),
                        };
                        followers.spawn(containers.clone(), record, options, until, tx.clone());
                    }
                }
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type EventsStream = Streamed<v1::Event>;

    async fn events(
        &self,
        request: Request<v1::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let mut events = self.node.events.subscribe();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let event = match events.recv().await {
                    Ok(event) => event,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if !request.project.is_empty() && event.project != request.project {
                    continue;
                }
                if !request.services.is_empty() && !request.services.contains(&event.service) {
                    continue;
                }
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn top(
        &self,
        request: Request<v1::TopRequest>,
    ) -> Result<Response<v1::TopResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        let services = self.select(&app, &request.services)?;
        let records: Vec<Record> = self
            .records(&app.name, &services)
            .await?
            .into_iter()
            .filter(|r| r.state.status == berth_node_agent::container::Status::Running)
            .collect();
        let containers = self.node.agent.containers().clone();
        let out = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for r in records {
                let Ok(processes) = containers.top(&r.id) else {
                    continue; // it stopped meanwhile
                };
                out.push(v1::ContainerProcesses {
                    container_name: r.name.clone(),
                    service: r.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
                    titles: ["UID", "PID", "PPID", "CMD"].map(String::from).to_vec(),
                    processes: processes
                        .into_iter()
                        .map(|p| v1::ProcessRow {
                            fields: vec![
                                p.uid.to_string(),
                                p.pid.to_string(),
                                p.ppid.to_string(),
                                p.command,
                            ],
                        })
                        .collect(),
                });
            }
            out
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::TopResponse { containers: out }))
    }

    async fn port(
        &self,
        request: Request<v1::PortRequest>,
    ) -> Result<Response<v1::PortResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        self.select(&app, std::slice::from_ref(&request.service))?;
        let protocol = if request.protocol.is_empty() {
            "tcp".to_owned()
        } else {
            request.protocol.clone()
        };
        let index = request.index.max(1);
        let records = self
            .records(&app.name, std::slice::from_ref(&request.service))
            .await?;
        let record = records
            .iter()
            .find(|r| {
                r.labels
                    .get("com.docker.compose.container-number")
                    .and_then(|n| n.parse::<u32>().ok())
                    == Some(index)
            })
            .or_else(|| records.get(index as usize - 1))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "service {:?} has no container number {index}",
                    request.service
                ))
            })?;
        let bindings: Vec<v1::PortBinding> = convert::ports(record)
            .into_iter()
            .filter(|p| p.container_port == request.private_port && p.protocol == protocol)
            .collect();
        if bindings.is_empty() {
            return Err(Status::not_found(format!(
                "no port {}/{protocol} is published for {}",
                request.private_port, record.name
            )));
        }
        Ok(Response::new(v1::PortResponse { bindings }))
    }

    async fn images(
        &self,
        request: Request<v1::ImagesRequest>,
    ) -> Result<Response<v1::ImagesResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        let services = self.select(&app, &request.services)?;
        let images = self
            .records(&app.name, &services)
            .await?
            .into_iter()
            .map(|r| v1::ImageUsage {
                container_name: r.name.clone(),
                service: r.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
                reference: r.image.clone(),
                image_id: r.image_id.clone(),
                size: 0,
            })
            .collect();
        Ok(Response::new(v1::ImagesResponse { images }))
    }

    async fn prepare_run(
        &self,
        request: Request<v1::PrepareRunRequest>,
    ) -> Result<Response<v1::PrepareRunResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        if request.project.is_empty() {
            return Err(Status::invalid_argument("no project name given"));
        }
        let mut app: berth_spec::App = serde_json::from_str(&request.app_json).map_err(|e| {
            Status::invalid_argument(format!("the app document does not parse: {e}"))
        })?;
        // the project as `up` names it, so the networks and volumes are the same ones
        app.name = request.project.clone();
        // a `down` a restart cut short must not take the networks this run is given
        let pending = self
            .node
            .controller
            .read(|s| s.takedowns.contains_key(&app.name));
        if pending {
            let _claim = self
                .node
                .downs
                .claim(&app.name, STOP_SLACK)
                .await
                .ok_or_else(|| Status::unavailable("a down of the project is under way"))?;
            self.node
                .controller
                .propose(Command::EndTakedown {
                    app: app.name.clone(),
                })
                .await
                .map_err(status)?;
        }
        if !app.services.contains_key(&request.service) {
            return Err(Status::not_found(format!(
                "no such service: {}",
                request.service
            )));
        }
        let warnings = self
            .node
            .agent
            .prepare_one_off(
                Arc::new(app),
                &request.service,
                &request.working_dir,
                &request.config_files,
            )
            .await
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(v1::PrepareRunResponse { warnings }))
    }

    async fn wait(
        &self,
        request: Request<v1::WaitRequest>,
    ) -> Result<Response<v1::WaitResponse>, Status> {
        self.node.metrics.api_requests.inc();
        let request = request.into_inner();
        let app = self.app(&request.project)?;
        let services: BTreeSet<String> =
            self.select(&app, &request.services)?.into_iter().collect();
        let mut changes = self.node.controller.watch();
        // The tasks current at the start; the call answers when they have all ended.
        let watched: Vec<String> = self.node.controller.read(|s| {
            s.tasks
                .values()
                .filter(|t| t.app == app.name && services.contains(&t.service) && current(t))
                .map(|t| t.id.clone())
                .collect()
        });
        let exits = loop {
            changes.borrow_and_update();
            let done = self.node.controller.read(|s| {
                let mut exits = Vec::new();
                for id in &watched {
                    match s.tasks.get(id) {
                        Some(t) if !t.status.state.is_terminal() => return None,
                        Some(t) => exits.push((t.clone(), t.status.exit_code.unwrap_or(-1))),
                        None => {}
                    }
                }
                Some(exits)
            });
            if let Some(exits) = done {
                break exits;
            }
            if changes.changed().await.is_err() {
                return Err(Status::unavailable("the daemon is shutting down"));
            }
        };
        let names: HashMap<String, Record> =
            convert::by_task(self.records(&app.name, &[]).await?, &app.name);
        let exits = exits
            .into_iter()
            .map(|(t, code)| v1::ContainerExit {
                container_name: names
                    .get(&t.id)
                    .map(|r| r.name.clone())
                    .unwrap_or_else(|| format!("{}-{}-{}", t.app, t.service, t.slot.unwrap_or(0))),
                service: t.service.clone(),
                exit_code: code,
            })
            .collect();
        if request.down_project {
            self.remove(Request::new(v1::RemoveRequest {
                project: app.name.clone(),
                ..v1::RemoveRequest::default()
            }))
            .await?;
        }
        Ok(Response::new(v1::WaitResponse { exits }))
    }
}

/// The task a slot currently stands for: wanted, or not yet stopped.
fn current(t: &Task) -> bool {
    t.is_live() || (!t.status.state.is_terminal() && t.desired != DesiredState::Remove)
}

/// A task a `stop` shut down: its container is kept, and counts as `exited` in `ls`.
fn kept_stopped(t: &Task) -> bool {
    t.stopped_by_user && t.desired == DesiredState::Shutdown
}

/// Compose's words for a container's state in `ls`.
fn compose_status(state: TaskState) -> &'static str {
    match state {
        TaskState::Running => "running",
        TaskState::Complete | TaskState::Failed | TaskState::Shutdown => "exited",
        TaskState::Rejected | TaskState::Orphaned => "dead",
        _ => "created",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(app: serde_json::Value, options: v1::DeployOptions) -> v1::DeployRequest {
        v1::DeployRequest {
            project: "p".into(),
            app_json: app.to_string(),
            working_dir: "/src".into(),
            config_files: vec!["/src/compose.yaml".into()],
            options: Some(options),
            files: Default::default(),
        }
    }

    fn change(changes: &[v1::ServiceChange], service: &str) -> Change {
        let c = changes.iter().find(|c| c.service == service).unwrap();
        Change::try_from(c.change).unwrap()
    }

    #[test]
    fn deploy_plans_converge_by_hash() {
        let one =
            serde_json::json!({"services": {"a": {"image": "busybox"}, "b": {"image": "busybox"}}});
        let (first, changes) = plan_deploy(&request(one, Default::default()), None, 1).unwrap();
        assert_eq!(change(&changes, "a"), Change::Created);
        assert_eq!(first.working_dir, "/src");

        let two = serde_json::json!({"services": {"a": {"image": "busybox", "command": ["true"]},
                                                  "b": {"image": "busybox"}}});
        let (second, changes) =
            plan_deploy(&request(two.clone(), Default::default()), Some(&first), 2).unwrap();
        assert_eq!(change(&changes, "a"), Change::Recreated);
        assert_eq!(change(&changes, "b"), Change::Unchanged);

        let force = v1::DeployOptions {
            force_recreate: true,
            ..Default::default()
        };
        let (forced, changes) =
            plan_deploy(&request(two.clone(), force), Some(&second), 3).unwrap();
        assert_eq!(change(&changes, "b"), Change::Recreated);
        assert_ne!(
            forced.services["b"].config_hash,
            second.services["b"].config_hash
        );
        // The next plain `up` keeps the forced hash: nothing is recreated again.
        let (after, changes) =
            plan_deploy(&request(two.clone(), Default::default()), Some(&forced), 4).unwrap();
        assert_eq!(change(&changes, "b"), Change::Unchanged);
        assert_eq!(
            after.services["b"].config_hash,
            forced.services["b"].config_hash
        );

        // b is an orphan: kept as it was (spec and document), unless remove_orphans
        let three = serde_json::json!({"services": {"a": {"image": "busybox"}}});
        let (kept, changes) =
            plan_deploy(&request(three.clone(), Default::default()), Some(&after), 5).unwrap();
        assert!(changes.iter().all(|c| c.service != "b"), "{changes:?}");
        assert_eq!(kept.services["b"], after.services["b"]);
        assert_eq!(
            kept.document["services"]["b"],
            after.document["services"]["b"]
        );
        assert_eq!(orphans_of(&after, Some(&kept)), Vec::<String>::new());
        let remove = v1::DeployOptions {
            remove_orphans: true,
            ..Default::default()
        };
        let (gone, changes) = plan_deploy(&request(three, remove), Some(&after), 6).unwrap();
        assert_eq!(change(&changes, "b"), Change::Removed);
        assert!(!gone.services.contains_key("b"));
        assert_eq!(orphans_of(&gone, Some(&after)), ["b"]);
    }

    #[test]
    fn deploy_options_select_and_override() {
        let app = serde_json::json!({"services": {
            "db": {"image": "busybox"},
            "web": {"image": "busybox", "depends_on": ["db"]},
            "other": {"image": "busybox"}
        }});
        let only_web = v1::DeployOptions {
            services: vec!["web".into()],
            scale: [("web".to_owned(), 3)].into(),
            pull: "never".into(),
            ..Default::default()
        };
        let (spec, _) = plan_deploy(&request(app.clone(), only_web), None, 1).unwrap();
        let names: Vec<&String> = spec.services.keys().collect();
        assert_eq!(names, ["db", "web"]);
        assert_eq!(spec.services["web"].replicas, 3);
        assert_eq!(spec.document["services"]["db"]["pull_policy"], "never");

        let no_deps = v1::DeployOptions {
            services: vec!["web".into()],
            no_deps: true,
            ..Default::default()
        };
        let (spec, _) = plan_deploy(&request(app.clone(), no_deps), None, 1).unwrap();
        assert_eq!(spec.services.keys().collect::<Vec<_>>(), ["web"]);

        let bad = v1::DeployOptions {
            services: vec!["nope".into()],
            ..Default::default()
        };
        assert_eq!(
            plan_deploy(&request(app.clone(), bad), None, 1)
                .unwrap_err()
                .code(),
            tonic::Code::NotFound
        );
        let err = plan_deploy(
            &v1::DeployRequest {
                app_json: "{".into(),
                ..request(app, Default::default())
            },
            None,
            1,
        )
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
