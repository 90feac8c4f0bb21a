//! Statistics: memory usage/limit and OOM events, CPU time, pids — what `berth stats` shows.

use std::path::Path;

use serde::Serialize;

use super::{CgroupError, read};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MemoryStats {
    pub usage_bytes: u64,
    /// `None` when unlimited.
    pub limit_bytes: Option<u64>,
    /// Times the limit was hit (v1 `failcnt`, v2 `memory.events` `max`).
    pub failcnt: u64,
    /// Processes the kernel OOM-killed in this cgroup.
    pub oom_kills: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CpuStats {
    pub usage_ns: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CgroupStats {
    pub memory: MemoryStats,
    pub cpu: CpuStats,
    pub pids: PidsStats,
}

fn num(s: &str) -> u64 {
    s.trim().parse().unwrap_or(0)
}

/// "max" or a huge v1 value (no limit) both become `None`.
fn limit(s: &str) -> Option<u64> {
    let v: u64 = s.trim().parse().ok()?;
    (v < (1u64 << 62)).then_some(v)
}

fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .map(num)
        .unwrap_or(0)
}

pub fn read_v1(
    memory: Option<&Path>,
    cpuacct: Option<&Path>,
    pids: Option<&Path>,
) -> Result<CgroupStats, CgroupError> {
    let mut s = CgroupStats::default();
    if let Some(d) = memory {
        s.memory.usage_bytes = num(&read(d, "memory.usage_in_bytes")?);
        s.memory.limit_bytes = limit(&read(d, "memory.limit_in_bytes")?);
        s.memory.failcnt = num(&read(d, "memory.failcnt")?);
        s.memory.oom_kills = keyed(
            &read(d, "memory.oom_control").unwrap_or_default(),
            "oom_kill",
        );
    }
    if let Some(d) = cpuacct {
        s.cpu.usage_ns = num(&read(d, "cpuacct.usage")?);
    }
    if let Some(d) = pids {
        s.pids.current = num(&read(d, "pids.current")?);
        s.pids.limit = limit(&read(d, "pids.max")?);
    }
    Ok(s)
}

pub fn read_v2(d: &Path) -> Result<CgroupStats, CgroupError> {
    let mut s = CgroupStats::default();
    s.memory.usage_bytes = num(&read(d, "memory.current").unwrap_or_default());
    s.memory.limit_bytes = read(d, "memory.max").ok().and_then(|v| limit(&v));
    let events = read(d, "memory.events").unwrap_or_default();
    s.memory.failcnt = keyed(&events, "max");
    s.memory.oom_kills = keyed(&events, "oom_kill");
    s.cpu.usage_ns = keyed(&read(d, "cpu.stat").unwrap_or_default(), "usage_usec") * 1000;
    s.pids.current = num(&read(d, "pids.current").unwrap_or_default());
    s.pids.limit = read(d, "pids.max").ok().and_then(|v| limit(&v));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn v1_figures() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, v: &str| fs::write(d.path().join(f), v).unwrap();
        w("memory.usage_in_bytes", "4096\n");
        w("memory.limit_in_bytes", "9223372036854771712\n");
        w("memory.failcnt", "3\n");
        w(
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        w("cpuacct.usage", "123\n");
        w("pids.current", "4\n");
        w("pids.max", "max\n");
        let s = read_v1(Some(d.path()), Some(d.path()), Some(d.path())).unwrap();
        assert_eq!(
            s.memory,
            MemoryStats {
                usage_bytes: 4096,
                limit_bytes: None,
                failcnt: 3,
                oom_kills: 2
            }
        );
        assert_eq!(s.cpu.usage_ns, 123);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 4,
                limit: None
            }
        );
    }

    #[test]
    fn v2_figures() {
        let d = tempfile::tempdir().unwrap();
        let w = |f: &str, v: &str| fs::write(d.path().join(f), v).unwrap();
        w("memory.current", "100");
        w("memory.max", "200");
        w("memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n");
        w("cpu.stat", "usage_usec 7\nuser_usec 3\n");
        w("pids.current", "2");
        w("pids.max", "10");
        let s = read_v2(d.path()).unwrap();
        assert_eq!(s.memory.limit_bytes, Some(200));
        assert_eq!(s.memory.oom_kills, 1);
        assert_eq!(s.memory.failcnt, 5);
        assert_eq!(s.cpu.usage_ns, 7000);
        assert_eq!(s.pids.limit, Some(10));
    }
}
