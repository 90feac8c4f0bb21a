//! The node's networking as one object: IPAM, bridges, firewall and DNS kept consistent.
//!
//! [`Networks`] is what the node agent calls: create a network, connect a container's network
//! namespace to it, disconnect, remove, and restore everything after a restart. State lives
//! in three files of `state_dir`: `ipam.json` (subnets and addresses), `networks.json` (the
//! firewall state: each network's settings and the published ports) and `dns.json` (what the
//! `berth-dns` process serves: gateways and names), all written atomically before a call
//! returns. Name resolution therefore needs no process of ours to stay alive: `berth-dns`
//! is started on demand and follows `dns.json`. Teardown tries every step and reports every failure together.
//! The plumbing itself belongs to the modules below; this one only orders the steps.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::bridge::{self, Attachment, BridgeError, BridgeNetwork, Endpoint};
use crate::dns::{ControlError, DnsControl, DnsEntry, DnsError, DnsNetwork, DnsState, NetnsId};
use crate::firewall::{Firewall, FirewallError, FirewallState, PortMapping, Published};
use crate::ipam::{EndpointRequest, Ipam, IpamError, NetworkRequest, Pool};
use crate::netlink::{Netlink, NetlinkError};

/// Errors of node networking, wrapping the failing layer's error.
#[derive(Debug, thiserror::Error)]
pub enum NetworksError {
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    DnsServer(#[from] ControlError),
    #[error("unknown network {0}")]
    UnknownNetwork(String),
    #[error("endpoint {endpoint} is already connected to network {network}")]
    AlreadyConnected { network: String, endpoint: String },
    #[error("network state file {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("firewall worker failed: {0}")]
    Worker(String),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Teardown(Vec<NetworksError>),
}

/// Settings of a [`Networks`] instance.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where `ipam.json` and `networks.json` live.
    pub state_dir: PathBuf,
    pub pool: Pool,
    /// The nftables table (`inet <table>`); `berth` in production.
    pub table: String,
    /// Turn on IP forwarding when a non-internal network appears (see [`Firewall::new`]).
    pub manage_forwarding: bool,
    /// Where names unknown to berth are forwarded.
    pub host_upstreams: Vec<IpAddr>,
    /// UDP port of the embedded DNS on each gateway (53 in production).
    pub dns_port: u16,
    /// The `berth-dns` binary; `None` looks in `BERTH_LIBEXEC_DIR`, then next to the
    /// current executable.
    pub dns_binary: Option<PathBuf>,
}

impl Options {
    /// Production defaults under `state_dir`, upstreams from the host's `/etc/resolv.conf`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let upstreams = std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| crate::dns::upstreams_from_resolv_conf(&t))
            .unwrap_or_default();
        Options {
            state_dir: state_dir.into(),
            pool: Pool::default(),
            table: "berth".into(),
            manage_forwarding: true,
            host_upstreams: upstreams,
            dns_port: 53,
            dns_binary: None,
        }
    }
}

/// A network to create.
#[derive(Clone, Debug, Default)]
pub struct NetworkConfig {
    pub id: String,
    pub request: NetworkRequest,
    pub internal: bool,
    pub mtu: Option<u32>,
    /// No name resolution on this network (Docker's default bridge has none).
    pub no_dns: bool,
    /// Kept with the network, for listing.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time, kept with the network.
    pub created: String,
}

/// A container endpoint to connect.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// Unique on the network (e.g. the container id).
    pub endpoint_id: String,
    /// `/proc/<pid>/ns/net` or `/run/netns/<name>`.
    pub netns: PathBuf,
    /// `eth0` for the first network, `eth1` for the next, …
    pub ifname: String,
    pub addresses: EndpointRequest,
    /// Whether this network carries the default route.
    pub default_route: bool,
    /// Names in DNS (addresses are filled in from IPAM).
    pub names: DnsEntry,
    pub ports: Vec<PortMapping>,
}

/// The node's networks: one per agent.
pub struct Networks {
    nl: Netlink,
    opts: Options,
    ipam: Mutex<Ipam>,
    firewall: Arc<Mutex<Firewall>>,
    /// Serializes creating, removing and restoring networks (each spans several awaits).
    admin: tokio::sync::Mutex<()>,
    /// What `berth-dns` serves; every change is written (and, for listeners, applied) while
    /// this lock is held, so concurrent changes never overwrite one another.
    names: Arc<Mutex<DnsState>>,
    dns: DnsControl,
}

impl std::fmt::Debug for Networks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networks")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Networks {
    /// Opens the state in `opts.state_dir` without changing the kernel; call
    /// [`Networks::restore`] after an agent restart to re-create bridges, rules and listeners.
    pub fn open(opts: Options) -> Result<Self, NetworksError> {
        let nl = Netlink::connect()?;
        let ipam = Ipam::open(opts.state_dir.join("ipam.json"), opts.pool.clone())?;
        let mut firewall = Firewall::new(&opts.table, opts.manage_forwarding)?;
        let path = opts.state_dir.join("networks.json");
        let state: FirewallState = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| NetworksError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FirewallState::default(),
            Err(source) => return Err(NetworksError::State { path, source }),
        };
        let dns_path = opts.state_dir.join(crate::dns::state::STATE_FILE);
        let mut names = DnsState::load(&dns_path).map_err(|source| NetworksError::State {
            path: dns_path.clone(),
            source,
        })?;
        if !dns_path.exists() {
            // state from before berth-dns: every network had names
            for net in state.networks.values() {
                names.networks.insert(net.id.clone(), dns_network(net));
            }
        }
        names.port = opts.dns_port;
        names.host_upstreams = opts.host_upstreams.clone();
        firewall.set_state_unapplied(state);
        let dns = DnsControl::new(&opts.state_dir, opts.dns_binary.clone());
        Ok(Networks {
            nl,
            opts,
            ipam: Mutex::new(ipam),
            firewall: Arc::new(Mutex::new(firewall)),
            admin: tokio::sync::Mutex::new(()),
            names: Arc::new(Mutex::new(names)),
            dns,
        })
    }

    /// Re-reads IPAM, firewall and name state from the state directory. A `Networks` that
    /// lives long (berthd's) calls it each time it takes the host-wide network lock, since a
    /// daemonless `berth` command may have changed the files in between; writing its older
    /// copy back would lose that command's addresses, rules or names. Changes nothing in the
    /// kernel: the next change applies the whole berth table from the state read here.
    pub fn reload(&self) -> Result<(), NetworksError> {
        let ipam = Ipam::open(
            self.opts.state_dir.join("ipam.json"),
            self.opts.pool.clone(),
        )?;
        let path = self.opts.state_dir.join("networks.json");
        let state: FirewallState = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| NetworksError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FirewallState::default(),
            Err(source) => return Err(NetworksError::State { path, source }),
        };
        let dns_path = self.opts.state_dir.join(crate::dns::state::STATE_FILE);
        if dns_path.exists() {
            let mut names = DnsState::load(&dns_path).map_err(|source| NetworksError::State {
                path: dns_path.clone(),
                source,
            })?;
            names.port = self.opts.dns_port;
            names.host_upstreams = self.opts.host_upstreams.clone();
            *self.names.lock().expect("names lock") = names;
        }
        *self.ipam.lock().expect("ipam lock") = ipam;
        self.firewall
            .lock()
            .expect("firewall lock")
            .set_state_unapplied(state);
        Ok(())
    }

    /// A copy of what `berth-dns` serves.
    pub fn dns_state(&self) -> DnsState {
        self.names.lock().expect("names lock").clone()
    }

    /// Changes the DNS state with `f` (which says whether it changed anything) and writes it;
    /// with `apply`, also waits until `berth-dns` listens as the new state says (started on
    /// demand). On a blocking thread: it writes files and may wait for the server.
    async fn dns_change(
        &self,
        apply: bool,
        f: impl FnOnce(&mut DnsState) -> bool + Send + 'static,
    ) -> Result<(), NetworksError> {
        let names = self.names.clone();
        let dns = self.dns.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = names.lock().expect("names lock");
            if !f(&mut st) && !apply {
                return Ok(());
            }
            if apply {
                dns.apply(&mut st)
            } else {
                dns.write(&mut st)
            }
        })
        .await
        .map_err(|e| NetworksError::Worker(e.to_string()))?
        .map_err(Into::into)
    }

    /// Makes `entry` answer on `network` for `endpoint_id` (replacing an earlier one): for
    /// the agent, e.g. to add names of something not connected through [`Networks::connect`].
    pub async fn register_names(
        &self,
        network: &str,
        endpoint_id: &str,
        entry: DnsEntry,
    ) -> Result<(), NetworksError> {
        let (network, endpoint) = (network.to_string(), endpoint_id.to_string());
        self.dns_change(false, move |st| {
            st.register(&network, &endpoint, entry);
            true
        })
        .await
    }

    /// Takes `endpoint_id`'s names off `network` (e.g. a container that is stopping before
    /// its network goes). Names of a container whose namespace is gone disappear anyway.
    pub async fn unregister_names(
        &self,
        network: &str,
        endpoint_id: &str,
    ) -> Result<(), NetworksError> {
        let (network, endpoint) = (network.to_string(), endpoint_id.to_string());
        self.dns_change(false, move |st| st.unregister(&network, &endpoint))
            .await
    }

    /// Stops this state dir's `berth-dns` (uninstall, or the end of a test); it is started
    /// again by the next change that needs it.
    pub fn stop_dns(&self) {
        self.dns.stop();
    }

    pub fn netlink(&self) -> &Netlink {
        &self.nl
    }

    /// The network `id` as created, if it exists.
    pub fn network(&self, id: &str) -> Option<BridgeNetwork> {
        self.firewall
            .lock()
            .expect("firewall lock")
            .state()
            .networks
            .get(id)
            .cloned()
    }

    /// Every network, by id.
    pub fn networks(&self) -> BTreeMap<String, BridgeNetwork> {
        self.firewall
            .lock()
            .expect("firewall lock")
            .state()
            .networks
            .clone()
    }

    /// Applies `f` to the firewall and saves its state, on a blocking thread: `nft` runs as a
    /// child process, which must not stall a tokio worker (and the DNS tasks queued on it).
    async fn firewall_change(
        &self,
        f: impl FnOnce(&mut Firewall) -> Result<(), FirewallError> + Send + 'static,
    ) -> Result<(), NetworksError> {
        let fw = self.firewall.clone();
        let path = self.opts.state_dir.join("networks.json");
        tokio::task::spawn_blocking(move || {
            let mut fw = fw.lock().expect("firewall lock");
            f(&mut fw)?;
            crate::ipam::write_json_atomically(&path, fw.state())
                .map_err(|source| NetworksError::State { path, source })
        })
        .await
        .map_err(|e| NetworksError::Worker(e.to_string()))?
    }

    /// Creates network `cfg.id`: subnet from IPAM (skipping host routes), bridge, firewall
    /// rules, DNS listener. Calling it again for an existing network returns it unchanged.
    pub async fn create_network(
        &self,
        cfg: &NetworkConfig,
    ) -> Result<BridgeNetwork, NetworksError> {
        let _admin = self.admin.lock().await;
        if let Some(existing) = self.network(&cfg.id) {
            return Ok(existing);
        }
        let routes = self.nl.routes().await?;
        let lease = self.ipam.lock().expect("ipam lock").allocate_network(
            &cfg.id,
            &cfg.request,
            &routes,
        )?;
        let mut net = BridgeNetwork::new(&cfg.id, &lease, cfg.mtu, cfg.internal);
        net.labels = cfg.labels.clone();
        net.created = cfg.created.clone();
        let built = async {
            bridge::create_network(&self.nl, &net).await?;
            let n = net.clone();
            self.firewall_change(move |fw| fw.add_network(&n)).await?;
            if !cfg.no_dns {
                let d = dns_network(&net);
                let id = net.id.clone();
                self.dns_change(true, move |st| {
                    st.networks.insert(id, d);
                    true
                })
                .await?;
            }
            Ok::<_, NetworksError>(())
        }
        .await;
        if let Err(e) = built {
            // leave nothing half-made; the original error is the one worth reporting
            let _ = self.remove_network_locked(&cfg.id).await;
            return Err(e);
        }
        Ok(net)
    }

    /// Connects a container's namespace to network `network_id`: addresses from IPAM, veth,
    /// DNS names, published ports. On failure nothing of it is left.
    pub async fn connect(
        &self,
        network_id: &str,
        c: &Connect,
    ) -> Result<Attachment, NetworksError> {
        let net = self
            .network(network_id)
            .ok_or_else(|| NetworksError::UnknownNetwork(network_id.to_string()))?;
        let lease = {
            let mut ipam = self.ipam.lock().expect("ipam lock");
            // a second connect must fail without its rollback tearing down the first
            if ipam
                .state()
                .networks
                .get(network_id)
                .is_some_and(|n| n.endpoints.contains_key(&c.endpoint_id))
            {
                return Err(NetworksError::AlreadyConnected {
                    network: network_id.to_string(),
                    endpoint: c.endpoint_id.clone(),
                });
            }
            ipam.allocate_endpoint(network_id, &c.endpoint_id, &c.addresses)?
        };
        let ep = Endpoint::new(&c.endpoint_id, &c.netns, &c.ifname, &lease, c.default_route);
        let result = async {
            let att = bridge::attach(&self.nl, &net, &ep).await?;
            if !c.ports.is_empty() {
                let endpoint = c.endpoint_id.clone();
                let published = Published {
                    network_id: network_id.to_string(),
                    ipv4: lease.ipv4,
                    ipv6: lease.ipv6,
                    ports: c.ports.clone(),
                };
                self.firewall_change(move |fw| fw.publish(&endpoint, published))
                    .await?;
            }
            let mut entry = c.names.clone();
            entry.ipv4 = Some(lease.ipv4);
            entry.ipv6 = lease.ipv6;
            entry.netns = NetnsId::of(&c.netns);
            let (network, endpoint) = (network_id.to_string(), c.endpoint_id.clone());
            self.dns_change(false, move |st| {
                let known = st.networks.contains_key(&network);
                st.register(&network, &endpoint, entry);
                known
            })
            .await?;
            Ok::<_, NetworksError>(att)
        }
        .await;
        if result.is_err() {
            let _ = self.disconnect(network_id, &c.endpoint_id).await;
        }
        result
    }

    /// Disconnects endpoint `endpoint_id` from `network_id`: DNS names, published ports, veth
    /// and addresses. Every step is tried; all failures are reported together.
    pub async fn disconnect(
        &self,
        network_id: &str,
        endpoint_id: &str,
    ) -> Result<(), NetworksError> {
        let mut errors = Vec::new();
        if let Err(e) = self.unregister_names(network_id, endpoint_id).await {
            errors.push(e);
        }
        let has_ports = self
            .firewall
            .lock()
            .expect("firewall lock")
            .state()
            .published
            .contains_key(endpoint_id);
        if has_ports {
            let endpoint = endpoint_id.to_string();
            if let Err(e) = self
                .firewall_change(move |fw| fw.unpublish(&endpoint))
                .await
            {
                errors.push(e);
            }
        }
        if let Err(e) = bridge::detach(&self.nl, network_id, endpoint_id).await {
            errors.push(e.into());
        }
        if let Err(e) = self
            .ipam
            .lock()
            .expect("ipam lock")
            .release_endpoint(network_id, endpoint_id)
        {
            errors.push(e.into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(NetworksError::Teardown(errors))
        }
    }

    /// Removes network `id` with every endpoint still on it. Every step is tried; all failures
    /// are reported together.
    pub async fn remove_network(&self, id: &str) -> Result<(), NetworksError> {
        let _admin = self.admin.lock().await;
        self.remove_network_locked(id).await
    }

    async fn remove_network_locked(&self, id: &str) -> Result<(), NetworksError> {
        let mut errors = Vec::new();
        let endpoints: Vec<String> = self
            .ipam
            .lock()
            .expect("ipam lock")
            .state()
            .networks
            .get(id)
            .map(|n| n.endpoints.keys().cloned().collect())
            .unwrap_or_default();
        let network = id.to_string();
        if let Err(e) = self
            .dns_change(true, move |st| st.networks.remove(&network).is_some())
            .await
        {
            errors.push(e);
        }
        let network = id.to_string();
        if let Err(e) = self
            .firewall_change(move |fw| fw.remove_network(&network))
            .await
        {
            errors.push(e);
        }
        if let Err(e) = bridge::remove_network(&self.nl, id, &endpoints).await {
            errors.push(e.into());
        }
        if let Err(e) = self.ipam.lock().expect("ipam lock").release_network(id) {
            errors.push(e.into());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(NetworksError::Teardown(errors))
        }
    }

    /// After a reboot or agent restart: re-creates every bridge (idempotently), the whole
    /// firewall table in one batch, and the DNS listeners, from the saved state. Container
    /// endpoints are re-attached by the agent as it restarts containers.
    pub async fn restore(&self) -> Result<(), NetworksError> {
        let _admin = self.admin.lock().await;
        let nets = self.networks();
        for net in nets.values() {
            bridge::create_network(&self.nl, net).await?;
        }
        self.firewall_change(|fw| {
            let state = fw.state().clone();
            fw.restore(state)
        })
        .await?;
        // berth-dns may have survived (an agent restart) or not (a reboot): either way it
        // ends up serving the saved state
        self.dns_change(true, |_| true).await?;
        Ok(())
    }

    /// Deletes the whole firewall table (uninstall, or the end of a test).
    pub fn delete_firewall_table(&self) -> Result<(), NetworksError> {
        self.firewall
            .lock()
            .expect("firewall lock")
            .delete_table()
            .map_err(Into::into)
    }
}

/// What `berth-dns` needs of a network: its gateways, and whether it forwards.
fn dns_network(net: &BridgeNetwork) -> DnsNetwork {
    let mut listen = vec![IpAddr::V4(net.gateway_v4)];
    listen.extend(net.gateway_v6.map(IpAddr::V6));
    DnsNetwork {
        listen,
        forward: !net.internal,
        endpoints: Vec::new(),
    }
}
