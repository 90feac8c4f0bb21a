//! One service's pass: its slots (replica numbers, or nodes for a global service), the tasks
//! in each, and what each slot needs — a first task, a restart, a replacement after its node
//! was lost or drained, a shutdown when the slot is no longer wanted, a release from
//! `depends_on` gating, or a place in the rolling update.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::store::{
    AppRecord, Availability, DesiredState, Health, Mode, NodeStatus, ServiceRecord, ServiceSpec,
    State, Task, TaskState, TaskStatus, Timestamp, UpdateOrder,
};

use super::restart::{self, RestartDecision};
use super::{Plan, TaskIndex, dependencies, update};

pub(crate) struct Service<'a> {
    pub state: &'a State,
    pub app: &'a AppRecord,
    pub name: &'a str,
    pub spec: &'a ServiceSpec,
    pub record: &'a ServiceRecord,
    pub tasks: &'a [&'a Task],
    pub index: &'a TaskIndex<'a>,
    pub now: Timestamp,
}

/// Where a task belongs: its replica number, its node (global), or nowhere (left over from
/// a change of mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SlotKey<'a> {
    Replica(u32),
    Node(&'a str),
    Loose,
}

impl Service<'_> {
    fn hash(&self) -> &str {
        &self.spec.config_hash
    }

    /// Running, and healthy when the service has a healthcheck.
    pub(crate) fn ready(&self, task: &Task) -> bool {
        task.status.state == TaskState::Running
            && (!self.spec.healthcheck || task.status.health == Health::Healthy)
    }
}

/// Makes the service's new tasks.
pub(crate) struct Creator<'a, 'i> {
    pub blocked: Option<String>,
    /// When a `restart: true` dependency last restarted, and which.
    pub dependency_restart: Option<(Timestamp, &'a str)>,
    pub ids: &'i mut dyn FnMut() -> String,
    pub service: &'a Service<'a>,
}

impl Creator<'_, '_> {
    pub(crate) fn create(
        &mut self,
        plan: &mut Plan,
        key: SlotKey<'_>,
        restart_count: u32,
        restart_history: Vec<Timestamp>,
    ) {
        let s = self.service;
        let desired = if self.blocked.is_some() {
            DesiredState::Ready
        } else {
            DesiredState::Running
        };
        let mut task = Task::new(
            (self.ids)(),
            &s.app.spec.name,
            s.name,
            s.hash(),
            desired,
            s.now,
        );
        match key {
            SlotKey::Replica(slot) => task.slot = Some(slot),
            SlotKey::Node(node) => task.node = Some(node.to_owned()),
            SlotKey::Loose => return,
        }
        task.restart_count = restart_count;
        task.restart_history = restart_history;
        task.waiting_for = self.blocked.clone();
        plan.create.push(task);
    }
}

pub(crate) fn reconcile(s: &Service<'_>, plan: &mut Plan, ids: &mut dyn FnMut() -> String) {
    if s.record.stopped_by_user {
        // StopService already shut the tasks down; nothing comes back until StartService.
        return;
    }
    if update::stop_for_failures(s, plan) {
        return;
    }
    let gone = lost_tasks(s, plan);
    let blocked = if s.record.created_only {
        Some("created by `up --no-start`: `berth start` starts it".to_owned())
    } else {
        dependencies::blocked(s.app, s.spec, s.index)
    };
    let mut creator = Creator {
        blocked,
        dependency_restart: dependencies::latest_restart(s.app, s.spec, s.index),
        ids,
        service: s,
    };
    let mut slots: BTreeMap<SlotKey<'_>, Vec<&Task>> = BTreeMap::new();
    for task in s.tasks {
        slots
            .entry(slot_of(s.spec.mode, task))
            .or_default()
            .push(task);
    }
    let wanted = wanted_slots(s);
    for key in &wanted {
        slots.entry(*key).or_default();
    }
    // Extra slots first, highest first: scaling down stops the newest replicas.
    for (key, tasks) in slots.iter().rev() {
        if !wanted.contains(key) && !kept_global(s, *key) {
            for task in tasks.iter().filter(|t| t.is_live()) {
                plan.desire(task, DesiredState::Shutdown);
            }
        }
    }
    let mut progress = update::Progress::default();
    for (key, tasks) in &slots {
        let may_create = wanted.contains(key);
        if may_create || kept_global(s, *key) {
            slot(
                s,
                *key,
                tasks,
                may_create,
                &gone,
                plan,
                &mut progress,
                &mut creator,
            );
        }
    }
    update::advance(s, progress, plan, &mut creator);
}

fn slot_of(mode: Mode, task: &Task) -> SlotKey<'_> {
    match (mode, task.slot, task.node.as_deref()) {
        (Mode::Replicated, Some(slot), _) => SlotKey::Replica(slot),
        (Mode::Global, None, Some(node)) => SlotKey::Node(node),
        _ => SlotKey::Loose,
    }
}

fn wanted_slots<'a>(s: &Service<'a>) -> BTreeSet<SlotKey<'a>> {
    match s.spec.mode {
        Mode::Replicated => (1..=s.spec.replicas).map(SlotKey::Replica).collect(),
        Mode::Global => s
            .state
            .nodes
            .values()
            .filter(|node| {
                node.accepts_tasks()
                    && s.spec.placement.platform_matches(node)
                    && s.spec.placement.constraints_match(node)
            })
            .map(|node| SlotKey::Node(&node.id))
            .collect(),
    }
}

/// A global task on a node that takes no new tasks but keeps its own (paused, or of
/// unknown status) stays where it is.
fn kept_global(s: &Service<'_>, key: SlotKey<'_>) -> bool {
    let SlotKey::Node(id) = key else {
        return false;
    };
    s.index.node(id).is_some_and(|node| {
        node.status != NodeStatus::Down
            && node.availability != Availability::Drain
            && s.spec.placement.platform_matches(node)
            && s.spec.placement.constraints_match(node)
    })
}

/// Live tasks on nodes that are down, gone or drained: shut down (and marked orphaned when
/// their node cannot report any more). Their slots get replacements.
fn lost_tasks<'a>(s: &Service<'a>, plan: &mut Plan) -> HashSet<&'a str> {
    let mut gone = HashSet::new();
    for task in s.tasks.iter().filter(|t| t.is_live()) {
        let Some(id) = task.node.as_deref() else {
            continue;
        };
        let node = s.index.node(id);
        let unreachable = match node {
            None => Some(format!("node {id} left the cluster")),
            Some(node) if node.status == NodeStatus::Down => Some(format!("node {id} is down")),
            Some(_) => None,
        };
        if let Some(message) = unreachable {
            if !task.status.state.is_terminal() {
                plan.statuses.push((
                    task.id.clone(),
                    TaskStatus {
                        state: TaskState::Orphaned,
                        health: Health::None,
                        exit_code: None,
                        message,
                        timestamp: s.now,
                    },
                ));
            }
        } else if node.is_none_or(|n| n.availability != Availability::Drain) {
            continue;
        }
        plan.desire(task, DesiredState::Shutdown);
        gone.insert(task.id.as_str());
    }
    gone
}

#[allow(clippy::too_many_arguments)]
fn slot<'a>(
    s: &Service<'a>,
    key: SlotKey<'a>,
    tasks: &[&'a Task],
    may_create: bool,
    gone: &HashSet<&str>,
    plan: &mut Plan,
    progress: &mut update::Progress<'a>,
    creator: &mut Creator<'_, '_>,
) {
    let mut live: Vec<&Task> = tasks
        .iter()
        .copied()
        .filter(|t| t.is_live() && !gone.contains(t.id.as_str()))
        .collect();
    // The newest task of the current spec last.
    live.sort_by(|a, b| {
        (a.spec_hash == s.hash(), a.created_at, &a.id).cmp(&(
            b.spec_hash == s.hash(),
            b.created_at,
            &b.id,
        ))
    });
    let Some(newest) = live.last().copied() else {
        if !may_create {
            return;
        }
        if stopping_for_update(s, tasks) {
            progress.in_flight += 1;
            return;
        }
        creator.create(plan, key, 0, Vec::new());
        if update::in_progress(s) {
            // The successor is not up yet: it occupies a place in the current batch.
            progress.in_flight += 1;
        }
        return;
    };
    release_gated(&live, plan, creator);
    let outdated = newest.spec_hash != s.hash();
    if newest.desired == DesiredState::Running && !outdated {
        let restarted_after = matches!(
            (newest.started_at, creator.dependency_restart),
            (Some(started), Some((at, _))) if at > started
        );
        if newest.status.state == TaskState::Running && restarted_after {
            for task in &live {
                plan.desire(task, DesiredState::Shutdown);
            }
            creator.create(
                plan,
                key,
                newest.restart_count,
                newest.restart_history.clone(),
            );
            return;
        }
        if restart::decide(&s.spec.restart, newest, s.now) == RestartDecision::Now {
            for task in &live {
                plan.desire(task, DesiredState::Shutdown);
            }
            let history = restart::next_history(&s.spec.restart, newest, s.now);
            creator.create(plan, key, newest.restart_count + 1, history);
            return;
        }
    }
    if outdated {
        progress.outdated.push((key, live));
        return;
    }
    let older = &live[..live.len() - 1];
    let settled = s.ready(newest) || newest.status.state.is_terminal();
    if !older.is_empty() {
        // Start-first: the previous task goes once its successor is up.
        if settled {
            for task in older {
                plan.desire(task, DesiredState::Shutdown);
            }
        } else {
            progress.in_flight += 1;
        }
    } else if !settled && update::is_update_task(s, newest) {
        progress.in_flight += 1;
    }
}

/// Stop-first: the outdated task of this slot is still stopping, so its successor waits.
fn stopping_for_update(s: &Service<'_>, tasks: &[&Task]) -> bool {
    update::config(s).order == UpdateOrder::StopFirst
        && tasks.iter().any(|t| {
            !t.is_live()
                && t.spec_hash != s.hash()
                && !t.status.state.is_terminal()
                && t.node.as_ref().is_some_and(|id| {
                    s.state
                        .nodes
                        .get(id)
                        .is_some_and(|node| node.status != NodeStatus::Down)
                })
        })
}

/// Tasks held at `Ready` start once every dependency condition holds; until then they say
/// what they wait for.
fn release_gated(live: &[&Task], plan: &mut Plan, creator: &Creator<'_, '_>) {
    for task in live.iter().filter(|t| t.desired == DesiredState::Ready) {
        match &creator.blocked {
            None => plan.desire(task, DesiredState::Running),
            Some(reason) if task.waiting_for.as_ref() != Some(reason) => {
                plan.hold.push((task.id.clone(), reason.clone()));
            }
            Some(_) => {}
        }
    }
}
