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
        if let Some(shim) = self.live_shim(&record) {
            let _ = shim.wait();
        }
        self.observe(&mut record);
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
                if wait_timeout(&shim, timeout).is_none() {
                    let _ = shim.kill(libc::SIGKILL, true);
                    let _ = shim.wait();
                }
            }
        }
        self.observe(&mut record);
        Ok(record)
    }
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

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("BOGUS").is_err());
        assert!(parse_signal("0").is_err());
    }
}
