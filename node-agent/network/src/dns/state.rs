//! The DNS state file, `<state_dir>/dns.json`: everything `berth-dns` needs to answer —
//! which addresses to listen on for which network, the names on each network, and where
//! other names go. [`Networks`](crate::networks::Networks) rewrites it atomically (temp file,
//! fsync, rename) on every create, remove, connect and disconnect; `berth-dns` reads it.
//! No sockets here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::registry::{DnsEntry, Registry};

/// The file name of the state in the state dir.
pub const STATE_FILE: &str = "dns.json";

/// One endpoint's names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointNames {
    pub endpoint: String,
    pub entry: DnsEntry,
}

/// One network as the DNS server sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsNetwork {
    /// The gateway addresses to answer on (IPv4, and IPv6 for dual-stack networks).
    pub listen: Vec<IpAddr>,
    /// Whether unknown names are forwarded (false for internal networks).
    pub forward: bool,
    /// In registration order, which is the replica order for round robin.
    pub endpoints: Vec<EndpointNames>,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsState {
    /// Bumped on every write; `berth-dns` reports the one it applied in `dns.applied`.
    pub generation: u64,
    /// The port on every gateway (53 in production).
    pub port: u16,
    /// Where names unknown to berth go, unless the asking container has its own `dns:`.
    pub host_upstreams: Vec<IpAddr>,
    pub networks: BTreeMap<String, DnsNetwork>,
}

impl DnsState {
    /// Makes `entry` answer for `endpoint` on `network` (replacing an earlier one).
    pub fn register(&mut self, network: &str, endpoint: &str, entry: DnsEntry) {
        let Some(net) = self.networks.get_mut(network) else {
            return;
        };
        match net.endpoints.iter_mut().find(|e| e.endpoint == endpoint) {
            Some(slot) => slot.entry = entry,
            None => net.endpoints.push(EndpointNames {
                endpoint: endpoint.to_string(),
                entry,
            }),
        }
    }

    /// Removes `endpoint` from `network`; returns whether it was there.
    pub fn unregister(&mut self, network: &str, endpoint: &str) -> bool {
        let Some(net) = self.networks.get_mut(network) else {
            return false;
        };
        let before = net.endpoints.len();
        net.endpoints.retain(|e| e.endpoint != endpoint);
        before != net.endpoints.len()
    }

    /// The names in the shape [`Registry::replace_all`] takes.
    pub fn registrations(&self) -> Vec<(String, Vec<(String, DnsEntry)>)> {
        self.networks
            .iter()
            .map(|(id, n)| {
                (
                    id.clone(),
                    n.endpoints
                        .iter()
                        .map(|e| (e.endpoint.clone(), e.entry.clone()))
                        .collect(),
                )
            })
            .collect()
    }

    /// Reads the state at `path`; a missing file is an empty state.
    pub fn load(path: &Path) -> std::io::Result<DnsState> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DnsState::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the state so that a reader sees the old file or the new one, never a mix.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::ipam::write_json_atomically(path, self)
    }
}

/// What identifies one version of the file: a rename gives a new inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Stamp {
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        size: m.size(),
    })
}

/// The state file as the server follows it: [`StateSource::refresh`] (one `stat`) reloads
/// the registry when the file was replaced, so an answer never lags behind a `connect` that
/// has returned, whether or not the server was signalled.
#[derive(Debug)]
pub struct StateSource {
    path: PathBuf,
    registry: Arc<Registry>,
    seen: Mutex<Option<Stamp>>,
}

impl StateSource {
    pub fn new(path: PathBuf, registry: Arc<Registry>) -> Self {
        StateSource {
            path,
            registry,
            seen: Mutex::new(None),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads the names if the file changed since the last look; returns the state read, if
    /// it was read. A file that cannot be parsed leaves the names as they were.
    pub fn refresh(&self) -> Option<DnsState> {
        let now = stamp(&self.path);
        let mut seen = self.seen.lock().expect("state stamp lock");
        if now.is_some() && now == *seen {
            return None;
        }
        let state = DnsState::load(&self.path).ok()?;
        self.registry.replace_all(state.registrations());
        *seen = now;
        Some(state)
    }

    /// Reads the file now, whether or not it changed, and reloads the names.
    pub fn reload(&self) -> std::io::Result<DnsState> {
        let now = stamp(&self.path);
        let state = DnsState::load(&self.path)?;
        self.registry.replace_all(state.registrations());
        *self.seen.lock().expect("state stamp lock") = now;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    fn entry(name: &str, ip: [u8; 4]) -> DnsEntry {
        DnsEntry {
            container_name: name.into(),
            ipv4: Some(ip.into()),
            ..Default::default()
        }
    }

    #[test]
    fn register_unregister_and_follow_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(STATE_FILE);
        let mut st = DnsState::default();
        st.networks.insert(
            "n".into(),
            DnsNetwork {
                listen: vec!["10.0.0.1".parse().unwrap()],
                forward: true,
                endpoints: vec![],
            },
        );
        st.register("n", "a", entry("web-1", [10, 0, 0, 2]));
        st.register("missing", "b", entry("x", [10, 0, 0, 3]));
        st.save(&path).unwrap();

        let src = StateSource::new(path.clone(), Registry::new());
        assert!(src.refresh().is_some());
        assert!(src.refresh().is_none(), "unchanged file is not re-read");
        assert_eq!(
            src.registry().lookup("n", "web-1", RecordType::A).unwrap(),
            vec![IpAddr::from([10, 0, 0, 2])]
        );
        assert!(
            src.registry()
                .lookup("missing", "x", RecordType::A)
                .is_none()
        );

        // a dead namespace hides its entry
        let ns = tmp.path().join("ns");
        std::fs::write(&ns, "").unwrap();
        let mut e = entry("web-2", [10, 0, 0, 4]);
        e.netns = super::super::registry::NetnsId::of(&ns);
        st.register("n", "b", e);
        assert!(st.unregister("n", "a"));
        assert!(!st.unregister("n", "a"));
        st.save(&path).unwrap();
        assert!(src.refresh().is_some());
        assert!(src.registry().lookup("n", "web-1", RecordType::A).is_none());
        assert_eq!(
            src.registry()
                .lookup("n", "web-2", RecordType::A)
                .unwrap()
                .len(),
            1
        );
        std::fs::remove_file(&ns).unwrap();
        assert!(src.registry().lookup("n", "web-2", RecordType::A).is_none());
    }
}
