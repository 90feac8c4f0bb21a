//! The orchestrator: compares what the store wants (apps, services, replicas, specs) with the
//! tasks it holds and answers with the commands that close the gap — new tasks for empty
//! slots, shutdowns for extra ones, restarts per policy, `depends_on` gating, replacements
//! for lost or drained nodes, rolling updates and rollbacks.
//!
//! [`reconcile`] is pure: it reads a snapshot of the state and a clock value given by the
//! caller, and only returns commands; the caller proposes them through Raft and calls it
//! again after they are applied. It never places tasks on nodes (the scheduler does), except
//! that a global service's task is created for its node.

mod dependencies;
pub mod report;
mod restart;
mod service;
mod update;

use indexmap::IndexMap;
use rustc_hash::FxHashMap;

use crate::store::{
    Command, DesiredState, Node, ServiceRecord, State, Task, TaskId, TaskStatus, Timestamp,
};
pub use restart::{BACKOFF_CAP_MS, BACKOFF_START_MS, RestartDecision, delay as restart_delay};

/// Finished tasks kept per slot for `ps -a` and for the restart history.
pub const HISTORY_PER_SLOT: usize = 5;

/// The commands that move the store toward its desired state. Applying them and calling
/// again converges; a converged state yields no command. `ids` names new tasks.
pub fn reconcile(state: &State, now: Timestamp, ids: &mut dyn FnMut() -> String) -> Vec<Command> {
    let index = TaskIndex::new(state);
    let mut plan = Plan::default();
    let idle = ServiceRecord::default();
    for app in state.apps.values() {
        for (name, spec) in &app.spec.services {
            let service = service::Service {
                state,
                app,
                name,
                spec,
                record: app.services.get(name).unwrap_or(&idle),
                tasks: index.service(&app.spec.name, name),
                index: &index,
                now,
            };
            service::reconcile(&service, &mut plan, ids);
        }
    }
    collect_garbage(state, &index, &mut plan);
    plan.into_commands()
}

/// When `reconcile` will have work that no new command triggers — the end of the earliest
/// restart back-off or rolling-update delay after `now`. The caller runs it again then.
pub fn next_wakeup(state: &State, now: Timestamp) -> Option<Timestamp> {
    let index = TaskIndex::new(state);
    let idle = ServiceRecord::default();
    let mut earliest: Option<Timestamp> = None;
    for app in state.apps.values() {
        for (name, spec) in &app.spec.services {
            let service = service::Service {
                state,
                app,
                name,
                spec,
                record: app.services.get(name).unwrap_or(&idle),
                tasks: index.service(&app.spec.name, name),
                index: &index,
                now,
            };
            let candidates = service
                .tasks
                .iter()
                .filter(|t| t.desired == DesiredState::Running && t.spec_hash == spec.config_hash)
                .filter_map(|t| match restart::decide(&spec.restart, t, now) {
                    RestartDecision::At(at) => Some(at),
                    _ => None,
                })
                .chain(update::delay_ends(&service));
            for at in candidates.filter(|at| *at > now) {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
    }
    earliest
}

/// The tasks of each service and the nodes by id, built once per pass.
pub(crate) struct TaskIndex<'a> {
    by_app: FxHashMap<&'a str, FxHashMap<&'a str, Vec<&'a Task>>>,
    nodes: FxHashMap<&'a str, &'a Node>,
}

impl<'a> TaskIndex<'a> {
    fn new(state: &'a State) -> Self {
        let mut by_app: FxHashMap<&str, FxHashMap<&str, Vec<&Task>>> = FxHashMap::default();
        for task in state.tasks.values() {
            by_app
                .entry(task.app.as_str())
                .or_default()
                .entry(task.service.as_str())
                .or_default()
                .push(task);
        }
        let nodes = state
            .nodes
            .values()
            .map(|node| (node.id.as_str(), node))
            .collect();
        TaskIndex { by_app, nodes }
    }

    pub(crate) fn node(&self, id: &str) -> Option<&'a Node> {
        self.nodes.get(id).copied()
    }

    pub(crate) fn service(&self, app: &str, service: &str) -> &[&'a Task] {
        self.by_app
            .get(app)
            .and_then(|services| services.get(service))
            .map_or(&[], Vec::as_slice)
    }
}

/// The commands of one pass, gathered so that each kind goes out as one batch.
#[derive(Default)]
pub(crate) struct Plan {
    statuses: Vec<(TaskId, TaskStatus)>,
    desired: IndexMap<TaskId, DesiredState>,
    create: Vec<Task>,
    hold: Vec<(TaskId, String)>,
    remove: Vec<TaskId>,
    services: Vec<Command>,
}

impl Plan {
    pub(crate) fn desire(&mut self, task: &Task, desired: DesiredState) {
        if desired <= task.desired {
            return;
        }
        let entry = self.desired.entry(task.id.clone()).or_insert(desired);
        *entry = (*entry).max(desired);
    }

    fn into_commands(self) -> Vec<Command> {
        let mut commands = Vec::new();
        if !self.statuses.is_empty() {
            commands.push(Command::TaskStatusUpdate(self.statuses));
        }
        if !self.desired.is_empty() {
            commands.push(Command::SetDesired(self.desired.into_iter().collect()));
        }
        if !self.create.is_empty() {
            commands.push(Command::CreateTasks(self.create));
        }
        if !self.hold.is_empty() {
            commands.push(Command::HoldTasks(self.hold));
        }
        if !self.remove.is_empty() {
            commands.push(Command::RemoveTasks(self.remove));
        }
        commands.extend(self.services);
        commands
    }
}

/// A slot of a service: app, service, replica number or (global) node.
type SlotOf<'a> = (&'a str, &'a str, Option<u32>, Option<&'a str>);

/// Removes tasks of apps and services that no longer exist once they stopped, and trims each
/// slot's history of finished tasks.
fn collect_garbage(state: &State, index: &TaskIndex<'_>, plan: &mut Plan) {
    let mut history: FxHashMap<SlotOf<'_>, Vec<&Task>> = FxHashMap::default();
    for (app, services) in &index.by_app {
        for (service, tasks) in services {
            let exists = state.service(app, service).is_some();
            for task in tasks {
                if !exists || task.desired == DesiredState::Remove {
                    if task.desired < DesiredState::Remove {
                        plan.desire(task, DesiredState::Remove);
                    } else if task.status.state.is_terminal() || task.node.is_none() {
                        plan.remove.push(task.id.clone());
                    }
                    continue;
                }
                if !task.is_live() && task.status.state.is_terminal() {
                    let node = if task.slot.is_none() {
                        task.node.as_deref()
                    } else {
                        None
                    };
                    history
                        .entry((app, service, task.slot, node))
                        .or_default()
                        .push(task);
                }
            }
        }
    }
    for (_, mut finished) in history {
        if finished.len() <= HISTORY_PER_SLOT {
            continue;
        }
        finished.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        plan.remove
            .extend(finished[HISTORY_PER_SLOT..].iter().map(|t| t.id.clone()));
    }
    plan.remove.sort();
}

#[cfg(test)]
mod tests;
