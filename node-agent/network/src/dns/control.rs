//! The client side of `berth-dns`: write the state file, and make sure a server of this
//! state dir is running and has applied it — started on demand (found in
//! `BERTH_LIBEXEC_DIR` or next to the current executable), signalled with SIGHUP when it is
//! already up. Whether one runs is told by its lock (`dns.lock`, held for its whole life),
//! never by the pid file alone, so a stale pid is never signalled. No sockets here.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::service::{APPLIED_FILE, LOCK_FILE, PID_FILE};
use super::state::{DnsState, STATE_FILE};

/// The binary's name.
pub const BINARY: &str = "berth-dns";

/// How long a change may take to reach the server.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of driving `berth-dns`.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "berth-dns not found (looked in {looked}); build the workspace (`cargo build --workspace`) or set BERTH_LIBEXEC_DIR"
    )]
    NotFound { looked: String },
    #[error("berth-dns ({binary}) failed to start: {reason}")]
    Start { binary: PathBuf, reason: String },
    #[error("berth-dns for {dir} did not apply generation {generation} within {secs} s")]
    Timeout {
        dir: PathBuf,
        generation: u64,
        secs: u64,
    },
}

/// Finds `berth-dns`: `BERTH_LIBEXEC_DIR`, else the directory of the current executable or
/// its parent (test binaries live in `deps/`).
pub fn find_binary() -> Result<PathBuf, ControlError> {
    let dirs: Vec<PathBuf> = match std::env::var_os("BERTH_LIBEXEC_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => {
            let exe = std::env::current_exe().unwrap_or_default();
            let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
            let parent = dir.parent().map(PathBuf::from).unwrap_or_default();
            vec![dir, parent]
        }
    };
    dirs.iter()
        .map(|d| d.join(BINARY))
        .find(|p| p.is_file())
        .ok_or_else(|| ControlError::NotFound {
            looked: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// One state dir's DNS server, seen from outside.
#[derive(Debug, Clone)]
pub struct DnsControl {
    dir: PathBuf,
    /// `None`: found with [`find_binary`] when first needed.
    binary: Option<PathBuf>,
}

impl DnsControl {
    pub fn new(state_dir: &Path, binary: Option<PathBuf>) -> Self {
        DnsControl {
            dir: state_dir.to_path_buf(),
            binary,
        }
    }

    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ControlError {
        let path = path.to_path_buf();
        move |source| ControlError::Io { op, path, source }
    }

    /// Whether a server holds this state dir's lock.
    pub fn running(&self) -> bool {
        let path = self.dir.join(LOCK_FILE);
        let Ok(f) = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            return false;
        };
        // SAFETY: flock on a descriptor we own; closing it (drop) releases a lock we got.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        r != 0
    }

    /// The server's pid, if it runs and its pid file names a `berth-dns` process.
    fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join(PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == BINARY).then_some(pid)
    }

    fn applied(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(APPLIED_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts the server and waits until it is serving (its first process exits once the
    /// daemon's listeners are up).
    fn spawn(&self) -> Result<(), ControlError> {
        let binary = match &self.binary {
            Some(b) => b.clone(),
            None => find_binary()?,
        };
        // nothing of ours may stay open in the daemon: a caller collecting our output
        // would wait for its end forever
        let out = std::process::Command::new(&binary)
            .arg("--state-dir")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| ControlError::Start {
                binary: binary.clone(),
                reason: e.to_string(),
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ControlError::Start {
                binary,
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Writes `state` (bumping its generation) and returns once a server has applied it:
    /// listeners for every network it names, or, when it names none, no server left.
    /// Blocking: call it from a blocking thread.
    pub fn apply(&self, state: &mut DnsState) -> Result<(), ControlError> {
        self.write(state)?;
        let deadline = Instant::now() + APPLY_TIMEOUT;
        let mut signalled = false;
        loop {
            if state.networks.is_empty() {
                if !self.running() {
                    return Ok(());
                }
            } else if self.applied().is_some_and(|g| g >= state.generation) && self.running() {
                return Ok(());
            } else if !self.running() {
                self.spawn()?;
                continue;
            }
            if !signalled {
                if let Some(pid) = self.pid() {
                    // SAFETY: kill(2) with a pid just checked to be a berth-dns process.
                    unsafe { libc::kill(pid, libc::SIGHUP) };
                    signalled = true;
                }
            }
            if Instant::now() > deadline {
                return Err(ControlError::Timeout {
                    dir: self.dir.clone(),
                    generation: state.generation,
                    secs: APPLY_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Writes `state` (bumping its generation) without waiting: names change on the server's
    /// next answer, since it checks the file before each one.
    pub fn write(&self, state: &mut DnsState) -> Result<(), ControlError> {
        let path = self.dir.join(STATE_FILE);
        // the generation only grows, even across a state dir whose file was deleted
        let on_disk = DnsState::load(&path).map(|s| s.generation).unwrap_or(0);
        let applied = self.applied().unwrap_or(0);
        state.generation = state.generation.max(on_disk).max(applied) + 1;
        state.save(&path).map_err(Self::io("write", &path))
    }

    /// Stops the server (SIGTERM) and waits, bounded, until it is gone.
    pub fn stop(&self) {
        let deadline = Instant::now() + APPLY_TIMEOUT;
        while self.running() && Instant::now() < deadline {
            if let Some(pid) = self.pid() {
                // SAFETY: kill(2) with a pid just checked to be a berth-dns process.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
