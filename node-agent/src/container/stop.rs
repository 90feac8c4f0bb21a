//! `stop`, `kill` and `wait`: signals go through the shim (which runs the runtime's `kill`);
//! exits are read from the shim, which records them whether or not anyone is waiting.

use std::sync::mpsc;
use std::time::Duration;

use berth_shim::{ExitStatus, ShimHandle};

use super::{ContainerError, Containers, Record};

/// Parses a signal name or number (`TERM`, `SIGTERM`, `15`).
pub fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    let bad = || ContainerError::BadOption {
        option: "signal".into(),
        value: s.into(),
        reason: "not a signal name or number".into(),
    };
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    Ok(match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "PIPE" => libc::SIGPIPE,
        _ => return Err(bad()),
    })
}

impl Containers {
    fn live_shim(&self, record: &Record) -> Option<ShimHandle> {
        ShimHandle::connect(&self.shim_dir(&record.id)).ok()
    }

    fn not_running(record: &Record) -> ContainerError {
        ContainerError::State {
            id: record.short_id().into(),
            state: "not running",
            hint: "start it first",
        }
    }

    /// Sends `signal` to the container's init.
    pub fn kill(&self, query: &str, signal: i32) -> Result<Record, ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status != super::Status::Running {
            return Err(Self::not_running(&record));
        }
        let shim = self
            .live_shim(&record)
            .ok_or_else(|| Self::not_running(&record))?;
        shim.kill(signal, false)
            .map_err(|source| ContainerError::Shim {
                id: record.id.clone(),
                source,
            })?;
        Ok(record)
    }

    /// Waits for the container to exit and returns its exit status. A container that has
    /// already exited answers at once.
    pub fn wait(&self, query: &str) -> Result<(Record, i32), ContainerError> {
        let mut record = self.resolve(query)?;
        let exit = self.live_shim(&record).and_then(|shim| shim.wait().ok());
        self.observe(&mut record);
        // Still "running" after the observation means the record on disk is gone: the
        // container was removed as it exited (`--rm`). The shim's answer, if there was one,
        // is its exit; without one the exit is unknown here, and a stale record must not
        // pass for it.
        if record.state.status == super::Status::Running {
            match exit {
                Some(exit) => self.record_exit(&mut record, exit.code, &exit.exited_at),
                None => return Err(ContainerError::NotFound(query.to_string())),
            }
        }
        Ok((record.clone(), record.state.exit_code))
    }

    /// The stop signal (the image's `StopSignal`, else SIGTERM), then SIGKILL to every
    /// process after `timeout`. Stopping a stopped container is not an error.
    pub fn stop(&self, query: &str, timeout: Duration) -> Result<Record, ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status == super::Status::Running {
            if let Some(shim) = self.live_shim(&record) {
                let sig = record
                    .stop_signal
                    .as_deref()
                    .map(parse_signal)
                    .transpose()?
                    .unwrap_or(libc::SIGTERM);
                let _ = shim.kill(sig, false);
                // A namespace's init that has no handler for the signal never receives it
                // (the kernel drops it): waiting out the grace period would change nothing.
                let futile = std::fs::read_to_string(format!("/proc/{}/status", record.state.pid))
                    .is_ok_and(|status| signal_is_discarded(&status, sig));
                if futile || wait_timeout(&shim, timeout).is_none() {
                    let _ = shim.kill(libc::SIGKILL, true);
                    let _ = shim.wait();
                }
            }
        }
        self.observe(&mut record);
        Ok(record)
    }
}

/// Whether `sig`, sent from outside, is dropped by the kernel for the process whose
/// `/proc/<pid>/status` is `status` without the program having asked for that: true for
/// the init of a PID namespace (its innermost `NSpid` is 1) that leaves the signal at its
/// default disposition, since such an init gets only the signals it catches (SIGKILL
/// aside). A program that ignores the signal on purpose (`trap '' TERM`) may be finishing
/// its work and keeps its grace period. Read after sending, so a handler installed in time
/// counts.
pub fn signal_is_discarded(status: &str, sig: i32) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let ns_init = field("NSpid:").is_some_and(|v| {
        let ids: Vec<&str> = v.split_whitespace().collect();
        ids.len() > 1 && ids.last() == Some(&"1")
    });
    let in_mask = |name: &str| {
        field(name)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .is_some_and(|mask| (1..=64).contains(&sig) && mask & (1u64 << (sig - 1)) != 0)
    };
    ns_init
        && field("SigCgt:").is_some()
        && !in_mask("SigCgt:")
        && !in_mask("SigIgn:")
        && sig != libc::SIGKILL
}

/// `shim.wait()` bounded by `timeout`; `None` when the container is still running.
pub(crate) fn wait_timeout(shim: &ShimHandle, timeout: Duration) -> Option<ExitStatus> {
    let (tx, rx) = mpsc::channel();
    let s = shim.clone();
    std::thread::spawn(move || {
        let _ = tx.send(s.wait());
    });
    rx.recv_timeout(timeout).ok().and_then(|r| r.ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INIT_NO_HANDLERS: &str =
        "Name:\thttpd\nNSpid:\t4242\t1\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n";
    const INIT_CATCHES_TERM: &str = "Name:\tsh\nNSpid:\t4242\t1\nSigCgt:\t0000000000004000\n";
    const HOST_PROCESS: &str = "Name:\tsleep\nNSpid:\t4242\nSigCgt:\t0000000000000000\n";

    #[test]
    fn only_an_init_without_a_handler_drops_the_signal() {
        assert!(signal_is_discarded(INIT_NO_HANDLERS, libc::SIGTERM));
        assert!(signal_is_discarded(INIT_NO_HANDLERS, libc::SIGINT));
        // bit 14 (0x4000) is SIGTERM (15)
        assert!(!signal_is_discarded(INIT_CATCHES_TERM, libc::SIGTERM));
        assert!(signal_is_discarded(INIT_CATCHES_TERM, libc::SIGQUIT));
        // not a namespace init (pid: host): the default action applies
        assert!(!signal_is_discarded(HOST_PROCESS, libc::SIGTERM));
        assert!(!signal_is_discarded(INIT_NO_HANDLERS, libc::SIGKILL));
        assert!(!signal_is_discarded("garbage", libc::SIGTERM));
        // ignored on purpose: the program may be finishing its work, the grace period holds
        let ignores = "NSpid:\t9\t1\nSigIgn:\t0000000000004000\nSigCgt:\t0000000000000000\n";
        assert!(!signal_is_discarded(ignores, libc::SIGTERM));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("0").is_err());
    }
}
