//! `stats` and `top`: cgroup counters and the container's processes, from the runtime's
//! view of the container (its cgroup), read directly — no runtime process is started.

use berth_runtime::cgroups::CgroupStats;

use super::record::Status;
use super::{ContainerError, Containers, Record};

/// A sample of one container's resource use.
#[derive(Debug, Clone)]
pub struct Stats {
    pub record: Record,
    pub cgroup: CgroupStats,
}

/// One process of a container, as `top` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub command: String,
}

impl Containers {
    pub fn stats(&self, query: &str) -> Result<Stats, ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status != Status::Running {
            return Err(ContainerError::State {
                id: record.short_id().into(),
                state: "not running",
                hint: "stats are only kept while it runs",
            });
        }
        let cgroup = berth_runtime::ops::stats(&self.config.run_root, &record.id).map_err(|e| {
            ContainerError::Runtime {
                id: record.short_id().into(),
                what: "stats",
                reason: e.to_string(),
            }
        })?;
        Ok(Stats { record, cgroup })
    }

    pub fn top(&self, query: &str) -> Result<Vec<Process>, ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status != Status::Running {
            return Err(ContainerError::State {
                id: record.short_id().into(),
                state: "not running",
                hint: "start it first",
            });
        }
        let pids = berth_runtime::ops::ps(&self.config.run_root, &record.id).map_err(|e| {
            ContainerError::Runtime {
                id: record.short_id().into(),
                what: "top",
                reason: e.to_string(),
            }
        })?;
        let mut out = Vec::new();
        for pid in pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let command = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            out.push(Process {
                pid,
                ppid: field("PPid:") as i32,
                uid: field("Uid:") as u32,
                command,
            });
        }
        Ok(out)
    }
}
