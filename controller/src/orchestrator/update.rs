//! Rolling updates and rollbacks of one service: replacing outdated tasks in batches of
//! `parallelism`, `delay` apart, stop-first or start-first, watching updated tasks for
//! failures during `monitor`, and pausing, continuing or rolling back when too many fail.
//!
//! A rollback swaps the service's spec with the one it replaced (kept in the store), so the
//! tasks of the failed spec become the outdated ones and roll back the same way.

use crate::store::{
    Command, DesiredState, FailureAction, Mode, Task, TaskState, UpdateConfig, UpdateOrder,
    UpdateState,
};

use super::Plan;
use super::restart;
use super::service::{Creator, Service, SlotKey};

/// What the slots of a service report to the update.
#[derive(Default)]
pub(crate) struct Progress<'a> {
    /// Slots whose task is of an older spec, in slot order, with their live tasks.
    pub outdated: Vec<(SlotKey<'a>, Vec<&'a Task>)>,
    /// Slots being replaced right now: successor not yet up, or predecessor still stopping.
    pub in_flight: usize,
}

/// The configuration that drives the current roll: `rollback_config` of the spec being
/// rolled back from while rolling back, `update_config` otherwise.
pub(crate) fn config(s: &Service<'_>) -> UpdateConfig {
    match &s.record.update {
        UpdateState::RollingBack { .. }
        | UpdateState::RolledBack { .. }
        | UpdateState::RollbackPaused { .. } => s
            .record
            .previous
            .as_ref()
            .map_or(s.spec.rollback_config, |failed| failed.rollback_config),
        _ => s.spec.update_config,
    }
}

fn started_at(s: &Service<'_>) -> Option<u64> {
    match &s.record.update {
        UpdateState::Updating { started_at } | UpdateState::RollingBack { started_at, .. } => {
            Some(*started_at)
        }
        UpdateState::Pending => Some(s.now),
        _ => None,
    }
}

/// A roll is under way (or about to start).
pub(crate) fn in_progress(s: &Service<'_>) -> bool {
    started_at(s).is_some()
}

/// A task made by the roll in progress.
pub(crate) fn is_update_task(s: &Service<'_>, task: &Task) -> bool {
    task.spec_hash == s.spec.config_hash && started_at(s).is_some_and(|t| task.created_at >= t)
}

fn failed_while_monitored(task: &Task, monitor: u64) -> bool {
    if task.status.state == TaskState::Orphaned || !restart::failed(task) {
        return false;
    }
    let since = task.started_at.unwrap_or(task.created_at);
    monitor == 0 || task.status.timestamp <= since.saturating_add(monitor)
}

/// Applies `failure_action` when too many updated tasks failed; true when the service must
/// not be touched further in this pass (the rollback changes its spec).
pub(crate) fn stop_for_failures(s: &Service<'_>, plan: &mut Plan) -> bool {
    let UpdateState::Updating { .. } = s.record.update else {
        return false;
    };
    let config = s.spec.update_config;
    let failed: Vec<&&Task> = s
        .tasks
        .iter()
        .filter(|t| is_update_task(s, t) && failed_while_monitored(t, config.monitor))
        .collect();
    let slots = match s.spec.mode {
        Mode::Replicated => s.spec.replicas as usize,
        Mode::Global => s.tasks.iter().filter(|t| t.is_live()).count(),
    }
    .max(1);
    if failed.is_empty() || failed.len() as f64 <= config.max_failure_ratio * slots as f64 {
        return false;
    }
    let example = failed
        .iter()
        .map(|t| match (t.status.exit_code, t.status.message.as_str()) {
            (_, message) if !message.is_empty() => format!("task {}: {message}", t.id),
            (Some(code), _) => format!("task {} exited with code {code}", t.id),
            (None, _) => format!("task {} is {:?}", t.id, t.status.state).to_lowercase(),
        })
        .next()
        .unwrap_or_default();
    let reason = format!(
        "{} of {slots} updated tasks failed within the monitor period ({example})",
        failed.len()
    );
    let (app, service) = (s.app.spec.name.clone(), s.name.to_owned());
    match config.failure_action {
        FailureAction::Continue => false,
        FailureAction::Rollback if s.record.previous.is_some() => {
            plan.services.push(Command::RollbackService {
                app,
                service,
                reason: format!("update rolled back: {reason}"),
                at: s.now,
            });
            true
        }
        FailureAction::Rollback | FailureAction::Pause => {
            plan.services.push(Command::SetUpdateState {
                app,
                service,
                state: UpdateState::Paused {
                    reason: format!("update paused: {reason}"),
                },
            });
            true
        }
    }
}

/// Starts the next batch of replacements when the roll allows it, and records the end of
/// the roll.
pub(crate) fn advance<'a>(
    s: &Service<'a>,
    progress: Progress<'a>,
    plan: &mut Plan,
    creator: &mut Creator<'_, '_>,
) {
    if s.record.update.is_paused() {
        return;
    }
    let (app, service) = (s.app.spec.name.clone(), s.name.to_owned());
    let set = |plan: &mut Plan, state| {
        plan.services.push(Command::SetUpdateState {
            app: app.clone(),
            service: service.clone(),
            state,
        });
    };
    if progress.outdated.is_empty() {
        if progress.in_flight == 0 {
            match &s.record.update {
                UpdateState::Pending | UpdateState::Updating { .. } => {
                    set(plan, UpdateState::Completed)
                }
                UpdateState::RollingBack { reason, .. } => set(
                    plan,
                    UpdateState::RolledBack {
                        reason: reason.clone(),
                    },
                ),
                _ => {}
            }
        }
        return;
    }
    let config = config(s);
    if s.record.update == UpdateState::Pending {
        set(plan, UpdateState::Updating { started_at: s.now });
    }
    if config.delay > 0 {
        let last_started = s
            .tasks
            .iter()
            .filter(|t| is_update_task(s, t))
            .filter_map(|t| t.started_at)
            .max();
        if last_started.is_some_and(|at| s.now < at.saturating_add(config.delay)) {
            return;
        }
    }
    let budget = match config.parallelism {
        0 => usize::MAX,
        n => (n as usize).saturating_sub(progress.in_flight),
    };
    for (key, live) in progress.outdated.into_iter().take(budget) {
        match config.order {
            UpdateOrder::StopFirst => {
                for task in &live {
                    plan.desire(task, DesiredState::Shutdown);
                }
                // A task no agent runs is gone at once; otherwise its successor waits until
                // it reports stopped.
                if live
                    .iter()
                    .all(|t| t.node.is_none() || t.status.state.is_terminal())
                {
                    creator.create(plan, key, 0, Vec::new());
                }
            }
            UpdateOrder::StartFirst => creator.create(plan, key, 0, Vec::new()),
        }
    }
}
