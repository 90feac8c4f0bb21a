//! `start`: launch the container's shim (which runs the runtime's `create`), connect its
//! network namespace, optionally attach to its output, then let its process run. A
//! container that ran before is first cleaned of its old runtime state and endpoint, so
//! `start` after `stop` (or after a reboot) works like Docker's.

use berth_shim::{Attach, Shim, ShimArgs, ShimHandle, ShimOptions, Status as ShimStatus};

use super::record::Status;
use super::{ContainerError, Containers, Record};

/// A started container: its shim, and the attach stream when one was asked for.
pub struct Started {
    pub record: Record,
    pub shim: ShimHandle,
    pub attach: Option<Attach>,
}

/// Maps a runtime error that means "the command could not be run" to Docker's codes.
pub(crate) fn exec_error(message: &str) -> Option<i32> {
    let m = message.to_ascii_lowercase();
    let about_exec = m.contains("exec") || m.contains("executable") || m.contains("command");
    if !about_exec {
        return None;
    }
    if m.contains("no such file") || m.contains("not found") {
        Some(127)
    } else if m.contains("permission denied")
        || m.contains("is a directory")
        || m.contains("exec format")
    {
        Some(126)
    } else {
        None
    }
}

impl Containers {
    fn shim_error(&self, id: &str, e: berth_shim::ShimError) -> ContainerError {
        let message = e.to_string();
        match exec_error(&message) {
            Some(code) => ContainerError::Exec { message, code },
            None => ContainerError::Shim {
                id: id.to_string(),
                source: e,
            },
        }
    }

    /// Starts container `query`. With `attach`, the returned stream is connected before the
    /// process runs, so no output is missed; with `stdin` too, input is forwarded.
    pub fn start(&self, query: &str, attach: bool) -> Result<Started, ContainerError> {
        let mut record = self.resolve(query)?;
        let id = record.id.clone();
        let shim_dir = self.shim_dir(&id);
        if let Ok(h) = ShimHandle::connect(&shim_dir) {
            let st = h.state().map_err(|e| self.shim_error(&id, e))?;
            match st.status {
                ShimStatus::Running => {
                    return Err(ContainerError::State {
                        id: record.short_id().into(),
                        state: "running",
                        hint: "it is already started",
                    });
                }
                ShimStatus::Created | ShimStatus::Stopped => {
                    self.observe(&mut record);
                    let _ = h.delete(true);
                    wait_shim_gone(&shim_dir);
                }
            }
        }
        // a runtime container left by a shim that died
        self.runtime_delete(&id);
        self.ensure_rootfs(&record)?;
        if !record.endpoints.is_empty() {
            let _ = self.disconnect_network(&record);
            record.endpoints.clear();
        }
        std::fs::create_dir_all(&shim_dir).map_err(super::io_err("create directory", &shim_dir))?;
        let args = ShimArgs {
            id: id.clone(),
            bundle: self.bundle_dir(&id),
            state_dir: shim_dir.clone(),
            runtime: self.config.runtime.clone(),
            runtime_root: self.config.run_root.clone(),
            log_max_size: 0,
            log_max_files: 1,
            tty: record.config.tty,
            stdin: record.config.stdin,
            exit_with_container: false,
        };
        let shim = Shim::spawn(&ShimOptions {
            binary: self.config.shim.clone(),
            args,
        })
        .map_err(|e| self.shim_error(&id, e))?;
        let result = (|| -> Result<Option<Attach>, ContainerError> {
            let st = shim.state().map_err(|e| self.shim_error(&id, e))?;
            record.endpoints = self.connect_network(&record, st.pid)?;
            self.write_hosts(&record)?;
            let attach = if attach {
                Some(
                    shim.attach(record.config.stdin, true)
                        .map_err(|e| self.shim_error(&id, e))?,
                )
            } else {
                None
            };
            shim.start().map_err(|e| self.shim_error(&id, e))?;
            record.state.status = Status::Running;
            record.state.pid = st.pid;
            record.state.started_at = berth_shim::time::now_rfc3339();
            record.state.finished_at.clear();
            record.state.exit_code = 0;
            record.state.oom_killed = false;
            record.state.error.clear();
            Ok(attach)
        })();
        match result {
            Ok(attach) => {
                let _lock = self.record_lock(&id)?;
                self.save(&record)?;
                Ok(Started {
                    record,
                    shim,
                    attach,
                })
            }
            Err(e) => {
                let _ = shim.delete(true);
                let _ = self.disconnect_network(&record);
                record.endpoints.clear();
                record.state.status = Status::Exited;
                record.state.exit_code = e.exit_code();
                record.state.error = e.to_string();
                if let Ok(_lock) = self.record_lock(&id) {
                    let _ = self.save(&record);
                }
                Err(e)
            }
        }
    }

    /// Mounts the root filesystem again if it is not (after a reboot): an empty mount point.
    fn ensure_rootfs(&self, record: &Record) -> Result<(), ContainerError> {
        let rootfs = self.rootfs_of(&record.id)?;
        let empty = std::fs::read_dir(&rootfs).map_or(true, |mut d| d.next().is_none());
        if !empty {
            return Ok(());
        }
        let image_err = |source| ContainerError::Image {
            image: record.image.clone(),
            source,
        };
        let digest = berth_image::Digest::parse(&record.image_digest).map_err(|e| {
            ContainerError::Corrupt {
                path: self.container_dir(&record.id),
                reason: e.to_string(),
            }
        })?;
        let image = self.store.image(&digest).map_err(image_err)?;
        self.snapshotter()?
            .prepare(&record.id, &image)
            .map_err(|source| ContainerError::Snapshot {
                id: record.id.clone(),
                source,
            })?;
        Ok(())
    }

    /// The runtime's `delete --force ID` when it still has state for the container, run
    /// in-process (berth-runc's own code, without a re-exec).
    pub(crate) fn runtime_delete(&self, id: &str) {
        if self.config.run_root.join(id).exists() {
            let _ = berth_runtime::ops::delete(&self.config.run_root, id, true);
        }
    }
}

/// Waits (bounded) for a shim told to delete to remove its socket.
pub(crate) fn wait_shim_gone(shim_dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let sock = shim_dir.join(berth_shim::state::SOCKET);
    while sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::exec_error;

    #[test]
    fn exec_errors_map_to_docker_codes() {
        assert_eq!(
            exec_error("exec: \"nope\": executable file not found in $PATH"),
            Some(127)
        );
        assert_eq!(exec_error("exec /etc: permission denied"), Some(126));
        assert_eq!(exec_error("mount /proc: permission denied"), None);
    }
}
