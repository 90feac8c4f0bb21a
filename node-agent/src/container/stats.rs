//! `stats` and `top`: cgroup counters, the network counters of the container's interfaces
//! and the container's processes, from the runtime's view of the container (its cgroup) and
//! `/proc/<pid>/net/dev` (the container's network namespace seen from outside it), read
//! directly — no runtime process is started and no namespace is entered.

use berth_runtime::cgroups::CgroupStats;

use super::record::Status;
use super::{ContainerError, Containers, Record};

/// A sample of one container's resource use.
#[derive(Debug, Clone)]
pub struct Stats {
    pub record: Record,
    pub cgroup: CgroupStats,
    /// The container's interfaces but loopback (Docker's `networks`); empty when it shares
    /// the host's network or has none.
    pub networks: Vec<Interface>,
}

/// The counters of one network interface, as `/proc/net/dev` keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then `name: rx×8 tx×8` (bytes, packets, errs,
/// drop, fifo, frame, compressed, multicast / bytes, packets, errs, drop, fifo, colls,
/// carrier, compressed). Loopback is left out, as Docker does; malformed lines are skipped.
pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.is_empty() {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 16 {
                return None;
            }
            Some(Interface {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

/// The interfaces of the network namespace `pid` is in. A container sharing this process's
/// namespace (host network) would report the host's figures, so it reports none (Docker
/// shows none either).
fn networks_of(pid: i32) -> Vec<Interface> {
    if pid <= 0 {
        return Vec::new();
    }
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    let own = ns(&pid.to_string());
    if own.is_none() || own == ns("self") {
        return Vec::new();
    }
    std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default()
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
        let networks = networks_of(record.state.pid);
        Ok(Stats {
            record,
            cgroup,
            networks,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_interfaces_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0: 1200345    812    1    2    0     0          0         0    65536     400    3    4    0     0       0          0
 bad: 1 2 3
";
        let got = parse_net_dev(text);
        assert_eq!(
            got,
            vec![Interface {
                name: "eth0".into(),
                rx_bytes: 1200345,
                rx_packets: 812,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 65536,
                tx_packets: 400,
                tx_errors: 3,
                tx_dropped: 4,
            }]
        );
        assert!(parse_net_dev("").is_empty());
    }
}
