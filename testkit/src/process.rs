//! Child processes a test starts, always bounded: one-shot commands run under a deadline, and
//! daemons are waited for with a deadline (failing with their log if they exit or never get
//! ready) and killed when their guard goes. A test must never be able to hang on a child.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// `timeout --kill-after=5 SECS PROGRAM`: add the program's arguments. A hung program is
/// killed and the test sees exit 124 (or 137) instead of hanging.
pub fn bounded(secs: u64, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("timeout");
    c.arg("--kill-after=5").arg(secs.to_string()).arg(program);
    c
}

/// Runs `command` to completion (stdin closed, output captured), killing it and failing the
/// test if it takes more than `secs`.
pub fn output_within(mut command: Command, secs: u64) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{command:?} did not finish in {secs}s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A daemon a test started (berthd, berth-docker-api), logging to a file; SIGKILLed and
/// reaped when dropped if the test did not stop it.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

/// Where a daemon's standard output goes; its standard error always goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    Log,
    Null,
}

impl Daemon {
    /// Spawns `command` with stdin closed and stderr (and stdout with [`Stdout::Log`])
    /// written to `log`, which is created anew.
    pub fn spawn(name: &str, mut command: Command, log: &Path, stdout: Stdout) -> Daemon {
        let file = File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let out = match stdout {
            Stdout::Log => Stdio::from(file.try_clone().expect("log")),
            Stdout::Null => Stdio::null(),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Daemon {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// Waits until `ready()` holds, failing with the log if the daemon exits first or
    /// `limit` passes.
    pub fn wait_ready(&mut self, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !ready() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("{} exited ({status}): {}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not {what}: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// `kill -9` and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit; SIGKILL and `None` if it does not
    /// come.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child, not yet reaped, so the pid is still its own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGTERM to `pid` (a process the test's own data root names, not a child of ours), then
/// SIGKILL if it is still there after `limit`.
pub fn stop_pid(pid: i32, limit: Duration) {
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    // SAFETY: kill(2) on a daemon of the test's own data root, checked by the caller.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + limit;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        // SAFETY: as above; it did not stop in time.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
