//! `remove`: kill (with `force`), delete the runtime's state through the shim, detach the
//! network (ports, veth, address), unmount and delete the root filesystem, and delete the
//! container directory. Named volumes and bind sources are left alone; the container's
//! anonymous volumes go too with `volumes` (`rm -v`) or when it was run with `--rm`.

use std::time::Duration;

use berth_shim::ShimHandle;

use super::record::Status;
use super::start::wait_shim_gone;
use super::{ContainerError, Containers};

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
        let dir = self.container_dir(&id);
        let retired = self.dir.join(format!(".removing-{id}"));
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
            let network = scope.spawn(|| self.disconnect_network(&record));
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
            self.remove_anonymous_volumes(&record);
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
