//! The on-disk state of one container's shim: the file names inside its state directory,
//! the exit record written when the container's init exits, and the atomic writes that keep
//! every record whole for its readers (durable across a machine crash only where that
//! matters). It owns no process logic and opens no sockets.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The control socket (unix, mode 0600).
pub const SOCKET: &str = "shim.sock";
/// The shim's own pid, decimal, written once the shim is daemonized.
pub const SHIM_PID: &str = "shim.pid";
/// What the shim was started for ([`ShimRecord`]), written before the container is created.
pub const RECORD: &str = "shim.json";
/// The container init's host pid, written by the runtime (`--pid-file`).
pub const CONTAINER_PID: &str = "container.pid";
/// The exit record ([`ExitStatus`]), written atomically once, when init has exited.
pub const EXIT: &str = "exit.json";
/// The current log file; rotated files get `.1`, `.2`, … (`.1` is the newest).
pub const LOG: &str = "container.log";
/// The runtime's own log (`--log`, JSON), where its errors land.
pub const RUNTIME_LOG: &str = "runtime.log";
/// The console socket the runtime hands the pty master to (only with `--tty`).
pub const CONSOLE_SOCKET: &str = "console.sock";

/// Errors reading or writing a state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: malformed record: {source}")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// How the container's init ended. `code` follows the shell convention: the exit status, or
/// 128 + signal number when a signal killed it (so SIGKILL gives 137).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Host pid of the container's init.
    pub pid: i32,
    pub code: i32,
    /// The signal that killed init, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// RFC 3339 (nanoseconds, UTC) time at which the shim reaped init.
    pub exited_at: String,
}

impl ExitStatus {
    /// Builds the record from a wait status of `pid`.
    pub fn from_wait(pid: i32, exited_code: Option<i32>, signal: Option<i32>, at: String) -> Self {
        let code = match (exited_code, signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        };
        ExitStatus {
            pid,
            code,
            signal,
            exited_at: at,
        }
    }
}

/// What a shim was started for; recovery reads it to name the container again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    pub tty: bool,
}

/// Writes `data` to `path` so that readers see either the old file or the whole new one:
/// write to a temporary sibling, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StateError> {
    write_replace(path, data, true)
}

/// [`write_atomic`] without the fsyncs, for files that describe the live shim itself (its
/// pid, what it was started for): no shim outlives a machine crash, so durability across
/// one buys nothing, while the rename still keeps the file whole for a daemon that
/// restarts (or a reader racing the write). Saves two disk flushes on every start.
pub fn write_volatile(path: &Path, data: &[u8]) -> Result<(), StateError> {
    write_replace(path, data, false)
}

fn write_replace(path: &Path, data: &[u8], durable: bool) -> Result<(), StateError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { path, source }
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    if durable {
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if !durable {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory entry is.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Malformed {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads a decimal pid file; `Ok(None)` when it does not exist.
pub fn read_pid(path: &Path) -> Result<Option<i32>, StateError> {
    match fs::read_to_string(path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| StateError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, "not a pid"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads the exit record of the container whose state directory is `dir`.
pub fn read_exit(dir: &Path) -> Result<Option<ExitStatus>, StateError> {
    read_json(&dir.join(EXIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_shell_convention() {
        let e = ExitStatus::from_wait(7, None, Some(9), "t".into());
        assert_eq!((e.code, e.signal), (137, Some(9)));
        let e = ExitStatus::from_wait(7, Some(42), None, "t".into());
        assert_eq!((e.code, e.signal), (42, None));
    }

    #[test]
    fn volatile_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(SHIM_PID);
        write_volatile(&p, b"123456").unwrap();
        write_volatile(&p, b"42").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"42");
        assert!(!p.with_extension("tmp").exists());
    }

    #[test]
    fn atomic_write_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(EXIT);
        assert!(read_exit(dir.path()).unwrap().is_none());
        let e = ExitStatus::from_wait(1, Some(3), None, "now".into());
        write_atomic(&p, &serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(read_exit(dir.path()).unwrap(), Some(e));
        assert!(!p.with_extension("tmp").exists());
        fs::write(&p, b"{").unwrap();
        assert!(matches!(
            read_exit(dir.path()),
            Err(StateError::Malformed { .. })
        ));
    }
}
