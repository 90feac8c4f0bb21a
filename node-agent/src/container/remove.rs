//! `remove`: kill (with `force`), delete the runtime's state through the shim, detach the
//! network (ports, veth, address), unmount and delete the root filesystem, and delete the
//! container directory. Named volumes and bind sources are left alone; the container's
//! anonymous volumes go too with `volumes` (`rm -v`) or when it was run with `--rm`.

use std::time::Duration;

use berth_shim::ShimHandle;

use super::record::Status;
use super::start::wait_shim_gone;
use super::{ContainerError, Containers};

/// The name a container's directory takes while it is being removed.
const RETIRED_PREFIX: &str = ".removing-";

impl Containers {
    /// Removes container `query`; a running one only with `force`.
    pub fn remove(&self, query: &str, force: bool) -> Result<(), ContainerError> {
        self.remove_with_volumes(query, force, false)
    }

    /// [`Containers::remove`], also deleting the container's anonymous volumes when
    /// `volumes` (or when it was run with `--rm`) and no other container mounts them.
    pub fn remove_with_volumes(
        &self,
        query: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        self.remove_notifying(query, force, volumes, |_| {})
    }

    /// [`Containers::remove_with_volumes`], calling `gone` as soon as the container can no
    /// longer be found (its directory is renamed out of the listing first), before the
    /// slow teardown (shim, endpoint, unmount) that still finishes before this returns. A
    /// server answering "wait until removed" answers from `gone`, off the teardown's path.
    pub fn remove_notifying(
        &self,
        query: &str,
        force: bool,
        volumes: bool,
        gone: impl FnOnce(&super::Record),
    ) -> Result<(), ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        let id = record.id.clone();
        if record.state.status == Status::Running && !force {
            return Err(ContainerError::State {
                id: record.short_id().into(),
                state: "running",
                hint: "stop it first or use rm -f",
            });
        }
        // Out of the listing at once (a name `ids` skips; the runtime's delete reads its
        // own saved state, not the bundle); a second remover racing this one finds nothing.
        // A lock on the directory itself moves with it and is held until the teardown
        // ends, so a sweep after a crash ([`Containers::finish_interrupted_removals`]) can
        // tell a removal in progress from one whose remover died. (Not the record's lock:
        // `observe` and `wait` must not queue behind a teardown.)
        let dir = self.container_dir(&id);
        let lock = match super::FileLock::on_dir(&dir, true) {
            Ok(lock) => lock,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(query.to_string()));
            }
            Err(e) => {
                return Err(ContainerError::Io {
                    op: "lock",
                    path: dir,
                    source: e,
                });
            }
        };
        let retired = self.retired_dir(&id);
        match std::fs::rename(&dir, &retired) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContainerError::NotFound(query.to_string()));
            }
            Err(e) => {
                return Err(ContainerError::Io {
                    op: "rename",
                    path: dir,
                    source: e,
                });
            }
        }
        gone(&record);
        let result = self.teardown(&record, volumes);
        drop(lock);
        result
    }

    /// Completes the removals a crash or a kill cut short: each `.removing-<id>` directory
    /// whose remover is gone gets the rest of its teardown. Run by long-lived owners of the
    /// containers (the daemon, the Docker API server) when they start; returns the ids.
    pub fn finish_interrupted_removals(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut finished = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_prefix(RETIRED_PREFIX) else {
                continue;
            };
            let retired = entry.path();
            // a live remover holds the lock: leave its removal alone
            let Ok(Some(_lock)) = super::FileLock::on_dir(&retired, false) else {
                continue;
            };
            match super::Record::load(&retired) {
                Ok(record) => {
                    let volumes = record.config.auto_remove;
                    if let Err(e) = self.teardown(&record, volumes) {
                        tracing::warn!(container = %id, error = %e, "finishing an interrupted removal");
                    }
                }
                Err(_) => {
                    // no readable record: nothing to detach by name; free what the id names
                    self.runtime_delete(id);
                    if let Ok(s) = self.snapshotter() {
                        let _ = s.remove(id);
                    }
                    let _ = std::fs::remove_dir_all(self.shim_dir(id));
                    let _ = std::fs::remove_dir_all(&retired);
                }
            }
            finished.push(id.to_string());
        }
        finished
    }

    fn retired_dir(&self, id: &str) -> std::path::PathBuf {
        self.dir.join(format!("{RETIRED_PREFIX}{id}"))
    }

    /// Everything of a removal after its directory was renamed out of the listing: the
    /// shim and the runtime's state, the endpoint, the root filesystem, the directory, and
    /// (with `volumes`) the anonymous volumes.
    fn teardown(&self, record: &super::Record, volumes: bool) -> Result<(), ContainerError> {
        let id = record.id.clone();
        let retired = self.retired_dir(&id);
        let shim_dir = self.shim_dir(&id);
        if let Ok(shim) = ShimHandle::connect(&shim_dir) {
            if record.state.status == Status::Running {
                let _ = shim.kill(libc::SIGKILL, true);
                let _ = super::stop::wait_timeout(&shim, Duration::from_secs(10));
            }
            let _ = shim.delete(true);
            wait_shim_gone(&shim_dir);
        }
        self.runtime_delete(&id);
        let mut errors = Vec::new();
        // The endpoint teardown (veth deletion waits for an RCU grace period) and the
        // unmount are independent: do them side by side.
        let network = std::thread::scope(|scope| {
            let network = scope.spawn(|| self.disconnect_network(record));
            match self.snapshotter() {
                Ok(s) => {
                    if let Err(e) = s.remove(&id) {
                        errors.push(e.to_string());
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
            let _ = std::fs::remove_dir_all(&shim_dir);
            network.join()
        });
        match network {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.to_string()),
            Err(_) => errors.push("network teardown panicked".into()),
        }
        if let Err(e) = std::fs::remove_dir_all(&retired) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("remove {}: {e}", retired.display()));
            }
        }
        if volumes || record.config.auto_remove {
            self.remove_anonymous_volumes(record);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ContainerError::Runtime {
                id: record.short_id().into(),
                what: "remove",
                reason: errors.join("; "),
            })
        }
    }
}
