//! Networking of one container: the default bridge network (`berth`, like `docker0`), a
//! named network, the host's, or none; published ports; and the generated `/etc/resolv.conf`,
//! `/etc/hosts` and `/etc/hostname`.
//!
//! Every change goes through berth-network's [`Networks`], opened fresh under a host-wide
//! lock (`<run-root>/../network.lock`): `Networks` keeps IPAM and firewall state in memory
//! between a load and a save, so two processes (two concurrent `berth run`) must never hold
//! one each at the same time. The network namespace is the container init's
//! (`/proc/<pid>/ns/net`), connected after the runtime's `create` and before `start`.
//!
//! The default network of a data root other than `/var/lib/berth` gets its own id and nft
//! table (`berth-<hash>`, `berth_<hash>`), so two data roots on one host never share a bridge.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use berth_network::dns::DnsEntry;
use berth_network::etc_files;
use berth_network::firewall::parse_ports;
use berth_network::ipam::{EndpointRequest, NetworkRequest};
use berth_network::networks::{Connect, NetworkConfig, Networks, Options};
use sha2::{Digest as _, Sha256};

use super::record::EndpointRecord;
use super::{ContainerError, Containers, FileLock, NetworkMode, Record, io_err};

const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";

/// The names that identify one data root's networking on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub default_network: String,
    pub table: String,
}

/// Pure: the default network id and nft table for a data root.
pub fn scope(data_root: &Path) -> Scope {
    if data_root == Path::new(DEFAULT_DATA_ROOT) {
        return Scope {
            default_network: "berth".into(),
            table: "berth".into(),
        };
    }
    let h = hex::encode(Sha256::digest(data_root.as_os_str().as_encoded_bytes()));
    Scope {
        default_network: format!("berth-{}", &h[..8]),
        table: format!("berth_{}", &h[..8]),
    }
}

/// `/etc/resolv.conf` of a container: its `--dns` servers, else the host's resolvers
/// without loopback ones (they mean nothing inside another network namespace), else
/// Google's public resolvers as Docker falls back to. With the host's network the host's
/// file is used as is.
pub fn resolv_conf(host: &str, dns: &[IpAddr], host_network: bool) -> String {
    if host_network && dns.is_empty() {
        return host.to_string();
    }
    let servers: Vec<IpAddr> = if dns.is_empty() {
        let ups: Vec<IpAddr> = etc_files::nameservers(host)
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .collect();
        if ups.is_empty() {
            vec![
                "8.8.8.8".parse().expect("ip"),
                "8.8.4.4".parse().expect("ip"),
            ]
        } else {
            ups
        }
    } else {
        dns.to_vec()
    };
    let search = etc_files::search_domains(host);
    etc_files::resolv_conf(None, &servers, &search, &[]).unwrap_or_default()
}

/// A [`Networks`] owned by a long-running process and the runtime it lives on.
#[derive(Clone)]
pub struct SharedNetworks {
    pub networks: std::sync::Arc<Networks>,
    pub runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for SharedNetworks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedNetworks").finish_non_exhaustive()
    }
}

fn net_err(id: &str, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Network {
        id: id[..12.min(id.len())].to_string(),
        reason: e.to_string(),
    }
}

impl Containers {
    pub(crate) fn network_scope(&self) -> Scope {
        scope(&self.config.data_root)
    }

    fn network_lock(&self) -> Result<FileLock, ContainerError> {
        let path = self
            .config
            .run_root
            .parent()
            .unwrap_or(Path::new("/run/berth"))
            .join("network.lock");
        FileLock::acquire(&path)
    }

    /// Makes every network change go through `shared` (the daemon's [`Networks`], whose
    /// embedded DNS then learns the containers' names) instead of a fresh instance per
    /// operation. Calls block on `shared.runtime`: call them from a blocking thread.
    pub fn with_shared_networks(mut self, shared: SharedNetworks) -> Containers {
        self.shared_networks = Some(shared);
        self
    }

    /// Runs `f` on the shared [`Networks`], or on a freshly opened one in a current-thread
    /// tokio runtime of its own; either way under the host-wide network lock.
    pub(super) fn with_networks<T>(
        &self,
        id: &str,
        f: impl AsyncFnOnce(&Networks) -> Result<T, ContainerError>,
    ) -> Result<T, ContainerError> {
        let _lock = self.network_lock()?;
        if let Some(shared) = &self.shared_networks {
            return shared.runtime.block_on(f(&shared.networks));
        }
        let state_dir = self.config.data_root.join("network");
        std::fs::create_dir_all(&state_dir).map_err(io_err("create directory", &state_dir))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| net_err(id, e))?;
        rt.block_on(async {
            let mut opts = Options::new(state_dir);
            opts.table = self.network_scope().table;
            let nets = Networks::open(opts).map_err(|e| net_err(id, e))?;
            f(&nets).await
        })
    }

    /// The network id a container asks for, if it gets a bridge.
    pub(crate) fn network_id(&self, mode: &NetworkMode) -> Option<String> {
        match mode {
            NetworkMode::Default => Some(self.network_scope().default_network),
            NetworkMode::Bridge(n) => Some(n.clone()),
            NetworkMode::Host | NetworkMode::None => None,
        }
    }

    /// Connects container `record` (whose init is `pid`) to its network: creates the default
    /// network on first use, allocates an address, makes the veth, publishes ports.
    pub(crate) fn connect_network(
        &self,
        record: &Record,
        pid: i32,
    ) -> Result<Vec<EndpointRecord>, ContainerError> {
        let Some(network) = self.network_id(&record.config.network) else {
            if !record.config.ports.is_empty() && record.config.network == NetworkMode::None {
                return Err(net_err(
                    &record.id,
                    "ports cannot be published without a network",
                ));
            }
            return Ok(Vec::new());
        };
        let mut ports = Vec::new();
        for p in &record.config.ports {
            ports.extend(parse_ports(p).map_err(|e| net_err(&record.id, e))?);
        }
        let is_default = record.config.network == NetworkMode::Default;
        let id = record.id.clone();
        self.with_networks(&record.id, async |nets| {
            let net = match nets.network(&network) {
                Some(n) => n,
                None if is_default => nets
                    .create_network(&NetworkConfig {
                        id: network.clone(),
                        request: NetworkRequest::default(),
                        internal: false,
                        mtu: None,
                    })
                    .await
                    .map_err(|e| net_err(&id, e))?,
                None => {
                    return Err(net_err(&id, format!("network {network} not found")));
                }
            };
            let att = nets
                .connect(
                    &network,
                    &Connect {
                        endpoint_id: id.clone(),
                        netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
                        ifname: "eth0".into(),
                        addresses: EndpointRequest::default(),
                        default_route: true,
                        names: DnsEntry {
                            container_name: record.name.clone(),
                            aliases: vec![id[..12].to_string()],
                            ..Default::default()
                        },
                        ports,
                    },
                )
                .await
                .map_err(|e| net_err(&id, e))?;
            Ok(vec![EndpointRecord {
                network: network.clone(),
                ip: att.ipv4.to_string(),
                gateway: net.gateway_v4.to_string(),
                prefix_len: net.subnet_v4.prefix(),
                mac: att
                    .mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                ports: record.config.ports.clone(),
            }])
        })
    }

    /// Detaches every endpoint of `record`: ports, veth, address. Errors are collected.
    pub(crate) fn disconnect_network(&self, record: &Record) -> Result<(), ContainerError> {
        if record.endpoints.is_empty() {
            return Ok(());
        }
        let id = record.id.clone();
        self.with_networks(&record.id, async |nets| {
            let mut errors = Vec::new();
            for ep in &record.endpoints {
                if let Err(e) = nets.disconnect(&ep.network, &id).await {
                    errors.push(e.to_string());
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(net_err(&id, errors.join("; ")))
            }
        })
    }

    /// Removes this data root's networks and its nft table (uninstall, or the end of a test).
    pub fn remove_networks(&self) -> Result<(), ContainerError> {
        self.with_networks("networks", async |nets| {
            let mut errors = Vec::new();
            for id in nets.networks().keys() {
                if let Err(e) = nets.remove_network(id).await {
                    errors.push(e.to_string());
                }
            }
            if let Err(e) = nets.delete_firewall_table() {
                errors.push(e.to_string());
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(net_err("networks", errors.join("; ")))
            }
        })
    }

    /// Writes the container's `/etc/hosts` with its addresses (in place: the file is
    /// bind-mounted, so a rename would not reach the container).
    pub(crate) fn write_hosts(&self, record: &Record) -> Result<(), ContainerError> {
        let ips: Vec<IpAddr> = record
            .endpoints
            .iter()
            .filter_map(|e| e.ip.parse().ok())
            .collect();
        let mut extra = Vec::new();
        for h in &record.config.add_host {
            extra.push(etc_files::parse_extra_host(h).map_err(|e| net_err(&record.id, e))?);
        }
        let hostname = record
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| record.id[..12].to_string());
        let text =
            etc_files::hosts(&hostname, None, &ips, &extra).map_err(|e| net_err(&record.id, e))?;
        let path = self.container_dir(&record.id).join("etc/hosts");
        std::fs::write(&path, text).map_err(io_err("write", &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_scope_and_private_scopes() {
        assert_eq!(scope(Path::new("/var/lib/berth")).table, "berth");
        let a = scope(Path::new("/tmp/a"));
        let b = scope(Path::new("/tmp/b"));
        assert_ne!(a, b);
        assert!(a.default_network.starts_with("berth-"));
        assert!(a.table.starts_with("berth_"));
    }

    #[test]
    fn resolv_conf_skips_loopback_resolvers() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\n";
        let r = resolv_conf(host, &[], false);
        assert_eq!(r, "nameserver 10.0.0.2\nsearch lan\n");
        let r = resolv_conf("nameserver 127.0.0.1\n", &[], false);
        assert!(r.contains("8.8.8.8"));
        let r = resolv_conf(host, &["1.1.1.1".parse().unwrap()], false);
        assert!(r.starts_with("nameserver 1.1.1.1\n"));
        assert_eq!(resolv_conf(host, &[], true), host);
    }
}
