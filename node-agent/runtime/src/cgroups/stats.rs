//! Statistics: memory usage/limit and OOM events, CPU time, pids, block I/O bytes — what
//! `berth stats` shows. Parsing is pure; the readers only open the cgroup's files.

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
    /// Bytes moved per device and direction (empty when the kernel accounts none).
    pub blkio: Vec<BlkioEntry>,
}

/// One device's byte count for one operation, as Docker's `io_service_bytes_recursive`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// v1: the kernel's word (`Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`);
    /// v2: `read` or `write` — Docker passes both through the same way.
    pub op: String,
    pub value: u64,
}

fn device(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// cgroup v1 `blkio.throttle.io_service_bytes[_recursive]`: `MAJ:MIN Op value` lines and a
/// final `Total n` line (the sum, which is not a device and is dropped).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (major, minor) = device(f.next()?)?;
            let op = f.next()?.to_string();
            let value = f.next()?.parse().ok()?;
            Some(BlkioEntry {
                major,
                minor,
                op,
                value,
            })
        })
        .collect()
}

/// cgroup v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. …` per device; the byte
/// counts become a `read` and a `write` entry.
pub fn parse_io_stat_v2(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((major, minor)) = f.next().and_then(device) else {
            continue;
        };
        for kv in f {
            let op = match kv.split_once('=') {
                Some(("rbytes", v)) => ("read", v),
                Some(("wbytes", v)) => ("write", v),
                _ => continue,
            };
            if let Ok(value) = op.1.parse() {
                out.push(BlkioEntry {
                    major,
                    minor,
                    op: op.0.into(),
                    value,
                });
            }
        }
    }
    out
}

/// The v1 blkio figures of `d`: the recursive throttle file (what Docker reads when no
/// CFQ/BFQ accounting is there), else the cgroup's own; a missing file is no figures.
pub fn read_blkio_v1(d: &Path) -> Vec<BlkioEntry> {
    read(d, "blkio.throttle.io_service_bytes_recursive")
        .or_else(|_| read(d, "blkio.throttle.io_service_bytes"))
        .map(|t| parse_blkio_v1(&t))
        .unwrap_or_default()
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
    s.blkio = parse_io_stat_v2(&read(d, "io.stat").unwrap_or_default());
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
        assert!(s.blkio.is_empty());
    }

    #[test]
    fn v1_blkio_lines_and_total_dropped() {
        let text = "8:0 Read 4096\n8:0 Write 1048576\n8:0 Sync 1052672\n8:0 Async 0\n\
                    8:0 Discard 0\n8:0 Total 1052672\n253:1 Write 512\nTotal 1053184\n";
        let e = parse_blkio_v1(text);
        assert_eq!(e.len(), 7);
        assert_eq!(
            e[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 1048576
            }
        );
        assert_eq!((e[6].major, e[6].minor, e[6].value), (253, 1, 512));
        assert!(parse_blkio_v1("Total 0\n").is_empty());
        assert!(parse_blkio_v1("garbage\n8:x Read 1\n").is_empty());
    }

    #[test]
    fn v2_io_stat_bytes() {
        let text = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    259:0 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0\n";
        let e = parse_io_stat_v2(text);
        let got: Vec<_> = e
            .iter()
            .map(|x| (x.major, x.minor, x.op.as_str(), x.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (8, 0, "read", 4096),
                (8, 0, "write", 8192),
                (259, 0, "read", 0),
                (259, 0, "write", 512)
            ]
        );
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("io.stat"), text).unwrap();
        assert_eq!(read_v2(d.path()).unwrap().blkio, e);
    }

    #[test]
    fn v1_blkio_prefers_recursive() {
        let d = tempfile::tempdir().unwrap();
        assert!(read_blkio_v1(d.path()).is_empty());
        fs::write(
            d.path().join("blkio.throttle.io_service_bytes"),
            "8:0 Read 1\n",
        )
        .unwrap();
        assert_eq!(read_blkio_v1(d.path())[0].value, 1);
        fs::write(
            d.path().join("blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 2\n",
        )
        .unwrap();
        assert_eq!(read_blkio_v1(d.path())[0].value, 2);
    }
}
