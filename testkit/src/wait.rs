//! Waiting on a condition with a deadline, never a fixed sleep: a condition that does not
//! come fails the test with what it waited for.

use std::time::{Duration, Instant};

/// Polls `cond` every 50 ms until it holds; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    wait_for_explained(what, limit, cond, String::new);
}

/// [`wait_for`], adding `explain()` (a daemon's log, the last state seen) to the panic.
pub fn wait_for_explained(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            let more = explain();
            if more.is_empty() {
                panic!("timed out waiting for {what}");
            }
            panic!("timed out waiting for {what}\n{more}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of `text` (a log in a failure message).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
