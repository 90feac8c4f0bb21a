//! Overlay networks of a cluster, as the replicated state records them: each network's VNI
//! and subnet, and each task's address on it. Decided once (by the leader's allocator in
//! berthd) and replicated, so every node builds the same segment and no two tasks anywhere
//! share an address.
//!
//! Applying is first-come: an entry whose network or task already has a value keeps it, and
//! an entry that would reuse a VNI, a subnet or an address is skipped, so two proposals made
//! from the same stale view cannot both win. Nothing here chooses values or does I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::task::TaskId;

/// One overlay network: `id` is the network's name on every node (`<app>_<key>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayNetwork {
    /// The app it belongs to (released with it).
    pub app: String,
    /// The VXLAN network identifier (1..=16777215).
    pub vni: u32,
    /// The IPv4 subnet, `a.b.c.d/len`; the gateway is its first address on every node.
    pub subnet: String,
}

/// Every overlay network and every task address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OverlayState {
    /// Network id → its VNI and subnet.
    pub networks: BTreeMap<String, OverlayNetwork>,
    /// Task → network id → its address there.
    pub addresses: BTreeMap<TaskId, BTreeMap<String, Ipv4Addr>>,
}

/// One allocator pass: what to add and what to forget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OverlayChange {
    pub networks: Vec<(String, OverlayNetwork)>,
    pub addresses: Vec<(TaskId, String, Ipv4Addr)>,
    pub release_networks: Vec<String>,
    pub release_tasks: Vec<TaskId>,
}

impl OverlayChange {
    pub fn is_empty(&self) -> bool {
        self == &OverlayChange::default()
    }
}

impl OverlayState {
    /// Applies `change`; how many entries changed.
    pub fn apply(&mut self, change: OverlayChange) -> usize {
        let mut changed = 0;
        for id in change.release_tasks {
            changed += usize::from(self.addresses.remove(&id).is_some());
        }
        for id in change.release_networks {
            if self.networks.remove(&id).is_some() {
                changed += 1;
                for nets in self.addresses.values_mut() {
                    nets.remove(&id);
                }
                self.addresses.retain(|_, nets| !nets.is_empty());
            }
        }
        for (id, net) in change.networks {
            let taken = self.networks.contains_key(&id)
                || self
                    .networks
                    .values()
                    .any(|n| n.vni == net.vni || n.subnet == net.subnet);
            if !taken && net.vni != 0 && net.vni <= 0x00ff_ffff {
                self.networks.insert(id, net);
                changed += 1;
            }
        }
        let mut used: BTreeMap<&str, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for nets in self.addresses.values() {
            for (net, ip) in nets {
                used.entry(net.as_str()).or_default().insert(*ip);
            }
        }
        let mut used: BTreeMap<String, BTreeSet<Ipv4Addr>> =
            used.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        for (task, net, ip) in change.addresses {
            if !self.networks.contains_key(&net) {
                continue;
            }
            let has = self
                .addresses
                .get(&task)
                .is_some_and(|nets| nets.contains_key(&net));
            let set = used.entry(net.clone()).or_default();
            if has || !set.insert(ip) {
                continue;
            }
            self.addresses.entry(task).or_default().insert(net, ip);
            changed += 1;
        }
        changed
    }

    /// The address of `task` on network `net`.
    pub fn address(&self, task: &str, net: &str) -> Option<Ipv4Addr> {
        self.addresses.get(task)?.get(net).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(vni: u32, subnet: &str) -> OverlayNetwork {
        OverlayNetwork {
            app: "a".into(),
            vni,
            subnet: subnet.into(),
        }
    }

    #[test]
    fn first_come_wins_and_nothing_is_shared() {
        let mut s = OverlayState::default();
        let ip = |d| Ipv4Addr::new(10, 0, 0, d);
        let n = s.apply(OverlayChange {
            networks: vec![
                ("a_default".into(), net(4097, "10.0.0.0/24")),
                ("a_default".into(), net(4098, "10.0.1.0/24")),
                ("a_back".into(), net(4097, "10.0.2.0/24")),
                ("a_side".into(), net(4099, "10.0.0.0/24")),
            ],
            addresses: vec![
                ("t1".into(), "a_default".into(), ip(2)),
                ("t2".into(), "a_default".into(), ip(2)),
                ("t2".into(), "a_default".into(), ip(3)),
                ("t3".into(), "nosuch".into(), ip(4)),
            ],
            ..OverlayChange::default()
        });
        assert_eq!(n, 3);
        assert_eq!(s.networks["a_default"].vni, 4097);
        assert_eq!(s.networks.len(), 1);
        assert_eq!(s.address("t1", "a_default"), Some(ip(2)));
        assert_eq!(s.address("t2", "a_default"), Some(ip(3)));
        assert_eq!(s.address("t3", "nosuch"), None);
        // a task keeps its address; releasing frees it for another
        s.apply(OverlayChange {
            addresses: vec![("t1".into(), "a_default".into(), ip(9))],
            release_tasks: vec!["t2".into()],
            ..OverlayChange::default()
        });
        assert_eq!(s.address("t1", "a_default"), Some(ip(2)));
        assert_eq!(s.address("t2", "a_default"), None);
        s.apply(OverlayChange {
            release_networks: vec!["a_default".into()],
            ..OverlayChange::default()
        });
        assert!(s.networks.is_empty() && s.addresses.is_empty());
    }
}
