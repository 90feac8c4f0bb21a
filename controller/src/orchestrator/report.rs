//! How services and their tasks read to an operator (`berth service ls|ps|inspect`): service
//! names as Docker spells them (`<app>_<service>`), resolution of a name the user typed, and
//! one line on why a task is where it is — unplaceable, held by `depends_on`, failed.
//!
//! Pure reads of a [`State`]; it proposes nothing and knows nothing of the wire format.

use crate::store::{
    DesiredState, Health, Mode, ServiceRecord, ServiceSpec, State, Task, TaskState, UpdateState,
};

/// The name a service goes by outside its app: `<app>_<service>`, as `docker stack` names
/// the services of a stack.
pub fn service_name(app: &str, service: &str) -> String {
    format!("{app}_{service}")
}

/// The name of one task: `<app>_<service>.<slot>`, or `.<node>` for a global service.
pub fn task_name(task: &Task) -> String {
    let base = service_name(&task.app, &task.service);
    match (task.slot, &task.node) {
        (Some(slot), _) => format!("{base}.{slot}"),
        (None, Some(node)) => format!("{base}.{node}"),
        (None, None) => format!("{base}.{}", task.id),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no service {name:?} (name it <app>_<service>, see berth service ls)")]
    Unknown { name: String },
    #[error("{name:?} names services of several apps ({candidates}): use <app>_<service>")]
    Ambiguous { name: String, candidates: String },
}

/// The `(app, service)` a name stands for: `<app>_<service>` (app names may hold `_`, so
/// every split is tried), or a bare service name that only one app has.
pub fn resolve(state: &State, name: &str) -> Result<(String, String), ResolveError> {
    let mut exact = Vec::new();
    let mut bare = Vec::new();
    for app in state.apps.values() {
        for service in app.spec.services.keys() {
            if service_name(&app.spec.name, service) == name {
                exact.push((app.spec.name.clone(), service.clone()));
            } else if service == name {
                bare.push((app.spec.name.clone(), service.clone()));
            }
        }
    }
    let found = if exact.is_empty() { bare } else { exact };
    match found.len() {
        0 => Err(ResolveError::Unknown {
            name: name.to_owned(),
        }),
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        _ => Err(ResolveError::Ambiguous {
            name: name.to_owned(),
            candidates: found
                .iter()
                .map(|(a, s)| service_name(a, s))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Why a task stands where it does, empty when nothing needs saying: the scheduler's
/// reason it has no node, the `depends_on` condition holding it, or how it ended.
pub fn task_error(task: &Task) -> String {
    if let Some(reason) = &task.unplaceable_reason
        && task.node.is_none()
    {
        return reason.clone();
    }
    if task.desired == DesiredState::Ready
        && let Some(waiting) = &task.waiting_for
    {
        return waiting.clone();
    }
    let status = &task.status;
    match status.state {
        TaskState::Failed | TaskState::Rejected | TaskState::Orphaned => {
            match (status.message.is_empty(), status.exit_code) {
                (false, _) => status.message.clone(),
                (true, Some(code)) => format!("task exited with code {code}"),
                (true, None) => String::new(),
            }
        }
        TaskState::Running if status.health == Health::Unhealthy => "unhealthy".into(),
        _ => String::new(),
    }
}

/// The observed state as one word, with health when the task has a healthcheck.
pub fn current_state(task: &Task) -> String {
    let word = state_word(task.status.state);
    match (task.status.state, task.status.health) {
        (TaskState::Running, Health::Starting) => format!("{word} (starting)"),
        (TaskState::Running, Health::Healthy) => format!("{word} (healthy)"),
        (TaskState::Running, Health::Unhealthy) => format!("{word} (unhealthy)"),
        _ => word.to_owned(),
    }
}

pub fn state_word(state: TaskState) -> &'static str {
    match state {
        TaskState::New => "New",
        TaskState::Pending => "Pending",
        TaskState::Assigned => "Assigned",
        TaskState::Preparing => "Preparing",
        TaskState::Starting => "Starting",
        TaskState::Running => "Running",
        TaskState::Complete => "Complete",
        TaskState::Failed => "Failed",
        TaskState::Shutdown => "Shutdown",
        TaskState::Rejected => "Rejected",
        TaskState::Orphaned => "Orphaned",
    }
}

pub fn desired_word(desired: DesiredState) -> &'static str {
    match desired {
        DesiredState::Ready => "Ready",
        DesiredState::Running => "Running",
        DesiredState::Shutdown => "Shutdown",
        DesiredState::Remove => "Remove",
    }
}

/// Where a service's rolling update stands: a word and, when there is one, the reason.
pub fn update_status(update: &UpdateState) -> (&'static str, String) {
    match update {
        UpdateState::Completed => ("completed", String::new()),
        UpdateState::Pending => ("pending", String::new()),
        UpdateState::Updating { .. } => ("updating", String::new()),
        UpdateState::Paused { reason } => ("paused", reason.clone()),
        UpdateState::RollingBack { reason, .. } => ("rollback_started", reason.clone()),
        UpdateState::RolledBack { reason } => ("rollback_completed", reason.clone()),
        UpdateState::RollbackPaused { reason } => ("rollback_paused", reason.clone()),
    }
}

/// The image a task runs: its spec is the service's current one or the one it replaced.
pub fn task_image(spec: &ServiceSpec, record: Option<&ServiceRecord>, task: &Task) -> String {
    if task.spec_hash == spec.config_hash {
        return spec.image.clone();
    }
    record
        .and_then(|r| r.previous.as_ref())
        .filter(|p| p.config_hash == task.spec_hash)
        .map(|p| p.image.clone())
        .unwrap_or_else(|| spec.image.clone())
}

/// How many tasks a service wants: its replicas, or for a global service its live tasks.
pub fn desired_tasks(state: &State, app: &str, service: &str, spec: &ServiceSpec) -> u32 {
    match spec.mode {
        Mode::Replicated => spec.replicas,
        Mode::Global => state
            .tasks
            .values()
            .filter(|t| t.app == app && t.service == service && t.is_live())
            .count() as u32,
    }
}

/// How many of a service's tasks run (and are healthy when it has a healthcheck).
pub fn running_tasks(state: &State, app: &str, service: &str, spec: &ServiceSpec) -> u32 {
    state
        .tasks
        .values()
        .filter(|t| t.app == app && t.service == service && t.is_live())
        .filter(|t| t.status.state == TaskState::Running)
        .filter(|t| !spec.healthcheck || t.status.health == Health::Healthy)
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AppRecord, AppSpec, TaskStatus};

    fn state_with(apps: &[(&str, &[&str])]) -> State {
        let mut state = State::default();
        for (app, services) in apps {
            let spec = AppSpec {
                name: (*app).into(),
                services: services
                    .iter()
                    .map(|s| ((*s).to_owned(), ServiceSpec::new("img", "h")))
                    .collect(),
                networks: vec![],
                volumes: vec![],
                document: serde_json::Value::Null,
                working_dir: String::new(),
                config_files: Vec::new(),
            };
            state.apps.insert(
                (*app).into(),
                AppRecord {
                    spec,
                    services: Default::default(),
                },
            );
        }
        state
    }

    #[test]
    fn names_resolve_by_app_and_service_or_a_unique_service() {
        let state = state_with(&[("shop", &["web", "db"]), ("my_blog", &["web", "cache"])]);
        assert_eq!(
            resolve(&state, "shop_web").unwrap(),
            ("shop".into(), "web".into())
        );
        assert_eq!(
            resolve(&state, "my_blog_web").unwrap(),
            ("my_blog".into(), "web".into())
        );
        assert_eq!(resolve(&state, "db").unwrap(), ("shop".into(), "db".into()));
        assert_eq!(
            resolve(&state, "web").unwrap_err(),
            ResolveError::Ambiguous {
                name: "web".into(),
                candidates: "my_blog_web, shop_web".into()
            }
        );
        let err = resolve(&state, "nope").unwrap_err();
        assert!(err.to_string().contains("no service \"nope\""), "{err}");
    }

    #[test]
    fn a_task_says_why_it_waits_or_ended() {
        let mut task = Task::new("t1", "shop", "web", "h", DesiredState::Running, 0);
        task.slot = Some(2);
        assert_eq!(task_name(&task), "shop_web.2");
        assert_eq!(task_error(&task), "");
        task.unplaceable_reason = Some("no suitable node (1 node has insufficient memory)".into());
        assert_eq!(
            task_error(&task),
            "no suitable node (1 node has insufficient memory)"
        );
        task.unplaceable_reason = None;
        task.node = Some("n1".into());
        task.status = TaskStatus {
            state: TaskState::Failed,
            exit_code: Some(3),
            ..TaskStatus::new(TaskState::Failed, 5)
        };
        assert_eq!(task_error(&task), "task exited with code 3");
        task.status = TaskStatus {
            health: Health::Unhealthy,
            ..TaskStatus::new(TaskState::Running, 6)
        };
        assert_eq!(task_error(&task), "unhealthy");
        assert_eq!(current_state(&task), "Running (unhealthy)");
        let mut held = Task::new("t2", "shop", "web", "h", DesiredState::Ready, 0);
        held.waiting_for = Some("waiting for db to be healthy".into());
        assert_eq!(task_error(&held), "waiting for db to be healthy");
    }
}
