//! The container record, `<data-root>/containers/<id>/container.json`: what berth knows of a
//! container besides what the shim and the runtime know. Written atomically (temporary file,
//! fsync, rename, directory fsync), so a crash leaves the old record or the new one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ContainerError;
use super::options::RunOptions;

pub const RECORD_FILE: &str = "container.json";

/// One network endpoint of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EndpointRecord {
    /// The berth network id.
    pub network: String,
    pub ip: String,
    pub gateway: String,
    pub prefix_len: u8,
    pub mac: String,
    /// Published ports as given (`127.0.0.1:8080:80/tcp`).
    pub ports: Vec<String>,
}

/// A mount as resolved on the host (for inspect and for removal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    #[serde(rename = "type")]
    pub kind: String,
    /// Volume name, for volumes.
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    pub read_only: bool,
}

/// What berth last observed of the container's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StateRecord {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// RFC 3339; empty until the first start.
    pub started_at: String,
    pub finished_at: String,
    /// The last berth error starting it, if any.
    pub error: String,
}

/// The record of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    /// The reference the image was resolved from (normalized, `docker.io/library/busybox:latest`).
    pub image: String,
    /// The record target (manifest or index digest).
    pub image_digest: String,
    /// The image id (config digest).
    pub image_id: String,
    pub config: RunOptions,
    /// The process arguments, as in the spec (`--init` included).
    pub args: Vec<String>,
    /// The image's `StopSignal`, if any.
    pub stop_signal: Option<String>,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub endpoints: Vec<EndpointRecord>,
    pub mounts: Vec<MountRecord>,
    pub state: StateRecord,
}

impl Record {
    pub fn load(dir: &Path) -> Result<Record, ContainerError> {
        let path = dir.join(RECORD_FILE);
        let bytes = fs::read(&path).map_err(|source| ContainerError::Io {
            op: "read",
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes the record durably (creation, configuration changes).
    pub fn save(&self, dir: &Path) -> Result<(), ContainerError> {
        write_atomic(&dir.join(RECORD_FILE), &self.to_json(dir)?)
    }

    /// Writes the record atomically but without fsync: for state updates, which every
    /// command re-derives from the shim anyway, so losing one to a crash costs nothing.
    pub fn save_state(&self, dir: &Path) -> Result<(), ContainerError> {
        write_replace(&dir.join(RECORD_FILE), &self.to_json(dir)?, false)
    }

    fn to_json(&self, dir: &Path) -> Result<Vec<u8>, ContainerError> {
        serde_json::to_vec_pretty(self).map_err(|e| ContainerError::Corrupt {
            path: dir.join(RECORD_FILE),
            reason: e.to_string(),
        })
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Writes `path` through a temporary file, fsync, rename and a directory fsync.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    write_replace(path, data, true)
}

/// Writes `path` through a temporary file and a rename, without fsync: readers see the old
/// file or the whole new one, but a crash may lose it. For files of containers that do not
/// outlive a crash in any useful way (`--rm`).
pub fn write_volatile(path: &Path, data: &[u8]) -> Result<(), ContainerError> {
    write_replace(path, data, false)
}

fn write_replace(path: &Path, data: &[u8], durable: bool) -> Result<(), ContainerError> {
    let io = |op: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| ContainerError::Io { op, path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{seq}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record"),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(data).map_err(io("write", &tmp))?;
    if durable {
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    if !durable {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))?;
    Ok(())
}
