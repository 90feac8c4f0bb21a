//! `list` and the observation of live state: the record says what berth last saw; the shim
//! (or its `exit.json` when it is gone) says what is true now. Observing an exit writes it
//! into the record with whether the kernel OOM-killed the container, then releases the
//! runtime's state (the shim exits; the log and the record stay).

use berth_shim::{ShimHandle, Status as ShimStatus};

use super::record::Status;
use super::{ContainerError, Containers, Record};

impl Containers {
    /// Brings `record.state` up to date with the shim; saves the record when it changed.
    pub fn observe(&self, record: &mut Record) {
        // a removed container has nothing left to update
        let Ok(_lock) = self.record_lock(&record.id) else {
            return;
        };
        // what is on disk now, not what the caller read earlier; nothing if a removal
        // renamed the directory away meanwhile
        let Ok(fresh) = Record::load(&self.container_dir(&record.id)) else {
            return;
        };
        *record = fresh;
        let shim_dir = self.shim_dir(&record.id);
        let before = record.state.clone();
        match ShimHandle::connect(&shim_dir) {
            Ok(shim) => match shim.state() {
                Ok(st) => match st.status {
                    ShimStatus::Running => {
                        record.state.status = Status::Running;
                        record.state.pid = st.pid;
                    }
                    ShimStatus::Created => record.state.status = Status::Created,
                    ShimStatus::Stopped => {
                        if let Some(exit) = st.exit {
                            self.record_exit(record, exit.code, &exit.exited_at);
                        }
                        // the runtime's state and the shim are no longer needed; the
                        // runtime's delete runs in-process (no re-exec of berth-runc)
                        let _ = shim.shutdown();
                        let _ =
                            berth_runtime::ops::delete(&self.config.run_root, &record.id, false);
                    }
                },
                Err(_) => self.observe_offline(record),
            },
            Err(_) => self.observe_offline(record),
        }
        if record.state != before {
            let _ = self.save_state(record);
        }
    }

    fn observe_offline(&self, record: &mut Record) {
        if record.state.status != Status::Running {
            return;
        }
        match berth_shim::state::read_exit(&self.shim_dir(&record.id)) {
            Ok(Some(exit)) => self.record_exit(record, exit.code, &exit.exited_at),
            _ => {
                // the shim is gone without a record of the exit (killed, or a reboot)
                record.state.status = Status::Exited;
                record.state.exit_code = 255;
                record.state.pid = 0;
                record.state.error =
                    "the container's shim is gone; its exit status is unknown".into();
            }
        }
    }

    pub(super) fn record_exit(&self, record: &mut Record, code: i32, at: &str) {
        if record.state.status != Status::Exited && record.config.memory.is_some() {
            if let Ok(stats) = berth_runtime::ops::stats(&self.config.run_root, &record.id) {
                record.state.oom_killed = stats.memory.oom_kills > 0;
            }
        }
        record.state.status = Status::Exited;
        record.state.exit_code = code;
        record.state.pid = 0;
        record.state.finished_at = at.to_string();
    }

    /// Every container with its live state, newest first. `auto_remove` containers found
    /// exited are removed on the way (nothing else is there to do it for `run -d --rm`).
    pub fn list(&self, all: bool) -> Result<Vec<Record>, ContainerError> {
        let mut out = Vec::new();
        for mut r in self.records()? {
            self.observe(&mut r);
            if r.state.status == Status::Exited && r.config.auto_remove {
                let _ = self.remove(&r.id, true);
                continue;
            }
            if all || r.state.status == Status::Running {
                out.push(r);
            }
        }
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }
}
