//! Node-local containers: the [`Containers`] manager over `<data-root>/containers/<id>/`,
//! one file per operation (create, start, stop, remove, exec, logs, inspect, stats, list).
//!
//! Layout of one container directory:
//!
//! ```text
//! <data-root>/containers/<id>/container.json   the record (record.rs), written atomically
//!                            /bundle/config.json the OCI spec (spec.rs); root.path points at
//!                                                the overlay mount of the image snapshot
//!                            /etc/{resolv.conf,hosts,hostname}  bind-mounted into the container
//! ```
//!
//! The runtime keeps its own state under the run root (`/run/berth/runc`), the shim under
//! `/run/berth/shims/<id>` (log, `exit.json`, socket: a socket path must stay short). The manager owns
//! no process: every running container belongs to its shim, so it outlives whoever created
//! it. This module does not parse command lines and never prints; the CLI and the daemon
//! sit on top of it.

mod create;
mod exec;
mod inspect;
mod list;
mod logs;
mod names;
mod network;
pub mod options;
pub mod record;
mod remove;
pub mod spec;
mod start;
mod stats;
mod stop;
mod user;
mod volumes;

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use berth_image::{Snapshotter, Store};

pub use exec::{ConsoleSocket, ExecOptions};
pub use logs::LogOptions;
pub use network::{NetworkCreate, Scope, SharedNetworks, network_hash, scope};
pub use options::{MountKind, MountSpec, NetworkMode, RunOptions};
pub use record::{Record, Status};
pub use start::{Launched, Started};
pub use stats::{Process, Stats};
pub use stop::parse_signal;

/// Errors of the container layer.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container record {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid {option} {value:?}: {reason}")]
    BadOption {
        option: String,
        value: String,
        reason: String,
    },
    #[error("no command specified: the image has no Entrypoint or Cmd")]
    NoCommand,
    #[error("cannot build the container's OCI spec: {0}")]
    Spec(String),
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container reference {0:?} is ambiguous; use more of the id")]
    Ambiguous(String),
    #[error("the container name {name:?} is already in use by container {id}")]
    NameInUse { name: String, id: String },
    #[error(
        "image {0} not found locally; `berth pull` it or load it (`berth load`, `berth import`)"
    )]
    ImageNotFound(String),
    #[error("image {image}: {source}")]
    Image {
        image: String,
        #[source]
        source: berth_image::StoreError,
    },
    #[error("container {id}: root filesystem: {source}")]
    Snapshot {
        id: String,
        #[source]
        source: berth_image::SnapshotError,
    },
    #[error("container {id}: {source}")]
    Shim {
        id: String,
        #[source]
        source: berth_shim::ShimError,
    },
    /// The runtime could not start the container's process (exit code 126 or 127).
    #[error("{message}")]
    Exec { message: String, code: i32 },
    #[error("container {id}: network: {reason}")]
    Network { id: String, reason: String },
    #[error("unable find user {user}: {reason}")]
    User { user: String, reason: String },
    #[error("container {id} is {state}: {hint}")]
    State {
        id: String,
        state: &'static str,
        hint: &'static str,
    },
    #[error("container {id}: {what}: {reason}")]
    Runtime {
        id: String,
        what: &'static str,
        reason: String,
    },
    #[error("volume {name}: {reason}")]
    Volume { name: String, reason: String },
}

impl ContainerError {
    /// The exit code Docker uses for this error in `run`: 126/127 when the command could not
    /// be executed or found, 125 for everything else berth got wrong.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Exec { code, .. } => *code,
            _ => 125,
        }
    }
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContainerError {
    let path = path.to_path_buf();
    move |source| ContainerError::Io { op, path, source }
}

/// Where things are: the data root, the runtime's state root, and the helper binaries.
#[derive(Debug, Clone)]
pub struct Config {
    /// `/var/lib/berth` by default: image store, containers, volumes, network state.
    pub data_root: PathBuf,
    /// The OCI runtime's `--root` (`/run/berth/runc`).
    pub run_root: PathBuf,
    /// `berth-runc`.
    pub runtime: PathBuf,
    /// `berth-shim`.
    pub shim: PathBuf,
    /// `berth-init`, bind-mounted for `--init`.
    pub init: PathBuf,
}

/// The node's containers.
#[derive(Debug, Clone)]
pub struct Containers {
    config: Config,
    store: Store,
    dir: PathBuf,
    /// A long-lived network manager (the daemon's, with its embedded DNS), used instead of
    /// opening one per operation; see [`Containers::with_shared_networks`].
    shared_networks: Option<network::SharedNetworks>,
}

/// An exclusive `flock` on a file, released on drop.
pub(crate) struct FileLock(File);

impl FileLock {
    /// Locks `path`, creating it and its parent directories if needed; waits for a holder.
    pub(crate) fn acquire(path: &Path) -> Result<FileLock, ContainerError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        FileLock::acquire_in(path).map_err(|(op, source)| ContainerError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }

    /// Locks `path`, creating the file but never its directory: a directory renamed or
    /// deleted meanwhile is a `NotFound` error, not a new empty directory.
    fn acquire_in(path: &Path) -> Result<FileLock, (&'static str, io::Error)> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| ("open", e))?;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(FileLock(f));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(("lock", e));
            }
        }
    }
}

impl FileLock {
    /// Locks the directory `dir` itself (not a file in it), so the lock follows the
    /// directory through a rename. With `wait` false, `None` if somebody holds it.
    pub(crate) fn on_dir(dir: &Path, wait: bool) -> io::Result<Option<FileLock>> {
        let f = File::open(dir)?;
        let mode = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(f.as_raw_fd(), mode) } == 0 {
                return Ok(Some(FileLock(f)));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor; closing it would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Containers {
    /// Opens (creating if needed) the container directory and the image store under
    /// `config.data_root`.
    pub fn open(config: Config) -> Result<Containers, ContainerError> {
        let dir = config.data_root.join("containers");
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let image_root = config.data_root.join("image");
        let store = Store::open(&image_root).map_err(|source| ContainerError::Image {
            image: image_root.display().to_string(),
            source,
        })?;
        Ok(Containers {
            config,
            store,
            dir,
            shared_networks: None,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn snapshotter(&self) -> Result<Snapshotter, ContainerError> {
        Snapshotter::new(&self.store).map_err(|source| ContainerError::Snapshot {
            id: String::new(),
            source,
        })
    }

    /// The directory of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The shim's state dir (socket, log, exit record): `<run-root>/../shims/<id>`. Not
    /// under the data root because a unix socket path must stay under 108 bytes.
    pub fn shim_dir(&self, id: &str) -> PathBuf {
        self.config
            .run_root
            .parent()
            .unwrap_or(Path::new("/run/berth"))
            .join("shims")
            .join(id)
    }

    pub(crate) fn bundle_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("bundle")
    }

    /// Held while names are checked and records created, so two `run --name x` cannot both
    /// succeed.
    pub(crate) fn names_lock(&self) -> Result<FileLock, ContainerError> {
        FileLock::acquire(&self.dir.join(".names.lock"))
    }

    /// Every container id on disk.
    pub fn ids(&self) -> Result<Vec<String>, ContainerError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("read directory", &self.dir))? {
            let entry = entry.map_err(io_err("read directory", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if names::is_id(&name) && entry.path().join(record::RECORD_FILE).is_file() {
                ids.push(name);
            }
        }
        Ok(ids)
    }

    /// Every record on disk (records that cannot be read are skipped).
    pub fn records(&self) -> Result<Vec<Record>, ContainerError> {
        Ok(self
            .ids()?
            .into_iter()
            .filter_map(|id| Record::load(&self.container_dir(&id)).ok())
            .collect())
    }

    /// Finds a container by full id, unique id prefix, or name.
    pub fn resolve(&self, query: &str) -> Result<Record, ContainerError> {
        // a full id needs no scan of every record (the agent always has full ids)
        if names::is_id(query) {
            if let Ok(r) = Record::load(&self.container_dir(query)) {
                return Ok(r);
            }
        }
        let records = self.records()?;
        names::resolve(records, query)
    }

    pub(crate) fn save(&self, record: &Record) -> Result<(), ContainerError> {
        record.save(&self.container_dir(&record.id))
    }

    /// Held around every read-modify-write of one record, so a command observing the
    /// container (`ps`) never writes back a stale copy over what `start` just saved.
    pub(crate) fn record_lock(&self, id: &str) -> Result<FileLock, ContainerError> {
        // never through `FileLock::acquire`, which would bring back the directory of a
        // container a removal has just renamed away
        let path = self.container_dir(id).join(".lock");
        FileLock::acquire_in(&path).map_err(|(op, source)| {
            if source.kind() == io::ErrorKind::NotFound {
                ContainerError::NotFound(id.to_string())
            } else {
                ContainerError::Io { op, path, source }
            }
        })
    }

    pub(crate) fn save_state(&self, record: &Record) -> Result<(), ContainerError> {
        record.save_state(&self.container_dir(&record.id))
    }
}

impl Containers {
    /// The host path of the container's root filesystem, from its bundle.
    pub fn rootfs_of(&self, id: &str) -> Result<PathBuf, ContainerError> {
        let path = self.bundle_dir(id).join("config.json");
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ContainerError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        v["root"]["path"]
            .as_str()
            .map(PathBuf::from)
            .ok_or(ContainerError::Corrupt {
                path,
                reason: "no root.path".into(),
            })
    }
}
