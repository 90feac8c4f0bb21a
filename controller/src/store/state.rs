//! The store's contents and the deterministic application of commands to them; the
//! [`StateMachine`] the Raft member drives.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::app::{AppSpec, Mode, ServiceSpec};
use super::command::{Applied, ApplyError, Command, UpdateState};
use super::node::Node;
use super::restart::RestartCondition;
use super::task::{DesiredState, NodeId, Task, TaskId, TaskState, TaskStatus, Timestamp};
use crate::raft_node::StateMachine;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub apps: BTreeMap<String, AppRecord>,
    pub nodes: BTreeMap<NodeId, Node>,
    pub tasks: BTreeMap<TaskId, Task>,
    /// The cluster's CA and join secrets once `cluster init` ran; absent on a lone node.
    #[serde(default)]
    pub cluster: Option<ClusterSecrets>,
    /// Overlay networks of a cluster: VNIs, subnets, task addresses.
    #[serde(default)]
    pub overlay: super::overlay::OverlayState,
    /// Each app's sealed secrets and configs, by app name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, AppFiles>,
    /// The deny list: node id → when it was removed (ms since the epoch); its certificates
    /// issued before then are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked: BTreeMap<NodeId, Timestamp>,
    /// Stored secrets (`berth secret create`) by name, each value sealed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, super::secret::StoredSecret>,
    /// `down`s begun and not finished, by app name: once the app and its tasks are gone,
    /// the node removes the project's networks (and volumes) and ends the takedown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub takedowns: BTreeMap<String, Takedown>,
}

/// What a pending `down` still has to do after the app's containers are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takedown {
    /// `-v`: the project's volumes go too.
    #[serde(default)]
    pub remove_volumes: bool,
    /// `-t`, for the project's one-off containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

/// An app's Compose secrets and configs by top-level key, each sealed by the daemon with
/// the managers' key (opaque text to the store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppFiles {
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Secrets the app takes from the stored ones, by top-level key; applying the command
    /// copies their sealed values into `secrets`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external: BTreeMap<String, super::secret::ExternalSecret>,
}

/// What managers need to admit nodes, replicated with the rest of the state. The CA key and
/// the join secrets are sealed with a key only managers hold: workers replicate the log too
/// (as learners) and must not be able to mint certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSecrets {
    /// The root certificate, PEM (public).
    pub ca_cert_pem: String,
    /// The sealed CA key and join secrets (opaque to the store).
    pub sealed: String,
}

/// An app's current spec plus what the controller remembers about each service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub spec: AppSpec,
    pub services: BTreeMap<String, ServiceRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The spec the current one replaced: the target of a rollback.
    pub previous: Option<ServiceSpec>,
    pub update: UpdateState,
    /// The user stopped the service; nothing is restarted until it is started again.
    pub stopped_by_user: bool,
    /// Deployed with `up --no-start`: its new tasks are created (containers made) and held
    /// before their start until `StartService`.
    #[serde(default)]
    pub created_only: bool,
    /// The Compose definition (the service's entry in the app document) that went with
    /// `previous`: agents build containers from the document, so a rollback must put it
    /// back too, or the rolled-back tasks would run the failed definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_document: Option<serde_json::Value>,
}

type Outcome = Result<Applied, ApplyError>;

/// The most replicas one service may ask for: the orchestrator walks every slot on each
/// pass, so an absurd count must be refused rather than exhaust memory.
pub const MAX_REPLICAS: u32 = 100_000;

fn check_replicas(app: &str, service: &str, replicas: u32) -> Result<(), ApplyError> {
    if replicas > MAX_REPLICAS {
        return Err(ApplyError::TooManyReplicas {
            app: app.to_owned(),
            service: service.to_owned(),
            replicas,
            max: MAX_REPLICAS,
        });
    }
    Ok(())
}

impl State {
    pub fn service(&self, app: &str, service: &str) -> Option<&ServiceSpec> {
        self.apps.get(app)?.spec.services.get(service)
    }

    pub fn service_record(&self, app: &str, service: &str) -> Option<&ServiceRecord> {
        self.apps.get(app)?.services.get(service)
    }

    /// The pending `down`s whose app and tasks are all gone from the state: only what the
    /// nodes hold (containers being removed, networks, volumes) is left of them.
    pub fn takedowns_ready(&self) -> Vec<(String, Takedown)> {
        self.takedowns
            .iter()
            .filter(|(app, _)| {
                !self.apps.contains_key(*app) && !self.tasks.values().any(|t| &t.app == *app)
            })
            .map(|(app, t)| (app.clone(), t.clone()))
            .collect()
    }

    /// Applies one command; on error the state is unchanged.
    pub fn apply_command(&mut self, command: Command) -> Outcome {
        match command {
            Command::DeployApp(spec) => self.deploy(spec, false),
            Command::DeployAppNoStart(spec) => self.deploy(spec, true),
            Command::RemoveApp { name } => match self.apps.remove(&name) {
                Some(_) => {
                    self.files.remove(&name);
                    Ok(Applied::changed(1))
                }
                None => Err(ApplyError::UnknownApp { app: name }),
            },
            Command::ScaleService {
                app,
                service,
                replicas,
            } => {
                check_replicas(&app, &service, replicas)?;
                let spec = self.service_mut(&app, &service)?;
                if spec.mode == Mode::Global {
                    return Err(ApplyError::ScaleGlobal { app, service });
                }
                spec.replicas = replicas;
                Ok(Applied::changed(1))
            }
            Command::RegisterNode(node) => {
                match self.nodes.get_mut(&node.id) {
                    // What the operator decided survives a re-registration.
                    Some(known) => {
                        let raft_id = if node.raft_id == 0 {
                            known.raft_id
                        } else {
                            node.raft_id
                        };
                        let address = if node.address.is_empty() {
                            std::mem::take(&mut known.address)
                        } else {
                            node.address
                        };
                        *known = Node {
                            availability: known.availability,
                            labels: std::mem::take(&mut known.labels),
                            role: known.role,
                            raft_id,
                            address,
                            ..node
                        };
                    }
                    None => {
                        self.nodes.insert(node.id.clone(), node);
                    }
                }
                Ok(Applied::changed(1))
            }
            Command::UpdateNode {
                id,
                availability,
                labels_add,
                labels_rm,
                role,
            } => {
                let node = self.node_mut(&id)?;
                if let Some(availability) = availability {
                    node.availability = availability;
                }
                if let Some(role) = role {
                    node.role = role;
                }
                for label in labels_rm {
                    node.labels.remove(&label);
                }
                node.labels.extend(labels_add);
                Ok(Applied::changed(1))
            }
            Command::RemoveNode { id } => match self.nodes.remove(&id) {
                Some(_) => Ok(Applied::changed(1)),
                None => Err(ApplyError::UnknownNode { id }),
            },
            Command::NodeStatus { id, status } => {
                self.node_mut(&id)?.status = status;
                Ok(Applied::changed(1))
            }
            Command::SetClusterSecrets(secrets) => {
                self.cluster = Some(secrets);
                Ok(Applied::changed(1))
            }
            Command::Overlay(change) => Ok(Applied::changed(self.overlay.apply(change))),
            Command::SetAppFiles { app, files } => self.set_app_files(app, files),
            Command::CreateSecret(secret) => self.create_secret(secret),
            Command::RemoveSecret { name } => self.remove_secret(&name),
            Command::RevokeNode { id, at } => {
                let entry = self.revoked.entry(id).or_insert(at);
                *entry = (*entry).max(at);
                Ok(Applied::changed(1))
            }
            Command::SetStopTimeout { tasks, timeout_ms } => Ok(self.set_on_tasks(&tasks, |t| {
                std::mem::replace(&mut t.stop_timeout_ms, timeout_ms) != timeout_ms
            })),
            Command::SetKeepVolumes { tasks, keep } => Ok(self.set_on_tasks(&tasks, |t| {
                std::mem::replace(&mut t.keep_volumes, keep) != keep
            })),
            Command::BeginTakedown {
                app,
                remove_volumes,
                timeout_seconds,
            } => {
                let takedown = Takedown {
                    remove_volumes,
                    timeout_seconds,
                };
                let changed = self.takedowns.get(&app) != Some(&takedown);
                self.takedowns.insert(app, takedown);
                Ok(Applied::changed(usize::from(changed)))
            }
            Command::EndTakedown { app } => Ok(Applied::changed(usize::from(
                self.takedowns.remove(&app).is_some(),
            ))),
            Command::CreateTasks(tasks) => self.create_tasks(tasks),
            Command::AssignTasks(assignments) => self.assign(assignments),
            Command::SetDesired(changes) => self.set_desired(changes),
            Command::TaskStatusUpdate(updates) => Ok(self.update_status(updates)),
            Command::RemoveTasks(ids) => {
                self.check_tasks_exist(ids.iter())?;
                for id in &ids {
                    self.tasks.remove(id);
                }
                Ok(Applied::changed(ids.len()))
            }
            Command::MarkUnplaceable(reasons) => {
                self.check_tasks_exist(reasons.iter().map(|(id, _)| id))?;
                for (id, reason) in &reasons {
                    if let Some(task) = self.tasks.get_mut(id) {
                        task.unplaceable_reason = Some(reason.clone());
                    }
                }
                Ok(Applied::changed(reasons.len()))
            }
            Command::HoldTasks(reasons) => {
                self.check_tasks_exist(reasons.iter().map(|(id, _)| id))?;
                for (id, reason) in &reasons {
                    if let Some(task) = self.tasks.get_mut(id) {
                        task.waiting_for = Some(reason.clone());
                    }
                }
                Ok(Applied::changed(reasons.len()))
            }
            Command::StopService { app, service } => self.stop_service(&app, &service),
            Command::StartService { app, service } => {
                let record = self.record_mut(&app, &service)?;
                record.stopped_by_user = false;
                record.created_only = false;
                Ok(Applied::changed(1 + self.revive(&app, &service)))
            }
            Command::DaemonRestarted => {
                let mut changed = 0;
                let mut revived = Vec::new();
                for app in self.apps.values_mut() {
                    for (name, record) in &mut app.services {
                        let always = app
                            .spec
                            .services
                            .get(name)
                            .is_some_and(|s| s.restart.condition == RestartCondition::Always);
                        if record.stopped_by_user && always {
                            record.stopped_by_user = false;
                            revived.push((app.spec.name.clone(), name.clone()));
                            changed += 1;
                        }
                    }
                }
                for (app, service) in revived {
                    changed += self.revive(&app, &service);
                }
                Ok(Applied::changed(changed))
            }
            Command::SetUpdateState {
                app,
                service,
                state,
            } => {
                self.record_mut(&app, &service)?.update = state;
                Ok(Applied::changed(1))
            }
            Command::RollbackService {
                app,
                service,
                reason,
                at,
            } => {
                let record = self.app_mut(&app)?;
                let Some(current) = record.spec.services.get_mut(&service) else {
                    return Err(ApplyError::UnknownService { app, service });
                };
                let Some(entry) = record.services.get_mut(&service) else {
                    return Err(ApplyError::UnknownService { app, service });
                };
                let Some(previous) = entry.previous.take() else {
                    return Err(ApplyError::NoPreviousSpec { app, service });
                };
                let failed = std::mem::replace(current, previous);
                entry.previous = Some(failed);
                let services = record
                    .spec
                    .document
                    .get_mut("services")
                    .and_then(|s| s.as_object_mut());
                if let (Some(services), Some(definition)) =
                    (services, entry.previous_document.take())
                {
                    entry.previous_document = services.insert(service.clone(), definition);
                }
                entry.update = UpdateState::RollingBack {
                    started_at: at,
                    reason,
                };
                Ok(Applied::changed(1))
            }
        }
    }

    /// `no_start` (`up --no-start`): services without a live task get their tasks created
    /// and held before their start, and services a `stop` left stopped stay stopped.
    fn deploy(&mut self, spec: AppSpec, no_start: bool) -> Outcome {
        let invalid = |reason: String| ApplyError::InvalidApp {
            app: spec.name.clone(),
            reason,
        };
        if spec.name.is_empty() {
            return Err(invalid("the app has no name".into()));
        }
        if let Some(name) = spec.services.keys().find(|name| name.is_empty()) {
            return Err(invalid(format!("a service has an empty name {name:?}")));
        }
        for (name, service) in &spec.services {
            if service.config_hash.is_empty() {
                return Err(invalid(format!("service {name:?} has no config_hash")));
            }
            check_replicas(&spec.name, name, service.replicas)?;
            if service.depends_on.contains_key(name) {
                return Err(invalid(format!("service {name:?} depends on itself")));
            }
        }
        // deployed again: a `down` cut short must not take the new app's networks
        self.takedowns.remove(&spec.name);
        let old = self.apps.remove(&spec.name);
        let mut services = BTreeMap::new();
        let mut revive = Vec::new();
        for (name, service) in &spec.services {
            let before = old
                .as_ref()
                .and_then(|old| Some((old.spec.services.get(name)?, old.services.get(name)?)));
            let stopped = before.is_some_and(|(_, r)| r.stopped_by_user);
            let live = self
                .tasks
                .values()
                .any(|t| t.app == spec.name && t.service == *name && t.is_live());
            let mut record = match before {
                Some((old_spec, old_record)) if old_spec.config_hash == service.config_hash => {
                    old_record.clone()
                }
                Some((old_spec, old_record)) => ServiceRecord {
                    previous: Some(old_spec.clone()),
                    previous_document: old
                        .as_ref()
                        .and_then(|old| old.spec.document.get("services")?.get(name))
                        .cloned(),
                    update: UpdateState::Pending,
                    ..old_record.clone()
                },
                None => ServiceRecord::default(),
            };
            if no_start {
                record.created_only = record.created_only || (!live && !stopped);
            } else {
                // `up` starts what a `stop` left stopped, as Compose does: the same tasks
                // (and containers) come back
                record.stopped_by_user = false;
                record.created_only = false;
                if stopped {
                    revive.push(name.clone());
                }
            }
            services.insert(name.clone(), record);
        }
        let app = spec.name.clone();
        self.apps
            .insert(spec.name.clone(), AppRecord { spec, services });
        let mut changed = 1;
        for service in revive {
            changed += self.revive(&app, &service);
        }
        Ok(Applied::changed(changed))
    }

    fn create_tasks(&mut self, tasks: Vec<Task>) -> Outcome {
        let mut ids = BTreeSet::new();
        for task in &tasks {
            if self.tasks.contains_key(&task.id) || !ids.insert(task.id.as_str()) {
                return Err(ApplyError::DuplicateTask {
                    id: task.id.clone(),
                });
            }
            if self.service(&task.app, &task.service).is_none() {
                return Err(self.missing_service(&task.app, &task.service));
            }
            if let Some(node) = task.node.as_ref().filter(|n| !self.nodes.contains_key(*n)) {
                return Err(ApplyError::UnknownNode { id: node.clone() });
            }
        }
        let count = tasks.len();
        for task in tasks {
            self.tasks.insert(task.id.clone(), task);
        }
        Ok(Applied::changed(count))
    }

    fn assign(&mut self, assignments: Vec<(TaskId, NodeId)>) -> Outcome {
        for (id, node) in &assignments {
            let task = self
                .tasks
                .get(id)
                .ok_or_else(|| ApplyError::UnknownTask { id: id.clone() })?;
            if !self.nodes.contains_key(node) {
                return Err(ApplyError::UnknownNode { id: node.clone() });
            }
            let placed = task.status.state >= TaskState::Assigned;
            if let Some(current) = task.node.as_ref().filter(|c| *c != node || placed) {
                return Err(ApplyError::AlreadyAssigned {
                    id: id.clone(),
                    node: current.clone(),
                });
            }
            if task.status.state.is_terminal() {
                return Err(ApplyError::StatusRegression {
                    id: id.clone(),
                    from: task.status.state,
                    to: TaskState::Assigned,
                });
            }
        }
        for (id, node) in &assignments {
            if let Some(task) = self.tasks.get_mut(id) {
                task.node = Some(node.clone());
                task.status.state = TaskState::Assigned;
                task.unplaceable_reason = None;
            }
        }
        Ok(Applied::changed(assignments.len()))
    }

    fn set_desired(&mut self, changes: Vec<(TaskId, DesiredState)>) -> Outcome {
        for (id, desired) in &changes {
            let task = self
                .tasks
                .get(id)
                .ok_or_else(|| ApplyError::UnknownTask { id: id.clone() })?;
            if *desired < task.desired {
                return Err(ApplyError::DesiredRegression {
                    id: id.clone(),
                    from: task.desired,
                    to: *desired,
                });
            }
        }
        for (id, desired) in &changes {
            if let Some(task) = self.tasks.get_mut(id) {
                task.desired = *desired;
                if *desired >= DesiredState::Running {
                    task.waiting_for = None;
                }
                // No agent ever saw an unplaced task: it is finished as soon as it is
                // not wanted.
                if *desired >= DesiredState::Shutdown
                    && task.node.is_none()
                    && !task.status.state.is_terminal()
                {
                    task.status.state = TaskState::Shutdown;
                }
            }
        }
        Ok(Applied::changed(changes.len()))
    }

    fn update_status(&mut self, updates: Vec<(TaskId, TaskStatus)>) -> Applied {
        let mut applied = Applied::default();
        for (id, status) in updates {
            let Some(task) = self.tasks.get_mut(&id) else {
                applied.rejected.push(ApplyError::UnknownTask { id });
                continue;
            };
            let from = task.status.state;
            let backwards = status.state < from;
            let leaves_terminal = from.is_terminal() && status.state != from;
            if backwards || leaves_terminal {
                applied.rejected.push(ApplyError::StatusRegression {
                    id,
                    from,
                    to: status.state,
                });
                continue;
            }
            if status.state == TaskState::Running && task.started_at.is_none() {
                task.started_at = Some(status.timestamp);
            }
            task.status = status;
            applied.changed += 1;
        }
        applied
    }

    fn stop_service(&mut self, app: &str, service: &str) -> Outcome {
        self.record_mut(app, service)?.stopped_by_user = true;
        let mut changed = 1;
        for task in self.tasks.values_mut() {
            if task.app == app && task.service == service && task.is_live() {
                task.desired = DesiredState::Shutdown;
                task.stopped_by_user = true;
                if task.node.is_none() && !task.status.state.is_terminal() {
                    task.status.state = TaskState::Shutdown;
                }
                changed += 1;
            }
        }
        Ok(Applied::changed(changed))
    }

    /// Brings back the tasks a `stop` shut down, with the containers they kept: desired
    /// `Ready` (the orchestrator releases them once their dependencies hold, so they start
    /// in dependency order), observed `Assigned` again. Only here may a task leave a
    /// terminal state: the container it stands for still exists and starts again.
    fn revive(&mut self, app: &str, service: &str) -> usize {
        let mut changed = 0;
        for task in self.tasks.values_mut() {
            if task.app != app
                || task.service != service
                || !task.stopped_by_user
                || task.desired != DesiredState::Shutdown
                || task.node.is_none()
            {
                continue;
            }
            task.desired = DesiredState::Ready;
            task.stopped_by_user = false;
            task.waiting_for = None;
            if matches!(
                task.status.state,
                TaskState::Shutdown | TaskState::Complete | TaskState::Failed
            ) {
                task.status = TaskStatus {
                    state: TaskState::Assigned,
                    health: super::task::Health::None,
                    exit_code: None,
                    message: String::new(),
                    timestamp: task.status.timestamp,
                };
                task.started_at = None;
            }
            changed += 1;
        }
        changed
    }

    fn check_tasks_exist<'a>(
        &self,
        mut ids: impl Iterator<Item = &'a TaskId>,
    ) -> Result<(), ApplyError> {
        match ids.find(|id| !self.tasks.contains_key(*id)) {
            Some(id) => Err(ApplyError::UnknownTask { id: id.clone() }),
            None => Ok(()),
        }
    }

    fn missing_service(&self, app: &str, service: &str) -> ApplyError {
        if self.apps.contains_key(app) {
            ApplyError::UnknownService {
                app: app.to_owned(),
                service: service.to_owned(),
            }
        } else {
            ApplyError::UnknownApp {
                app: app.to_owned(),
            }
        }
    }

    fn app_mut(&mut self, app: &str) -> Result<&mut AppRecord, ApplyError> {
        self.apps
            .get_mut(app)
            .ok_or_else(|| ApplyError::UnknownApp {
                app: app.to_owned(),
            })
    }

    fn service_mut(&mut self, app: &str, service: &str) -> Result<&mut ServiceSpec, ApplyError> {
        let missing = self.missing_service(app, service);
        self.apps
            .get_mut(app)
            .and_then(|record| record.spec.services.get_mut(service))
            .ok_or(missing)
    }

    fn record_mut(&mut self, app: &str, service: &str) -> Result<&mut ServiceRecord, ApplyError> {
        let missing = self.missing_service(app, service);
        self.apps
            .get_mut(app)
            .and_then(|record| record.services.get_mut(service))
            .ok_or(missing)
    }

    /// Applies `change` to each of `ids` that still exists (a task may end and go between
    /// the proposer's read and the commit); counts the tasks it changed.
    fn set_on_tasks(
        &mut self,
        ids: &[TaskId],
        mut change: impl FnMut(&mut Task) -> bool,
    ) -> Applied {
        let mut changed = 0;
        for id in ids {
            if let Some(task) = self.tasks.get_mut(id) {
                changed += usize::from(change(task));
            }
        }
        Applied::changed(changed)
    }

    fn node_mut(&mut self, id: &str) -> Result<&mut Node, ApplyError> {
        self.nodes
            .get_mut(id)
            .ok_or_else(|| ApplyError::UnknownNode { id: id.to_owned() })
    }
}

/// Encodes a command for the Raft log.
pub fn encode(command: &Command) -> Vec<u8> {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_vec(command).unwrap_or_default()
}

/// Decodes the reply `apply` produced for a proposal.
pub fn decode_reply(bytes: &[u8]) -> Result<Applied, ApplyError> {
    serde_json::from_slice::<Result<Applied, ApplyError>>(bytes).unwrap_or_else(|e| {
        Err(ApplyError::Decode {
            message: format!("reply: {e}"),
        })
    })
}

impl StateMachine for State {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Vec<u8> {
        let outcome = match serde_json::from_slice::<Command>(command) {
            Ok(command) => self.apply_command(command),
            Err(e) => Err(ApplyError::Decode {
                message: e.to_string(),
            }),
        };
        serde_json::to_vec(&outcome).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        *self = serde_json::from_slice(data).map_err(|e| format!("store snapshot: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
