//! Who answers to which name on which network: the registry the agent updates as containers
//! start and stop. No sockets here; the only I/O is the liveness check of an entry's
//! network namespace (one `stat`), so a container that died answers to no name even before
//! anyone tells the registry.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use hickory_proto::rr::RecordType;
use serde::{Deserialize, Serialize};

/// The identity of a network namespace: its path and the (device, inode) it had when the
/// endpoint was connected. `/proc/<pid>/ns/net` of a dead process no longer exists, and a
/// recycled pid leads to another namespace inode, so the check cannot be fooled by pid reuse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsId {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    /// The identity of the namespace at `path` now, if it exists.
    pub fn of(path: &std::path::Path) -> Option<NetnsId> {
        let m = std::fs::metadata(path).ok()?;
        Some(NetnsId {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Whether the namespace still exists (its processes, or its bind mount, are alive).
    pub fn alive(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

/// The names one endpoint answers to on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsEntry {
    /// Container name (`project-web-1`).
    pub container_name: String,
    /// Service name (`web`); also answers `tasks.<service>`.
    pub service: Option<String>,
    /// Network aliases (and the short container id, if the caller wants it).
    pub aliases: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// The container's own `dns:` servers; its external queries go there instead of the
    /// host's resolvers.
    pub upstreams: Vec<IpAddr>,
    /// The endpoint's namespace: when set, the entry answers only while it is alive.
    pub netns: Option<NetnsId>,
}

impl DnsEntry {
    fn alive(&self) -> bool {
        self.netns.as_ref().is_none_or(NetnsId::alive)
    }
}

#[derive(Debug, Default)]
struct NetworkNames {
    /// endpoint id → entry, in registration order (replica order for round robin)
    entries: Vec<(String, DnsEntry)>,
    rotation: AtomicUsize,
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl NetworkNames {
    fn matches(entry: &DnsEntry, name: &str) -> bool {
        if name.is_empty() {
            return false;
        }
        if normalize(&entry.container_name) == name {
            return true;
        }
        if let Some(svc) = &entry.service {
            let svc = normalize(svc);
            if svc == name || name.strip_prefix("tasks.") == Some(svc.as_str()) {
                return true;
            }
        }
        entry.aliases.iter().any(|a| normalize(a) == name)
    }
}

/// Who answers to which name, per network. Cheap to share (`Arc`); registration and lookups
/// may come from any thread.
#[derive(Debug, Default)]
pub struct Registry {
    networks: RwLock<HashMap<String, NetworkNames>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    /// Makes `entry` answer on `network` (replacing an earlier registration of `endpoint_id`).
    pub fn register(&self, network: &str, endpoint_id: &str, entry: DnsEntry) {
        let mut nets = self.networks.write().expect("registry lock");
        let names = nets.entry(network.to_string()).or_default();
        match names.entries.iter_mut().find(|(id, _)| id == endpoint_id) {
            Some(slot) => slot.1 = entry,
            None => names.entries.push((endpoint_id.to_string(), entry)),
        }
    }

    /// Removes `endpoint_id` from `network`; returns whether it was there.
    pub fn unregister(&self, network: &str, endpoint_id: &str) -> bool {
        let mut nets = self.networks.write().expect("registry lock");
        let Some(names) = nets.get_mut(network) else {
            return false;
        };
        let before = names.entries.len();
        names.entries.retain(|(id, _)| id != endpoint_id);
        let removed = names.entries.len() != before;
        if names.entries.is_empty() {
            nets.remove(network);
        }
        removed
    }

    /// Replaces every registration with `networks` (network → endpoints in replica order),
    /// as loaded from the state file. Round-robin positions are kept for networks that stay.
    pub fn replace_all(&self, networks: Vec<(String, Vec<(String, DnsEntry)>)>) {
        let mut nets = self.networks.write().expect("registry lock");
        let mut fresh = HashMap::new();
        for (id, entries) in networks {
            let rotation = nets
                .get(&id)
                .map_or(0, |n| n.rotation.load(Ordering::Relaxed));
            fresh.insert(
                id,
                NetworkNames {
                    entries,
                    rotation: AtomicUsize::new(rotation),
                },
            );
        }
        *nets = fresh;
    }

    /// Forgets every name of `network`.
    pub fn remove_network(&self, network: &str) {
        self.networks
            .write()
            .expect("registry lock")
            .remove(network);
    }

    /// The addresses `name` resolves to on `network` for `qtype` (A or AAAA), rotated by one
    /// on every call so that clients taking the first address spread over replicas. `None`
    /// when the name is unknown on the network (the query is then forwarded).
    pub fn lookup(&self, network: &str, name: &str, qtype: RecordType) -> Option<Vec<IpAddr>> {
        let name = normalize(name);
        let nets = self.networks.read().expect("registry lock");
        let names = nets.get(network)?;
        let hits: Vec<&DnsEntry> = names
            .entries
            .iter()
            .map(|(_, e)| e)
            .filter(|e| NetworkNames::matches(e, &name) && e.alive())
            .collect();
        if hits.is_empty() {
            return None;
        }
        let mut ips: Vec<IpAddr> = hits
            .iter()
            .filter_map(|e| match qtype {
                RecordType::A => e.ipv4.map(IpAddr::V4),
                RecordType::AAAA => e.ipv6.map(IpAddr::V6),
                _ => None,
            })
            .collect();
        if ips.len() > 1 {
            let n = names.rotation.fetch_add(1, Ordering::Relaxed) % ips.len();
            ips.rotate_left(n);
        }
        Some(ips)
    }

    /// The container name owning address `ip` on `network` (reverse lookups).
    pub fn reverse(&self, network: &str, ip: IpAddr) -> Option<String> {
        let nets = self.networks.read().expect("registry lock");
        nets.get(network)?
            .entries
            .iter()
            .find(|(_, e)| {
                (e.ipv4.map(IpAddr::V4) == Some(ip) || e.ipv6.map(IpAddr::V6) == Some(ip))
                    && e.alive()
            })
            .map(|(_, e)| e.container_name.clone())
    }

    /// The networks whose names the endpoint with address `peer` on `network` may resolve:
    /// `network` first, then every other network its container (the same namespace) is on,
    /// in name order, as Docker resolves across all of a container's networks. The
    /// gateway a container asks is its first network's, so without this it could not find
    /// peers it shares only a second network with.
    pub fn networks_of(&self, network: &str, peer: IpAddr) -> Vec<String> {
        let nets = self.networks.read().expect("registry lock");
        let mut out = vec![network.to_string()];
        let netns = nets.get(network).and_then(|n| {
            n.entries
                .iter()
                .find(|(_, e)| {
                    e.ipv4.map(IpAddr::V4) == Some(peer) || e.ipv6.map(IpAddr::V6) == Some(peer)
                })
                .and_then(|(_, e)| e.netns.clone())
        });
        let Some(ns) = netns else {
            return out;
        };
        let mut others: Vec<&String> = nets
            .iter()
            .filter(|(id, n)| {
                id.as_str() != network
                    && n.entries.iter().any(|(_, e)| {
                        e.netns
                            .as_ref()
                            .is_some_and(|o| o.dev == ns.dev && o.ino == ns.ino)
                    })
            })
            .map(|(id, _)| id)
            .collect();
        others.sort();
        out.extend(others.into_iter().cloned());
        out
    }

    /// The `dns:` servers of the endpoint with address `ip` on `network`, if any.
    pub(crate) fn upstreams_of(&self, network: &str, ip: IpAddr) -> Vec<IpAddr> {
        let nets = self.networks.read().expect("registry lock");
        nets.get(network)
            .and_then(|n| {
                n.entries.iter().find(|(_, e)| {
                    e.ipv4.map(IpAddr::V4) == Some(ip) || e.ipv6.map(IpAddr::V6) == Some(ip)
                })
            })
            .map(|(_, e)| e.upstreams.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, svc: &str, ip: [u8; 4]) -> DnsEntry {
        DnsEntry {
            container_name: name.into(),
            service: Some(svc.into()),
            aliases: vec![format!("{name}-alias")],
            ipv4: Some(ip.into()),
            ipv6: None,
            upstreams: vec![],
            netns: None,
        }
    }

    #[test]
    fn a_container_on_two_networks_resolves_names_of_both() {
        let r = Registry::new();
        let ns = NetnsId {
            path: "/proc/1/ns/net".into(),
            dev: 4,
            ino: 4026531992,
        };
        let mut web = entry("app-web-1", "web", [10, 0, 0, 2]);
        web.netns = Some(ns.clone());
        let mut web_back = entry("app-web-1", "web", [10, 1, 0, 2]);
        web_back.netns = Some(ns);
        r.register("front", "w", web);
        r.register("back", "w", web_back);
        r.register("back", "d", entry("app-db-1", "db", [10, 1, 0, 3]));
        r.register("other", "x", entry("app-x-1", "x", [10, 2, 0, 3]));
        let peer = IpAddr::from([10, 0, 0, 2]);
        assert_eq!(r.networks_of("front", peer), vec!["front", "back"]);
        // a peer berth does not know (or without a namespace) keeps to the network asked
        assert_eq!(
            r.networks_of("front", IpAddr::from([10, 0, 0, 9])),
            vec!["front"]
        );
    }

    #[test]
    fn service_names_round_robin_and_unregister() {
        let r = Registry::new();
        r.register("n", "a", entry("app-web-1", "web", [10, 0, 0, 2]));
        r.register("n", "b", entry("app-web-2", "web", [10, 0, 0, 3]));
        r.register("other", "c", entry("app-db-1", "db", [10, 1, 0, 2]));
        let first = r.lookup("n", "web", RecordType::A).unwrap();
        let second = r.lookup("n", "WEB.", RecordType::A).unwrap();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], second[0], "rotated");
        assert_eq!(r.lookup("n", "tasks.web", RecordType::A).unwrap().len(), 2);
        assert_eq!(
            r.lookup("n", "app-web-2", RecordType::A).unwrap(),
            vec![IpAddr::from([10, 0, 0, 3])]
        );
        assert_eq!(
            r.lookup("n", "app-web-1-alias", RecordType::A)
                .unwrap()
                .len(),
            1
        );
        // names do not leak across networks
        assert!(r.lookup("n", "db", RecordType::A).is_none());
        assert!(r.lookup("n", "web", RecordType::AAAA).unwrap().is_empty());
        assert!(r.unregister("n", "a"));
        assert_eq!(
            r.lookup("n", "web", RecordType::A).unwrap(),
            vec![IpAddr::from([10, 0, 0, 3])]
        );
        assert!(!r.unregister("n", "a"));
        r.unregister("n", "b");
        assert!(r.lookup("n", "web", RecordType::A).is_none());
    }

    #[test]
    fn container_dns_servers_override_host_upstreams() {
        let r = Registry::new();
        let mut e = entry("app-web-1", "web", [10, 0, 0, 2]);
        e.upstreams = vec![IpAddr::from([9, 9, 9, 9])];
        r.register("n", "a", e);
        assert_eq!(
            r.upstreams_of("n", IpAddr::from([10, 0, 0, 2])),
            vec![IpAddr::from([9, 9, 9, 9])]
        );
        assert!(r.upstreams_of("n", IpAddr::from([10, 0, 0, 3])).is_empty());
    }
}
