//! `depends_on`: whether a service's tasks may start (each dependency's condition holds),
//! and whether a running task must restart because a dependency with `restart: true` was
//! restarted after it started.

use crate::store::{
    AppRecord, DependencyCondition, Health, Mode, ServiceSpec, Task, TaskState,
};

use super::TaskIndex;

/// Why the service's tasks must keep waiting, or `None` when every condition holds.
pub fn blocked(app: &AppRecord, spec: &ServiceSpec, tasks: &TaskIndex<'_>) -> Option<String> {
    let mut reasons = Vec::new();
    for (name, dependency) in &spec.depends_on {
        let Some(target) = app.spec.services.get(name) else {
            if dependency.required {
                reasons.push(format!(
                    "waiting for {name}: it is not a service of app {:?}",
                    app.spec.name
                ));
            }
            continue;
        };
        let live: Vec<&Task> = tasks
            .service(&app.spec.name, name)
            .iter()
            .copied()
            .filter(|t| t.is_live())
            .collect();
        let expected = match target.mode {
            Mode::Replicated => target.replicas as usize,
            Mode::Global => live.len().max(1),
        };
        if let Some(reason) = unmet(name, dependency.condition, target, &live, expected) {
            reasons.push(reason);
        }
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

fn unmet(
    name: &str,
    condition: DependencyCondition,
    target: &ServiceSpec,
    live: &[&Task],
    expected: usize,
) -> Option<String> {
    let count = |f: &dyn Fn(&Task) -> bool| live.iter().filter(|t| f(t)).count();
    match condition {
        DependencyCondition::Started => {
            let running = count(&|t| t.status.state == TaskState::Running);
            (running < expected).then(|| {
                format!("waiting for {name} to start ({running}/{expected} tasks running)")
            })
        }
        DependencyCondition::Healthy if !target.healthcheck => Some(format!(
            "waiting for {name} to be healthy, but {name} has no healthcheck so it never \
             becomes healthy (use condition service_started, or give {name} a healthcheck)"
        )),
        DependencyCondition::Healthy => {
            let healthy = count(&|t| {
                t.status.state == TaskState::Running && t.status.health == Health::Healthy
            });
            (healthy < expected).then(|| {
                format!("waiting for {name} to be healthy ({healthy}/{expected} tasks healthy)")
            })
        }
        DependencyCondition::CompletedSuccessfully => {
            let failed = live.iter().find_map(|t| match t.status.exit_code {
                Some(code) if code != 0 && t.status.state.is_terminal() => Some(code),
                _ => None,
            });
            if let Some(code) = failed {
                return Some(format!(
                    "waiting for {name} to complete successfully, but it exited with code {code}"
                ));
            }
            let done = count(&|t| {
                t.status.state == TaskState::Complete && t.status.exit_code.unwrap_or(0) == 0
            });
            (done < expected).then(|| {
                format!(
                    "waiting for {name} to complete successfully ({done}/{expected} tasks done)"
                )
            })
        }
    }
}

/// The name of a `restart: true` dependency restarted since `task` started, if any. A
/// dependency task counts as a restart when it replaced an earlier task of its slot (a
/// scale-up is not a restart).
pub fn restarted_dependency<'s>(
    app: &AppRecord,
    spec: &'s ServiceSpec,
    task: &Task,
    tasks: &TaskIndex<'_>,
) -> Option<&'s str> {
    let started = task.started_at?;
    spec.depends_on
        .iter()
        .filter(|(_, dependency)| dependency.restart)
        .find(|(name, _)| {
            let theirs = tasks.service(&app.spec.name, name);
            theirs.iter().any(|t| {
                let replaced = t.restart_count > 0
                    || theirs.iter().any(|earlier| {
                        earlier.slot == t.slot
                            && (t.slot.is_some() || earlier.node == t.node)
                            && earlier.created_at < t.created_at
                    });
                t.is_live() && replaced && t.started_at.is_some_and(|s| s > started)
            })
        })
        .map(|(name, _)| name.as_str())
}
