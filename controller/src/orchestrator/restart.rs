//! Whether and when a task that stopped (or turned unhealthy) is replaced, from its
//! service's restart policy: exponential back-off, attempt limits, the counting window.

use crate::store::{Health, RestartCondition, RestartPolicy, Task, TaskState, Timestamp};

/// The first back-off delay; it doubles with every restart of the slot.
pub const BACKOFF_START_MS: u64 = 100;
/// The longest back-off delay.
pub const BACKOFF_CAP_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    /// The task is running (and not unhealthy): nothing to decide.
    Running,
    /// Replace it now.
    Now,
    /// Replace it at this time (back-off).
    At(Timestamp),
    /// The policy says the task stays as it ended.
    No,
    /// The policy allowed restarts, but the attempts are used up.
    GiveUp { attempts: u32 },
}

/// The delay before restart number `restart_count + 1`.
pub fn delay(policy: &RestartPolicy, restart_count: u32) -> u64 {
    policy.delay.unwrap_or_else(|| {
        let factor = 1u64.checked_shl(restart_count.min(32)).unwrap_or(u64::MAX);
        BACKOFF_START_MS.saturating_mul(factor).min(BACKOFF_CAP_MS)
    })
}

/// Did the task end badly (as opposed to finishing its work)?
pub fn failed(task: &Task) -> bool {
    match task.status.state {
        TaskState::Failed | TaskState::Rejected | TaskState::Orphaned => true,
        TaskState::Complete | TaskState::Shutdown => task.status.exit_code.unwrap_or(0) != 0,
        _ => task.status.health == Health::Unhealthy,
    }
}

fn ended(task: &Task) -> bool {
    task.status.state.is_terminal()
        || (task.status.state == TaskState::Running && task.status.health == Health::Unhealthy)
}

/// Restarts counted against `max_attempts`: all of them, or those inside the window.
pub fn attempts(policy: &RestartPolicy, task: &Task, now: Timestamp) -> u32 {
    match policy.window {
        Some(window) => {
            let since = now.saturating_sub(window);
            task.restart_history.iter().filter(|t| **t >= since).count() as u32
        }
        None => task.restart_count,
    }
}

pub fn decide(policy: &RestartPolicy, task: &Task, now: Timestamp) -> RestartDecision {
    if !ended(task) {
        return RestartDecision::Running;
    }
    let wanted = match policy.condition {
        RestartCondition::Never => false,
        RestartCondition::OnFailure => failed(task),
        RestartCondition::Always | RestartCondition::UnlessStopped => true,
    };
    if !wanted {
        return RestartDecision::No;
    }
    if let Some(max) = policy.max_attempts {
        let attempts = attempts(policy, task, now);
        if attempts >= max {
            return RestartDecision::GiveUp { attempts };
        }
    }
    let due = task
        .status
        .timestamp
        .saturating_add(delay(policy, task.restart_count));
    if now >= due {
        RestartDecision::Now
    } else {
        RestartDecision::At(due)
    }
}

/// The restart history a replacement carries: kept only when a window counts it, and only
/// as long as the window needs.
pub fn next_history(policy: &RestartPolicy, task: &Task, now: Timestamp) -> Vec<Timestamp> {
    let Some(window) = policy.window else {
        return Vec::new();
    };
    let since = now.saturating_sub(window);
    let mut history: Vec<Timestamp> = task
        .restart_history
        .iter()
        .copied()
        .filter(|t| *t >= since)
        .collect();
    history.push(now);
    history
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DesiredState;

    fn exited(code: i32, at: Timestamp, restarts: u32) -> Task {
        let mut task = Task::new("t", "a", "s", "h", DesiredState::Running, 0);
        task.status.state = if code == 0 {
            TaskState::Complete
        } else {
            TaskState::Failed
        };
        task.status.exit_code = Some(code);
        task.status.timestamp = at;
        task.restart_count = restarts;
        task
    }

    #[test]
    fn backoff_doubles_from_100ms_and_caps_at_10s() {
        let policy = RestartPolicy::new(RestartCondition::Always);
        let delays: Vec<u64> = (0..10).map(|n| delay(&policy, n)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(delay(&policy, u32::MAX), BACKOFF_CAP_MS);
        let explicit = RestartPolicy {
            delay: Some(5_000),
            ..policy
        };
        assert_eq!(delay(&explicit, 7), 5_000);
    }

    #[test]
    fn the_decision_waits_for_the_backoff() {
        let policy = RestartPolicy::new(RestartCondition::Always);
        let task = exited(1, 1_000, 3); // fourth restart: 800 ms
        assert_eq!(decide(&policy, &task, 1_500), RestartDecision::At(1_800));
        assert_eq!(decide(&policy, &task, 1_800), RestartDecision::Now);
    }

    #[test]
    fn conditions_decide_by_exit_code() {
        use RestartCondition::*;
        let cases = [
            (Never, 1, RestartDecision::No),
            (Never, 0, RestartDecision::No),
            (OnFailure, 1, RestartDecision::Now),
            (OnFailure, 0, RestartDecision::No),
            (Always, 0, RestartDecision::Now),
            (UnlessStopped, 0, RestartDecision::Now),
            (UnlessStopped, 137, RestartDecision::Now),
        ];
        for (condition, code, expected) in cases {
            let policy = RestartPolicy::new(condition);
            assert_eq!(
                decide(&policy, &exited(code, 0, 0), 60_000),
                expected,
                "{condition:?} exit {code}"
            );
        }
        let mut running = exited(0, 0, 0);
        running.status.state = TaskState::Running;
        let policy = RestartPolicy::new(Always);
        assert_eq!(decide(&policy, &running, 1), RestartDecision::Running);
        running.status.health = Health::Unhealthy;
        assert_eq!(decide(&policy, &running, 60_000), RestartDecision::Now);
        let no = RestartPolicy::new(Never);
        assert_eq!(decide(&no, &running, 60_000), RestartDecision::No);
    }

    #[test]
    fn max_attempts_gives_up_and_a_window_forgets_old_restarts() {
        let policy = RestartPolicy::parse_compose("on-failure:3").unwrap();
        for restarts in 0..3 {
            assert_eq!(
                decide(&policy, &exited(1, 0, restarts), 60_000),
                RestartDecision::Now
            );
        }
        assert_eq!(
            decide(&policy, &exited(1, 0, 3), 60_000),
            RestartDecision::GiveUp { attempts: 3 }
        );
        let windowed = RestartPolicy {
            max_attempts: Some(2),
            window: Some(10_000),
            delay: Some(0),
            ..RestartPolicy::new(RestartCondition::Always)
        };
        let mut task = exited(1, 50_000, 5);
        task.restart_history = vec![30_000, 45_000];
        // Only the restart at 45 s lies within 10 s of now.
        assert_eq!(decide(&windowed, &task, 50_000), RestartDecision::Now);
        assert_eq!(next_history(&windowed, &task, 50_000), vec![45_000, 50_000]);
        task.restart_history = vec![41_000, 45_000];
        assert_eq!(
            decide(&windowed, &task, 50_000),
            RestartDecision::GiveUp { attempts: 2 }
        );
    }
}
