//! Finding every container again after the agent restarts, from the state directories
//! under one root plus the shims' sockets: a shim that answers is reconnected, a dead shim
//! with an exit record means a stopped container, anything else is reported as lost with
//! the reason. It reads; it never kills, deletes or restarts anything.

use std::fs;
use std::path::{Path, PathBuf};

use crate::client::{ShimError, ShimHandle};
use crate::protocol::ContainerState;
use crate::state::{self, ExitStatus, ShimRecord};

/// What recovery found for one state directory.
#[derive(Debug)]
pub enum Recovered {
    /// The shim answered; the container is created, running, or stopped with its shim
    /// still up.
    Live {
        handle: ShimHandle,
        state: ContainerState,
    },
    /// The shim is gone but recorded the exit before it went.
    Stopped { exit: ExitStatus },
    /// Neither a live shim nor an exit record.
    Lost { reason: String },
}

#[derive(Debug)]
pub struct RecoveredContainer {
    /// From `shim.json`, or the directory's name when that is unreadable.
    pub id: String,
    pub state_dir: PathBuf,
    pub outcome: Recovered,
}

/// Looks at every directory under `state_root` (one per container).
pub fn recover(state_root: &Path) -> Result<Vec<RecoveredContainer>, ShimError> {
    let entries = match fs::read_dir(state_root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ShimError::Io {
                path: state_root.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if dir.is_dir() {
            out.push(recover_one(&dir));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Looks at one container's state directory.
pub fn recover_one(dir: &Path) -> RecoveredContainer {
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let record = state::read_json::<ShimRecord>(&dir.join(state::RECORD));
    let id = match &record {
        Ok(Some(r)) => r.id.clone(),
        _ => dir_name,
    };
    let found = |outcome| RecoveredContainer {
        id: id.clone(),
        state_dir: dir.to_path_buf(),
        outcome,
    };
    let shim_error = match ShimHandle::connect(dir) {
        Ok(handle) => match handle.state() {
            Ok(state) => return found(Recovered::Live { handle, state }),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    match state::read_exit(dir) {
        Ok(Some(exit)) => return found(Recovered::Stopped { exit }),
        Ok(None) => {}
        Err(e) => {
            return found(Recovered::Lost {
                reason: format!("shim not answering ({shim_error}) and {e}"),
            });
        }
    }
    let reason = match record {
        Err(e) => format!("not a shim state directory: {e}"),
        Ok(None) => format!("not a shim state directory: no {}", state::RECORD),
        Ok(Some(_)) => {
            let init = state::read_pid(&dir.join(state::CONTAINER_PID))
                .ok()
                .flatten();
            let alive = init.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            match init {
                Some(p) if alive => format!(
                    "shim not answering ({shim_error}) and no exit record; \
                     container init {p} is still running unsupervised"
                ),
                Some(p) => format!(
                    "shim not answering ({shim_error}) and no exit record; \
                     container init {p} is gone, exit status unknown"
                ),
                None => {
                    format!("shim not answering ({shim_error}); the container was never created")
                }
            }
        }
    };
    found(Recovered::Lost { reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shim_dir(root: &Path, id: &str) -> PathBuf {
        let dir = root.join(id);
        fs::create_dir(&dir).unwrap();
        let rec = ShimRecord {
            id: id.into(),
            bundle: "/b".into(),
            runtime: "/r".into(),
            runtime_root: "/rr".into(),
            tty: false,
        };
        fs::write(dir.join(state::RECORD), serde_json::to_vec(&rec).unwrap()).unwrap();
        dir
    }

    #[test]
    fn without_a_shim_the_disk_decides() {
        let root = tempfile::tempdir().unwrap();
        let stopped = shim_dir(root.path(), "a");
        let e = ExitStatus::from_wait(10, Some(3), None, "t".into());
        fs::write(stopped.join(state::EXIT), serde_json::to_vec(&e).unwrap()).unwrap();
        let broken = shim_dir(root.path(), "b");
        fs::write(broken.join(state::EXIT), b"{").unwrap();
        let gone = shim_dir(root.path(), "c");
        // Pid 0 never names a process in /proc.
        fs::write(gone.join(state::CONTAINER_PID), b"0").unwrap();
        // "d": a record only, as when the shim died before the runtime created anything.
        shim_dir(root.path(), "d");

        let found = recover(root.path()).unwrap();
        let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        match &found[0].outcome {
            Recovered::Stopped { exit } => assert_eq!(exit, &e),
            other => panic!("{other:?}"),
        }
        let reason = |i: usize| match &found[i].outcome {
            Recovered::Lost { reason } => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert!(reason(1).contains("malformed"), "{}", reason(1));
        assert!(
            reason(2).contains("is gone, exit status unknown"),
            "{}",
            reason(2)
        );
        assert!(reason(3).contains("never created"), "{}", reason(3));
        assert!(reason(3).contains("shim.sock"), "{}", reason(3));
    }
}
