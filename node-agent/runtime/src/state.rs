//! The state directory of one container (`<root>/<id>/`) and the `state` JSON.
//!
//! Layout: `state.json` (what this module stores), `exec.fifo` (present from create until
//! start). The status is derived, never stored: process gone → stopped; fifo present →
//! created; cgroup frozen → paused; else running.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// Errors reading or writing container state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} already exists")]
    Exists { id: String },
    #[error("invalid container id {id:?}: use letters, digits, '_', '-', '.' (not first)")]
    InvalidId { id: String },
    #[error("state {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("state {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Lifecycle status, spelled as runc prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What berth-runc keeps about a container between invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    /// Host pid of the container's init (0 until known).
    pub pid: i32,
    /// Start time of that pid (`/proc/PID/stat` field 22) to detect pid reuse.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 with nanoseconds, UTC.
    pub created: String,
    pub cgroup_path: PathBuf,
    pub config: Spec,
    #[serde(default)]
    pub use_systemd: bool,
}

/// `runc state` output, field for field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateJson {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

/// The OCI state hooks receive on stdin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub annotations: HashMap<String, String>,
}

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId { id: id.into() })
    }
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl Saved {
    pub fn load(root: &Path, id: &str) -> Result<Saved, StateError> {
        validate_id(id)?;
        let p = dir(root, id).join(STATE_FILE);
        let text = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StateError::NotFound { id: id.into() }
            } else {
                StateError::Io {
                    path: p.clone(),
                    source: e,
                }
            }
        })?;
        serde_json::from_slice(&text).map_err(|e| StateError::Json { path: p, source: e })
    }

    /// Writes atomically (temp file + rename) so readers never see half a file.
    pub fn save(&self, root: &Path) -> Result<(), StateError> {
        let d = dir(root, &self.id);
        let tmp = d.join(".state.json.tmp");
        let p = d.join(STATE_FILE);
        let data = serde_json::to_vec(self).map_err(|e| StateError::Json {
            path: p.clone(),
            source: e,
        })?;
        fs::write(&tmp, data).map_err(|e| StateError::Io {
            path: tmp.clone(),
            source: e,
        })?;
        fs::rename(&tmp, &p).map_err(|e| StateError::Io { path: p, source: e })
    }

    pub fn annotations(&self) -> HashMap<String, String> {
        self.config
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    pub fn state_json(&self, status: Status) -> StateJson {
        let ann = self.annotations();
        StateJson {
            oci_version: self.config.version().clone(),
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: String::new(),
            annotations: (!ann.is_empty()).then_some(ann),
        }
    }

    pub fn hook_state(&self, status: Status) -> HookState {
        HookState {
            oci_version: self.config.version().clone(),
            id: self.id.clone(),
            status,
            pid: self.pid,
            bundle: self.bundle.clone(),
            annotations: self.annotations(),
        }
    }

    /// Whether the recorded init process is still the one we started and not a zombie.
    pub fn alive(&self) -> bool {
        self.pid > 0
            && match proc_stat(self.pid) {
                Some((state, start)) => state != 'Z' && state != 'X' && start == self.pid_start,
                None => false,
            }
    }
}

/// `(state letter, start time)` from `/proc/PID/stat`.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some((f.first()?.chars().next()?, f.get(19)?.parse().ok()?))
}

/// Current time as RFC 3339 with nanoseconds in UTC (`2024-01-02T03:04:05.123456789Z`).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Pure: formats a Unix time (days-from-civil, Howard Hinnant's algorithm).
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn ids() {
        assert!(validate_id("web-1.a_b").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn state_json_shape_matches_runc() {
        let s = Saved {
            id: "c".into(),
            pid: 7,
            pid_start: 1,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339(0, 0),
            cgroup_path: "/berth/c".into(),
            config: Spec::default(),
            use_systemd: false,
        };
        let v = serde_json::to_value(s.state_json(Status::Running)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "ociVersion",
            "id",
            "pid",
            "status",
            "bundle",
            "rootfs",
            "created",
            "owner",
        ] {
            assert!(keys.contains(&k), "{k} missing in {v}");
        }
        assert_eq!(v["status"], "running");
        assert_eq!(
            serde_json::to_value(s.state_json(Status::Stopped)).unwrap()["pid"],
            0
        );
    }

    #[test]
    fn stat_of_self() {
        let (st, start) = proc_stat(std::process::id() as i32).unwrap();
        assert!(st == 'R' || st == 'S');
        assert!(start > 0);
    }
}
