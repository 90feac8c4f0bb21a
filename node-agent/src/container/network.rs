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
//! It is shown as `bridge`, like Docker's, and like it has no name resolution; user-defined
//! networks (`network create`) have: their containers' `/etc/resolv.conf` names the gateway,
//! where `berth-dns` answers container names, short ids, aliases and Compose service names.
//!
//! Also here: the user-defined networks themselves (create, list, inspect, remove, prune),
//! connecting a running container to more networks, and its published ports (`port`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use berth_network::bridge::BridgeNetwork;
use berth_network::dns::DnsEntry;
use berth_network::etc_files;
use berth_network::firewall::{PortMapping, parse_ports};
use berth_network::ipam::{EndpointRequest, NetworkRequest};
use berth_network::ipnetwork::IpNetwork;
use berth_network::networks::{Connect, NetworkConfig, Networks, Options};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::record::{EndpointRecord, Status};
use super::{ContainerError, Containers, FileLock, NetworkMode, Record, io_err};

/// The label Compose puts on a service's containers; its value answers in DNS for every
/// replica.
const SERVICE_LABEL: &str = "com.docker.compose.service";

/// Names no user network may take.
const RESERVED: [&str; 4] = ["bridge", "host", "none", "default"];

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreate {
    pub name: String,
    pub internal: bool,
    pub ipv6: bool,
    /// IPv4 and/or IPv6 subnets (CIDR).
    pub subnets: Vec<String>,
    /// Gateways, matched to the subnets by address family.
    pub gateways: Vec<String>,
    pub mtu: Option<u32>,
    pub labels: BTreeMap<String, String>,
}

/// Pure: the request berth-network takes for `c`.
pub fn network_request(c: &NetworkCreate) -> Result<NetworkRequest, ContainerError> {
    let bad = |option: &str, value: &str, reason: &str| ContainerError::BadOption {
        option: option.into(),
        value: value.into(),
        reason: reason.into(),
    };
    let mut req = NetworkRequest {
        enable_ipv6: c.ipv6,
        ..Default::default()
    };
    for s in &c.subnets {
        match s.parse::<IpNetwork>() {
            Ok(IpNetwork::V4(n)) if req.subnet_v4.is_none() => req.subnet_v4 = Some(n),
            Ok(IpNetwork::V6(n)) if req.subnet_v6.is_none() => {
                req.subnet_v6 = Some(n);
                req.enable_ipv6 = true;
            }
            Ok(_) => return Err(bad("--subnet", s, "one subnet per address family")),
            Err(e) => return Err(bad("--subnet", s, &e.to_string())),
        }
    }
    for g in &c.gateways {
        match g.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if req.subnet_v4.is_some() => req.gateway_v4 = Some(a),
            Ok(IpAddr::V6(a)) if req.subnet_v6.is_some() => req.gateway_v6 = Some(a),
            Ok(_) => return Err(bad("--gateway", g, "needs a --subnet of its family")),
            Err(e) => return Err(bad("--gateway", g, &e.to_string())),
        }
    }
    Ok(req)
}

/// Pure: the 64-hex id shown for a network (the network's own id is its name).
pub fn network_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Pure: a free interface name (`eth<N>`, lowest N) given the names already present.
fn free_ifname(present: &[String]) -> String {
    (0..)
        .map(|n| format!("eth{n}"))
        .find(|n| !present.contains(n))
        .unwrap_or_default()
}

/// Interface names inside the namespace of `pid` (from `/proc/<pid>/net/dev`).
fn interfaces_of(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect()
}

/// Pure: `docker port` lines for `ports` (`80/tcp -> 0.0.0.0:8080`), filtered to
/// `private` (`80` or `80/udp`) when given.
pub fn port_lines(ports: &[PortMapping], private: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for m in ports {
        let proto = format!("{:?}", m.protocol).to_ascii_lowercase();
        let key = format!("{}/{proto}", m.container_port);
        if let Some(p) = private {
            let want = if p.contains('/') {
                p.to_string()
            } else {
                format!("{p}/tcp")
            };
            if want != key {
                continue;
            }
        }
        let host = match m.host_ip {
            Some(IpAddr::V6(a)) => format!("[{a}]:{}", m.host_port),
            Some(IpAddr::V4(a)) => format!("{a}:{}", m.host_port),
            None => format!("0.0.0.0:{}", m.host_port),
        };
        out.push(if private.is_some() {
            host
        } else {
            format!("{key} -> {host}")
        });
    }
    out
}

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
            shared.networks.reload().map_err(|e| net_err(id, e))?;
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
        let upstreams: Vec<IpAddr> = record
            .config
            .dns
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        let endpoints = self.with_networks(&record.id, async |nets| {
            let net = match nets.network(&network) {
                Some(n) => n,
                None if is_default => nets
                    .create_network(&NetworkConfig {
                        id: network.clone(),
                        request: NetworkRequest::default(),
                        internal: false,
                        mtu: None,
                        // as Docker's default bridge: no name resolution
                        no_dns: true,
                        labels: BTreeMap::new(),
                        created: berth_shim::time::now_rfc3339(),
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
                        names: dns_entry(record, &[], upstreams),
                        ports,
                    },
                )
                .await
                .map_err(|e| net_err(&id, e))?;
            Ok(vec![endpoint_record(&net, &att, &record.config.ports)])
        })?;
        if !is_default {
            self.write_resolv_conf(record, &endpoints)?;
        }
        Ok(endpoints)
    }

    /// Points the container's `/etc/resolv.conf` at the gateway of its first network, where
    /// berth-dns answers (its own `--dns` servers become that server's upstreams for it).
    fn write_resolv_conf(
        &self,
        record: &Record,
        endpoints: &[EndpointRecord],
    ) -> Result<(), ContainerError> {
        let Some(gw) = endpoints
            .first()
            .and_then(|e| e.gateway.parse::<IpAddr>().ok())
        else {
            return Ok(());
        };
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let text = etc_files::resolv_conf(Some(gw), &[], &etc_files::search_domains(&host), &[])
            .map_err(|e| net_err(&record.id, e))?;
        let path = self.container_dir(&record.id).join("etc/resolv.conf");
        // in place: the file is bind-mounted, so a rename would not reach the container
        std::fs::write(&path, text).map_err(io_err("write", &path))
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
            // berth-dns exits once no network is left; make sure of it
            nets.stop_dns();
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

/// The DNS names of `record` on a network: its name, short id and `aliases`, and its Compose
/// service (every replica answers to it).
fn dns_entry(record: &Record, aliases: &[String], upstreams: Vec<IpAddr>) -> DnsEntry {
    let mut all = vec![record.id[..12].to_string()];
    all.extend(aliases.iter().cloned());
    DnsEntry {
        container_name: record.name.clone(),
        service: record.labels.get(SERVICE_LABEL).cloned(),
        aliases: all,
        upstreams,
        ..Default::default()
    }
}

fn endpoint_record(
    net: &BridgeNetwork,
    att: &berth_network::bridge::Attachment,
    ports: &[String],
) -> EndpointRecord {
    EndpointRecord {
        network: net.id.clone(),
        ip: att.ipv4.to_string(),
        gateway: net.gateway_v4.to_string(),
        prefix_len: net.subnet_v4.prefix(),
        mac: att
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        ports: ports.to_vec(),
    }
}

impl Containers {
    /// The network id behind a name the user gives (`bridge` is the default network).
    fn network_id_of(&self, name: &str) -> String {
        match NetworkMode::parse(name) {
            NetworkMode::Bridge(n) => n,
            _ => self.network_scope().default_network,
        }
    }

    /// The name shown for network id `id`.
    fn network_name_of(&self, id: &str) -> String {
        if id == self.network_scope().default_network {
            "bridge".into()
        } else {
            id.to_string()
        }
    }

    /// Creates a user-defined bridge network.
    pub fn network_create(&self, c: &NetworkCreate) -> Result<Value, ContainerError> {
        if !super::options::valid_name(&c.name) || RESERVED.contains(&c.name.as_str()) {
            return Err(ContainerError::BadOption {
                option: "network name".into(),
                value: c.name.clone(),
                reason: "use [a-zA-Z0-9][a-zA-Z0-9_.-]*, not bridge, host, none or default".into(),
            });
        }
        let request = network_request(c)?;
        let name = c.name.clone();
        self.with_networks(&c.name, async |nets| {
            if nets.network(&name).is_some() {
                return Err(net_err(
                    &name,
                    format!("network with name {name} already exists"),
                ));
            }
            nets.create_network(&NetworkConfig {
                id: name.clone(),
                request,
                internal: c.internal,
                mtu: c.mtu,
                no_dns: false,
                labels: c.labels.clone(),
                created: berth_shim::time::now_rfc3339(),
            })
            .await
            .map_err(|e| net_err(&name, e))?;
            Ok(())
        })?;
        self.network_inspect(&c.name)
    }

    /// Every network as `docker network inspect` shows it: the default `bridge`, `host`,
    /// `none`, then the user-defined ones by name.
    pub fn network_list(&self) -> Result<Vec<Value>, ContainerError> {
        let nets = self.with_networks("networks", async |nets| Ok(nets.networks()))?;
        let records = self.records()?;
        let default = self.network_scope().default_network;
        let mut out = vec![self.network_json(&default, nets.get(&default), &records)];
        for (name, driver) in [("host", "host"), ("none", "null")] {
            out.push(json!({
                "Name": name, "Id": network_hash(name), "Created": "", "Scope": "local",
                "Driver": driver, "EnableIPv6": false, "Internal": false,
                "IPAM": {"Driver": "default", "Config": []}, "Containers": {},
                "Options": {}, "Labels": {},
            }));
        }
        for (id, net) in &nets {
            if *id != default {
                out.push(self.network_json(id, Some(net), &records));
            }
        }
        Ok(out)
    }

    /// One network, by name or id prefix (at least 3 hex digits).
    pub fn network_inspect(&self, query: &str) -> Result<Value, ContainerError> {
        let all = self.network_list()?;
        let found: Vec<&Value> = all
            .iter()
            .filter(|n| n["Name"] == query)
            .chain(all.iter().filter(|n| {
                query.len() >= 3 && n["Id"].as_str().is_some_and(|i| i.starts_with(query))
            }))
            .collect();
        match found.as_slice() {
            [] => Err(ContainerError::NotFound(format!("network {query}"))),
            [one, ..] if one["Name"] == query => Ok((*one).clone()),
            [one] => Ok((*one).clone()),
            _ => Err(ContainerError::Ambiguous(query.to_string())),
        }
    }

    fn network_json(&self, id: &str, net: Option<&BridgeNetwork>, records: &[Record]) -> Value {
        let mut containers = serde_json::Map::new();
        for r in records {
            for ep in r.endpoints.iter().filter(|e| e.network == id) {
                if r.state.status != Status::Running {
                    continue;
                }
                containers.insert(
                    r.id.clone(),
                    json!({
                        "Name": r.name, "EndpointID": network_hash(&format!("{id}/{}", r.id)),
                        "MacAddress": ep.mac,
                        "IPv4Address": format!("{}/{}", ep.ip, ep.prefix_len),
                        "IPv6Address": "",
                    }),
                );
            }
        }
        let mut config = Vec::new();
        let mut options = serde_json::Map::new();
        if let Some(n) = net {
            config.push(
                json!({"Subnet": n.subnet_v4.to_string(), "Gateway": n.gateway_v4.to_string()}),
            );
            if let (Some(s), Some(g)) = (n.subnet_v6, n.gateway_v6) {
                config.push(json!({"Subnet": s.to_string(), "Gateway": g.to_string()}));
            }
            options.insert("com.docker.network.bridge.name".into(), json!(n.bridge));
            if let Some(mtu) = n.mtu {
                options.insert(
                    "com.docker.network.driver.mtu".into(),
                    json!(mtu.to_string()),
                );
            }
        }
        json!({
            "Name": self.network_name_of(id),
            "Id": network_hash(id),
            "Created": net.map(|n| n.created.clone()).unwrap_or_default(),
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": net.is_some_and(|n| n.subnet_v6.is_some()),
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": net.is_some_and(|n| n.internal),
            "Attachable": false,
            "Containers": containers,
            "Options": options,
            "Labels": net.map(|n| n.labels.clone()).unwrap_or_default(),
        })
    }

    /// Removes a user-defined network; refused while a running container is on it.
    pub fn network_remove(&self, query: &str) -> Result<String, ContainerError> {
        let info = self.network_inspect(query)?;
        let name = info["Name"].as_str().unwrap_or_default().to_string();
        if RESERVED.contains(&name.as_str()) {
            return Err(net_err(
                &name,
                format!("{name} is a pre-defined network and cannot be removed"),
            ));
        }
        if let Some(users) = info["Containers"].as_object().filter(|c| !c.is_empty()) {
            let names: Vec<&str> = users.values().filter_map(|c| c["Name"].as_str()).collect();
            return Err(net_err(
                &name,
                format!(
                    "network {name} has active endpoints ({}); stop or disconnect them first",
                    names.join(", ")
                ),
            ));
        }
        let id = self.network_id_of(&name);
        self.with_networks(&id, async |nets| {
            nets.remove_network(&id).await.map_err(|e| net_err(&id, e))
        })?;
        Ok(name)
    }

    /// Removes every user-defined network no container (running or not) refers to; returns
    /// their names.
    pub fn network_prune(&self) -> Result<Vec<String>, ContainerError> {
        let records = self.records()?;
        let default = self.network_scope().default_network;
        let ids: Vec<String> = self
            .with_networks("networks", async |nets| Ok(nets.networks()))?
            .into_keys()
            .filter(|id| *id != default)
            .filter(|id| {
                !records.iter().any(|r| {
                    r.config.network == NetworkMode::Bridge(id.clone())
                        || r.endpoints.iter().any(|e| &e.network == id)
                })
            })
            .collect();
        let mut removed = Vec::new();
        for id in ids {
            self.with_networks(&id, async |nets| {
                nets.remove_network(&id).await.map_err(|e| net_err(&id, e))
            })?;
            removed.push(id);
        }
        Ok(removed)
    }

    /// Connects running container `query` to one more network (`eth1`, `eth2`, …; the
    /// default route stays on the first), with extra DNS `aliases` and optional static
    /// addresses. The connection lasts until the container stops.
    pub fn network_connect(
        &self,
        network: &str,
        query: &str,
        aliases: &[String],
        ipv4: Option<Ipv4Addr>,
        ipv6: Option<Ipv6Addr>,
    ) -> Result<(), ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status != Status::Running {
            return Err(ContainerError::State {
                id: record.short_id().into(),
                state: "not running",
                hint: "start it before connecting it to another network",
            });
        }
        if matches!(record.config.network, NetworkMode::Host | NetworkMode::None) {
            return Err(net_err(
                &record.id,
                "a container on the host's network or none cannot join a bridge network",
            ));
        }
        let id = self.network_id_of(network);
        if record.endpoints.iter().any(|e| e.network == id) {
            return Err(net_err(
                &record.id,
                format!("already connected to network {network}"),
            ));
        }
        let pid = record.state.pid;
        let ifname = free_ifname(&interfaces_of(pid));
        let upstreams = record
            .config
            .dns
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        let names = dns_entry(&record, aliases, upstreams);
        let ep = self.with_networks(&record.id, async |nets| {
            let net = nets
                .network(&id)
                .ok_or_else(|| ContainerError::NotFound(format!("network {network}")))?;
            let att = nets
                .connect(
                    &id,
                    &Connect {
                        endpoint_id: record.id.clone(),
                        netns: PathBuf::from(format!("/proc/{pid}/ns/net")),
                        ifname,
                        addresses: EndpointRequest { ipv4, ipv6 },
                        default_route: false,
                        names,
                        ports: Vec::new(),
                    },
                )
                .await
                .map_err(|e| net_err(&record.id, e))?;
            Ok(endpoint_record(&net, &att, &[]))
        })?;
        let _lock = self.record_lock(&record.id)?;
        let mut fresh = Record::load(&self.container_dir(&record.id))?;
        fresh.endpoints.push(ep);
        self.save(&fresh)?;
        self.write_hosts(&fresh)
    }

    /// Disconnects container `query` from `network`.
    pub fn network_disconnect(&self, network: &str, query: &str) -> Result<(), ContainerError> {
        let record = self.resolve(query)?;
        let id = self.network_id_of(network);
        if !record.endpoints.iter().any(|e| e.network == id) {
            return Err(net_err(
                &record.id,
                format!("not connected to network {network}"),
            ));
        }
        self.with_networks(&record.id, async |nets| {
            nets.disconnect(&id, &record.id)
                .await
                .map_err(|e| net_err(&record.id, e))
        })?;
        let _lock = self.record_lock(&record.id)?;
        let mut fresh = Record::load(&self.container_dir(&record.id))?;
        fresh.endpoints.retain(|e| e.network != id);
        self.save(&fresh)?;
        self.write_hosts(&fresh)
    }

    /// `docker port`: the published ports of running container `query`, as lines.
    pub fn port(&self, query: &str, private: Option<&str>) -> Result<Vec<String>, ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status != Status::Running {
            return Ok(Vec::new());
        }
        let mut ports = Vec::new();
        for spec in &record.config.ports {
            ports.extend(parse_ports(spec).map_err(|e| net_err(&record.id, e))?);
        }
        let lines = port_lines(&ports, private);
        if let Some(p) = private.filter(|_| lines.is_empty()) {
            return Err(net_err(
                &record.id,
                format!("no public port '{p}' published"),
            ));
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_and_port_lines() {
        let req = network_request(&NetworkCreate {
            subnets: vec!["10.9.0.0/24".into(), "fd00:1::/64".into()],
            gateways: vec!["10.9.0.254".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(req.enable_ipv6);
        assert_eq!(req.gateway_v4, Some("10.9.0.254".parse().unwrap()));
        assert!(
            network_request(&NetworkCreate {
                gateways: vec!["10.9.0.1".into()],
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            network_request(&NetworkCreate {
                subnets: vec!["nonsense".into()],
                ..Default::default()
            })
            .is_err()
        );
        let ports = parse_ports("127.0.0.1:8080:80").unwrap();
        let mut all = ports.clone();
        all.extend(parse_ports("9000:90/udp").unwrap());
        assert_eq!(
            port_lines(&all, None),
            ["80/tcp -> 127.0.0.1:8080", "90/udp -> 0.0.0.0:9000"]
        );
        assert_eq!(port_lines(&all, Some("90/udp")), ["0.0.0.0:9000"]);
        assert_eq!(port_lines(&all, Some("80")), ["127.0.0.1:8080"]);
        assert_eq!(free_ifname(&["lo".into(), "eth0".into()]), "eth1");
    }

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
