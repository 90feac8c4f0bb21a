//! Compose networks of an app deployed on a cluster become overlay networks: the same
//! subnet on every node, joined by VXLAN (`berth_network::overlay`).
//!
//! - **Decided once, in the replicated state.** The leader's allocator ([`allocate`], pure)
//!   gives each network of each app a VNI (from 4096 up) and a subnet (a /24 of
//!   10.208.0.0/12, or the one the Compose file names), and each placed task an address on
//!   each of its networks, proposed as `Command::Overlay`; applying is first-come, so every
//!   node agrees and no address is handed out twice. Addresses go back when a task is removed
//!   or has ended (one the user stopped keeps its address for `start`), networks when their
//!   app is removed.
//! - **Carried by the Compose model.** The agent hands the worker a copy of the app in which
//!   each overlay network names its subnet, gateway and MTU and the task's service names its
//!   address ([`rewrite`]), so the worker builds its ordinary bridge network — only on nodes
//!   with local tasks — and attaches the container with that address. A new task without an
//!   address yet is held back until the allocator has given it one.
//! - **Kept in step on every node** ([`spawn_sync`]): for each overlay network with a bridge
//!   here, the VXLAN port (`bvx-…`, UDP 4789, this node's advertise address as the tunnel
//!   end) and its static forwarding and neighbour entries follow the tasks on other nodes;
//!   their names (service, aliases, container name, `tasks.<service>`) are registered in the
//!   embedded DNS while they run, so names resolve to tasks on every node. The VXLAN port of
//!   a network that left this node is removed.
//!
//! A lone node runs none of this: its networks stay plain bridges.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use berth_controller::store::overlay::{OverlayChange, OverlayNetwork, OverlayState};
use berth_controller::store::{Command, State, Task, TaskState};
use berth_network::dns::DnsEntry;
use berth_network::networks::Networks;
use berth_network::overlay::{self, Overlay, RemoteEndpoint};
use berth_node_agent::worker::naming;
use berth_spec::App;
use berth_spec::model::network::{IpamPool, ServiceNetwork};
use tokio::sync::watch;

use crate::controller::Controller;
use crate::dispatcher::NodeTask;

/// The first VNI handed out (lower ones are left to hand-made overlays).
pub const FIRST_VNI: u32 = 4096;
/// Overlay subnets are /24s of this /12 unless the Compose file names one.
pub const POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 208, 0, 0), 12);
/// The MTU of an overlay bridge: a 1500-byte underlay less the VXLAN header.
pub const MTU: u32 = 1450;
/// DNS endpoints this module registers for tasks on other nodes start with this.
const PEER_ENDPOINT: &str = "peer-";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("overlay network {network}: {source}")]
    Overlay {
        network: String,
        #[source]
        source: overlay::OverlayError,
    },
    #[error("overlay network {network}: names of other nodes' tasks: {source}")]
    Dns {
        network: String,
        #[source]
        source: berth_network::networks::NetworksError,
    },
}

/// Service → its overlay networks as `(Compose key, network id)`.
pub type ServiceNetworks = BTreeMap<String, Vec<(String, String)>>;

/// The overlay networks each service of `app` is on: service → `(key, network id)`. Services
/// on the host's network, none, or another container's have none; external networks are
/// left alone.
pub fn service_networks(app: &App) -> ServiceNetworks {
    let mut out = BTreeMap::new();
    for (name, svc) in &app.services {
        match svc.network_mode.as_deref() {
            None | Some("bridge") | Some("default") => {}
            Some(_) => continue,
        }
        let keys: Vec<String> = if svc.networks.is_empty() {
            vec!["default".to_owned()]
        } else {
            svc.networks.keys().cloned().collect()
        };
        let nets = keys
            .into_iter()
            .filter_map(|key| {
                let def = app.networks.get(&key);
                if def.is_some_and(|d| d.external.external) {
                    return None;
                }
                let id = naming::network_id(&app.name, &key, def.and_then(|d| d.name.as_deref()));
                Some((key, id))
            })
            .collect();
        out.insert(name.clone(), nets);
    }
    out
}

/// `a.b.c.d/len` as (base, len).
fn parse_subnet(text: &str) -> Option<(u32, u8)> {
    let (ip, len) = text.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if !(8..=30).contains(&len) {
        return None;
    }
    let mask = u32::MAX << (32 - len);
    Some((u32::from(ip) & mask, len))
}

/// The gateway of a subnet: its first address, the same on every node.
pub fn gateway(subnet: &str) -> Option<Ipv4Addr> {
    parse_subnet(subnet).map(|(base, _)| Ipv4Addr::from(base + 1))
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = u32::MAX << (32 - len);
    a.0 & mask == b.0 & mask
}

/// The first free /24 of [`POOL`].
fn free_subnet(taken: &[(u32, u8)]) -> Option<String> {
    let base = u32::from(POOL.0);
    (0..1u32 << (24 - POOL.1))
        .map(|i| (base + (i << 8), 24u8))
        .find(|c| !taken.iter().any(|t| overlaps(*c, *t)))
        .map(|(b, l)| format!("{}/{l}", Ipv4Addr::from(b)))
}

/// Whether a task's address is still in use: it may run, or it was stopped by the user and
/// keeps its container for `start`.
fn holds_address(t: &Task) -> bool {
    t.is_live() || !t.status.state.is_terminal() || t.stopped_by_user
}

/// The leader's allocator, pure: what the replicated state lacks for the apps' networks and
/// placed tasks, and what it may forget.
pub fn allocate(state: &State, apps: &BTreeMap<String, Arc<App>>) -> OverlayChange {
    let o = &state.overlay;
    let mut change = OverlayChange::default();
    // networks
    let mut taken_vni: BTreeSet<u32> = o.networks.values().map(|n| n.vni).collect();
    let mut taken_subnets: Vec<(u32, u8)> = o
        .networks
        .values()
        .filter_map(|n| parse_subnet(&n.subnet))
        .collect();
    let mut nets: BTreeMap<String, OverlayNetwork> = o.networks.clone();
    let mut per_app: BTreeMap<&str, ServiceNetworks> = BTreeMap::new();
    for (name, app) in apps {
        if !state.apps.contains_key(name) {
            continue;
        }
        let services = service_networks(app);
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for list in services.values() {
            for (key, id) in list {
                wanted.insert(id.clone(), key.clone());
            }
        }
        for (id, key) in wanted {
            if nets.contains_key(&id) {
                continue;
            }
            let named = app
                .networks
                .get(&key)
                .and_then(|d| d.ipam.config.iter().find_map(|p| p.subnet.clone()))
                .filter(|s| !s.contains(':'))
                .and_then(|s| parse_subnet(&s).map(|p| (s, p)));
            let subnet = match named {
                Some((s, p)) if !taken_subnets.iter().any(|t| overlaps(p, *t)) => Some(s),
                Some(_) => None,
                None => free_subnet(&taken_subnets),
            };
            let vni = (FIRST_VNI..=0x00ff_ffff).find(|v| !taken_vni.contains(v));
            let (Some(subnet), Some(vni)) = (subnet, vni) else {
                tracing::warn!(network = %id, "no free overlay subnet or VNI");
                continue;
            };
            taken_vni.insert(vni);
            taken_subnets.extend(parse_subnet(&subnet));
            let net = OverlayNetwork {
                app: name.clone(),
                vni,
                subnet,
            };
            nets.insert(id.clone(), net.clone());
            change.networks.push((id, net));
        }
        per_app.insert(name.as_str(), services);
    }
    for (id, net) in &o.networks {
        if !state.apps.contains_key(&net.app) {
            change.release_networks.push(id.clone());
        }
    }
    // addresses
    let mut used: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for (task, addrs) in &o.addresses {
        match state.tasks.get(task) {
            Some(t) if holds_address(t) => {
                for (net, ip) in addrs {
                    used.entry(net.clone()).or_default().insert(*ip);
                }
            }
            _ => change.release_tasks.push(task.clone()),
        }
    }
    for t in state.tasks.values() {
        if t.node.is_none() || !t.is_live() || t.status.state.is_terminal() {
            continue;
        }
        let Some(list) = per_app.get(t.app.as_str()).and_then(|s| s.get(&t.service)) else {
            continue;
        };
        for (key, id) in list {
            if o.address(&t.id, id).is_some() {
                continue;
            }
            let Some(net) = nets.get(id) else { continue };
            let Some((base, len)) = parse_subnet(&net.subnet) else {
                continue;
            };
            let set = used.entry(id.clone()).or_default();
            let fixed = apps
                .get(&t.app)
                .and_then(|a| a.services.get(&t.service))
                .and_then(|s| s.networks.get(key).cloned().flatten())
                .and_then(|sn| sn.ipv4_address)
                .and_then(|a| a.parse::<Ipv4Addr>().ok());
            let size = 1u32 << (32 - len);
            let pick = match fixed {
                Some(ip) => Some(ip).filter(|ip| !set.contains(ip)),
                None => (base + 2..base + size - 1)
                    .map(Ipv4Addr::from)
                    .find(|ip| !set.contains(ip)),
            };
            if let Some(ip) = pick {
                set.insert(ip);
                change.addresses.push((t.id.clone(), id.clone(), ip));
            }
        }
    }
    change
}

/// The task as the worker should see it in a cluster: its app's overlay networks with their
/// subnet, gateway and MTU, its service with its addresses. `None` holds a task back that
/// has not reached its node yet and still lacks an address.
pub fn rewrite(task: &NodeTask, overlay: &OverlayState) -> Option<NodeTask> {
    let services = service_networks(&task.app);
    let Some(list) = services.get(&task.task.service).filter(|l| !l.is_empty()) else {
        return Some(task.clone());
    };
    let mut app = (*task.app).clone();
    for (key, id) in list {
        let Some(net) = overlay.networks.get(id) else {
            continue;
        };
        let def = app.networks.entry(key.clone()).or_default();
        def.driver = None;
        // IPv6 would be allocated per node, not cluster-wide: overlays are IPv4 only
        def.enable_ipv6 = None;
        def.ipam.config = vec![IpamPool {
            subnet: Some(net.subnet.clone()),
            gateway: gateway(&net.subnet).map(|g| g.to_string()),
            ..IpamPool::default()
        }];
        def.driver_opts
            .insert("com.docker.network.driver.mtu".into(), MTU.to_string());
    }
    let svc = app.services.get_mut(&task.task.service)?;
    let mut missing = false;
    for (key, id) in list {
        if !overlay.networks.contains_key(id) {
            missing = true;
            continue;
        }
        match overlay.address(&task.task.id, id) {
            Some(ip) => {
                let entry = svc.networks.entry(key.clone()).or_insert(None);
                let sn = entry.get_or_insert_with(ServiceNetwork::default);
                sn.ipv4_address = Some(ip.to_string());
            }
            None => missing = true,
        }
    }
    if missing && task.task.is_live() && task.task.status.state <= TaskState::Assigned {
        return None;
    }
    Some(NodeTask {
        app: Arc::new(app),
        ..task.clone()
    })
}

/// Parsed app documents, re-parsed only when one changes.
#[derive(Default)]
pub struct AppCache {
    apps: HashMap<String, (serde_json::Value, Arc<App>)>,
}

impl AppCache {
    pub fn apps(&mut self, state: &State) -> BTreeMap<String, Arc<App>> {
        self.apps.retain(|name, _| state.apps.contains_key(name));
        let mut out = BTreeMap::new();
        for (name, record) in &state.apps {
            let doc = &record.spec.document;
            let fresh = self.apps.get(name).is_none_or(|(seen, _)| seen != doc);
            if fresh {
                match serde_json::from_value::<App>(doc.clone()) {
                    Ok(app) => {
                        self.apps.insert(name.clone(), (doc.clone(), Arc::new(app)));
                    }
                    Err(e) => {
                        tracing::warn!(app = %name, error = %e, "app document does not parse");
                        continue;
                    }
                }
            }
            if let Some((_, app)) = self.apps.get(name) {
                out.insert(name.clone(), app.clone());
            }
        }
        out
    }
}

/// On the leader: proposes what [`allocate`] finds missing, on every applied change.
pub fn spawn_allocator(controller: Arc<Controller>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut changes = controller.watch();
        let mut cache = AppCache::default();
        loop {
            let status = *changes.borrow_and_update();
            if status.is_leader {
                let change = controller.read(|s| {
                    let apps = cache.apps(s);
                    allocate(s, &apps)
                });
                if !change.is_empty()
                    && let Err(e) = controller.propose(Command::Overlay(change)).await
                {
                    tracing::warn!(error = %e, "overlay allocation");
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
                // a lost proposal is retried even when nothing else changes
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
}

/// One network's remote side as this node should see it.
#[derive(Debug, Default, PartialEq)]
struct Remote {
    endpoints: Vec<RemoteEndpoint>,
    /// DNS endpoint id → names, for tasks that run.
    names: BTreeMap<String, DnsEntry>,
}

/// Pure: for each overlay network, the endpoints of tasks on other nodes (with the tunnel
/// address of their node) and the names of those that run.
fn remotes(
    state: &State,
    apps: &BTreeMap<String, Arc<App>>,
    me: &str,
) -> BTreeMap<String, (OverlayNetwork, Remote)> {
    let mut out: BTreeMap<String, (OverlayNetwork, Remote)> = state
        .overlay
        .networks
        .iter()
        .map(|(id, n)| (id.clone(), (n.clone(), Remote::default())))
        .collect();
    for (task, addrs) in &state.overlay.addresses {
        let Some(t) = state.tasks.get(task) else {
            continue;
        };
        let Some(node) = t.node.as_deref().filter(|n| *n != me) else {
            continue;
        };
        if t.status.state.is_terminal() {
            continue;
        }
        let Some(tunnel) = state
            .nodes
            .get(node)
            .and_then(|n| n.address.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip())
        else {
            continue;
        };
        let app = apps.get(&t.app);
        for (net, ip) in addrs {
            let Some((_, remote)) = out.get_mut(net) else {
                continue;
            };
            remote.endpoints.push(RemoteEndpoint {
                ip: IpAddr::V4(*ip),
                mac: berth_network::bridge::mac_for(*ip),
                node: tunnel,
            });
            if t.status.state != TaskState::Running {
                continue;
            }
            let mut aliases = Vec::new();
            if let Some((app, svc)) = app.and_then(|a| Some((a, a.services.get(&t.service)?))) {
                let key = service_networks(app)
                    .get(&t.service)
                    .and_then(|l| l.iter().find(|(_, id)| id == net).map(|(k, _)| k.clone()));
                if let Some(sn) = key.and_then(|k| svc.networks.get(&k).cloned().flatten()) {
                    aliases = sn.aliases;
                }
            }
            let number = t.slot.unwrap_or(1);
            remote.names.insert(
                format!("{PEER_ENDPOINT}{}", t.id),
                DnsEntry {
                    container_name: format!("{}-{}-{number}", t.app, t.service),
                    service: Some(t.service.clone()),
                    aliases,
                    ipv4: Some(*ip),
                    ..DnsEntry::default()
                },
            );
        }
    }
    out
}

/// On every node of a cluster: keeps VXLAN ports, forwarding/neighbour entries and remote
/// names in step with the replicated state, on every change and every 2 s.
pub fn spawn_sync(
    controller: Arc<Controller>,
    networks: Arc<Networks>,
    node_id: String,
    tunnel: Ipv4Addr,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut changes = controller.watch();
        let mut cache = AppCache::default();
        let mut made: BTreeSet<String> = BTreeSet::new();
        loop {
            changes.borrow_and_update();
            let wanted = controller.read(|s| {
                let apps = cache.apps(s);
                remotes(s, &apps, &node_id)
            });
            for (id, (net, remote)) in &wanted {
                if let Err(e) = sync_network(&networks, id, net, remote, tunnel).await {
                    tracing::warn!(error = %e, "overlay sync");
                    continue;
                }
                if networks.network(id).is_some() {
                    made.insert(id.clone());
                }
            }
            let gone: Vec<String> = made
                .iter()
                .filter(|id| !wanted.contains_key(*id) || networks.network(id).is_none())
                .cloned()
                .collect();
            for id in gone {
                if let Err(e) = overlay::remove(networks.netlink(), &id).await {
                    tracing::warn!(network = %id, error = %e, "removing a VXLAN port");
                }
                made.remove(&id);
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
}

/// One network: nothing unless its bridge is here; else the VXLAN port, its tables and the
/// remote names.
async fn sync_network(
    networks: &Networks,
    id: &str,
    net: &OverlayNetwork,
    remote: &Remote,
    tunnel: Ipv4Addr,
) -> Result<(), NetworkError> {
    let Some(bridge) = networks.network(id) else {
        return Ok(());
    };
    let o = Overlay {
        network_id: id.to_owned(),
        vni: net.vni,
        local: tunnel,
    };
    let err = |source| NetworkError::Overlay {
        network: id.to_owned(),
        source,
    };
    overlay::ensure(networks.netlink(), &o, &bridge.bridge, bridge.mtu)
        .await
        .map_err(err)?;
    overlay::sync_endpoints(networks.netlink(), &o, &remote.endpoints)
        .await
        .map_err(err)?;
    let dns_err = |source| NetworkError::Dns {
        network: id.to_owned(),
        source,
    };
    let registered: BTreeMap<String, DnsEntry> = networks
        .dns_state()
        .networks
        .get(id)
        .map(|n| {
            n.endpoints
                .iter()
                .filter(|e| e.endpoint.starts_with(PEER_ENDPOINT))
                .map(|e| (e.endpoint.clone(), e.entry.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (endpoint, entry) in &remote.names {
        if registered.get(endpoint) != Some(entry) {
            networks
                .register_names(id, endpoint, entry.clone())
                .await
                .map_err(dns_err)?;
        }
    }
    for endpoint in registered.keys() {
        if !remote.names.contains_key(endpoint) {
            networks
                .unregister_names(id, endpoint)
                .await
                .map_err(dns_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_controller::store::{AppSpec, DesiredState, TaskStatus};

    fn app() -> Arc<App> {
        let doc = serde_json::json!({
            "name": "shop",
            "services": {
                "a": {"image": "busybox"},
                "b": {"image": "busybox", "networks": {"front": null, "back": null}},
                "h": {"image": "busybox", "network_mode": "host"}
            },
            "networks": {
                "front": {},
                "back": {"ipam": {"config": [{"subnet": "10.99.0.0/24"}]}}
            }
        });
        Arc::new(serde_json::from_value(doc).expect("app"))
    }

    fn task(id: &str, service: &str, node: Option<&str>, state: TaskState) -> Task {
        let mut t = Task::new(id, "shop", service, "h", DesiredState::Running, 1);
        t.node = node.map(str::to_owned);
        t.status = TaskStatus::new(state, 1);
        t
    }

    fn state_with(app: &Arc<App>, tasks: Vec<Task>) -> State {
        let mut s = State::default();
        let spec: AppSpec =
            serde_json::from_value(serde_json::json!({"name": "shop", "services": {}}))
                .expect("spec");
        s.apps.insert(
            "shop".into(),
            berth_controller::store::AppRecord {
                spec,
                services: BTreeMap::new(),
            },
        );
        let _ = app;
        for t in tasks {
            s.tasks.insert(t.id.clone(), t);
        }
        s
    }

    #[test]
    fn networks_get_a_vni_and_subnet_and_placed_tasks_an_address() {
        let app = app();
        let apps = BTreeMap::from([("shop".to_owned(), app.clone())]);
        let mut state = state_with(
            &app,
            vec![
                task("t1", "a", Some("n1"), TaskState::Assigned),
                task("t2", "b", Some("n2"), TaskState::Running),
                task("t3", "b", None, TaskState::Pending),
                task("t4", "h", Some("n1"), TaskState::Running),
            ],
        );
        let change = allocate(&state, &apps);
        let nets: BTreeMap<_, _> = change.networks.iter().cloned().collect();
        assert_eq!(nets.len(), 3, "{nets:?}");
        assert_eq!(nets["shop_back"].subnet, "10.99.0.0/24");
        assert!(nets["shop_default"].subnet.starts_with("10.208."));
        let vnis: BTreeSet<u32> = nets.values().map(|n| n.vni).collect();
        assert_eq!(vnis.len(), 3);
        assert!(vnis.iter().all(|v| *v >= FIRST_VNI));
        // the same pass places the addresses: t1 on default, t2 on front and back
        assert_eq!(change.addresses.len(), 3, "{change:?}");
        state.overlay.apply(change);
        assert_eq!(
            state.overlay.address("t2", "shop_back"),
            Some(Ipv4Addr::new(10, 99, 0, 2))
        );
        assert!(state.overlay.address("t3", "shop_front").is_none());
        assert!(!state.overlay.addresses.contains_key("t4"));
        // nothing more to do; a removed task gives its address back
        assert!(allocate(&state, &apps).is_empty());
        state.tasks.remove("t2");
        let change = allocate(&state, &apps);
        assert_eq!(change.release_tasks, vec!["t2".to_owned()]);
        // a removed app gives its networks back
        state.apps.clear();
        let change = allocate(&state, &BTreeMap::new());
        assert_eq!(change.release_networks.len(), 3);
    }

    #[test]
    fn addresses_never_collide_and_subnets_never_overlap() {
        let app = app();
        let apps = BTreeMap::from([("shop".to_owned(), app.clone())]);
        let tasks = (0..20)
            .map(|i| task(&format!("t{i}"), "a", Some("n1"), TaskState::Running))
            .collect();
        let mut state = state_with(&app, tasks);
        // a subnet already taken pushes the next network further along the pool
        state.overlay.networks.insert(
            "other_default".into(),
            OverlayNetwork {
                app: "other".into(),
                vni: FIRST_VNI,
                subnet: "10.208.0.0/24".into(),
            },
        );
        let change = allocate(&state, &apps);
        // "other" is not an app any more: released
        assert_eq!(change.release_networks, vec!["other_default".to_owned()]);
        state.overlay.apply(change);
        let ips: BTreeSet<Ipv4Addr> = state
            .overlay
            .addresses
            .values()
            .filter_map(|n| n.get("shop_default").copied())
            .collect();
        assert_eq!(ips.len(), 20);
        let gw = gateway(&state.overlay.networks["shop_default"].subnet).unwrap();
        assert!(!ips.contains(&gw));
    }

    #[test]
    fn a_task_is_rewritten_with_its_address_or_held_back() {
        let app = app();
        let mut overlay = OverlayState::default();
        overlay.apply(OverlayChange {
            networks: vec![(
                "shop_default".into(),
                OverlayNetwork {
                    app: "shop".into(),
                    vni: 4100,
                    subnet: "10.208.3.0/24".into(),
                },
            )],
            addresses: vec![(
                "t1".into(),
                "shop_default".into(),
                Ipv4Addr::new(10, 208, 3, 7),
            )],
            ..OverlayChange::default()
        });
        let node_task = |t: Task| NodeTask {
            task: t,
            app: app.clone(),
            working_dir: String::new(),
            config_files: Vec::new(),
            stop_timeout: None,
            held_for_dependencies: false,
            keep_volumes: false,
        };
        let out = rewrite(
            &node_task(task("t1", "a", Some("n1"), TaskState::Assigned)),
            &overlay,
        )
        .expect("has its address");
        let def = &out.app.networks["default"];
        assert_eq!(def.ipam.config[0].subnet.as_deref(), Some("10.208.3.0/24"));
        assert_eq!(def.ipam.config[0].gateway.as_deref(), Some("10.208.3.1"));
        assert_eq!(def.driver_opts["com.docker.network.driver.mtu"], "1450");
        let sn = out.app.services["a"].networks["default"].clone().unwrap();
        assert_eq!(sn.ipv4_address.as_deref(), Some("10.208.3.7"));
        // no address yet: held back, unless the worker already has it
        assert!(
            rewrite(
                &node_task(task("t9", "a", Some("n1"), TaskState::Assigned)),
                &overlay
            )
            .is_none()
        );
        assert!(
            rewrite(
                &node_task(task("t9", "a", Some("n1"), TaskState::Running)),
                &overlay
            )
            .is_some()
        );
        // the host network is left alone
        let h = rewrite(
            &node_task(task("t8", "h", Some("n1"), TaskState::Assigned)),
            &overlay,
        )
        .unwrap();
        assert!(Arc::ptr_eq(&h.app, &app));
    }

    #[test]
    fn each_node_sees_the_other_nodes_tasks_and_names_only_running_ones() {
        let app = app();
        let apps = BTreeMap::from([("shop".to_owned(), app.clone())]);
        let mut state = state_with(
            &app,
            vec![
                task("t1", "a", Some("n1"), TaskState::Running),
                task("t2", "a", Some("n2"), TaskState::Running),
                task("t3", "a", Some("n2"), TaskState::Starting),
                task("t4", "a", Some("n2"), TaskState::Failed),
            ],
        );
        for (id, addr) in [("n1", "192.0.2.1:4245"), ("n2", "192.0.2.2:4245")] {
            let node: berth_controller::store::Node = serde_json::from_value(serde_json::json!({
                "id": id, "hostname": id, "role": "manager", "availability": "active",
                "platform": {"os": "linux", "architecture": "x86_64"},
                "resources": {"nano_cpus": 0, "memory": 0},
                "status": "ready", "address": addr, "raft_id": 2
            }))
            .expect("node");
            state.nodes.insert(id.into(), node);
        }
        state.overlay.apply(allocate(&state, &apps));
        let seen = remotes(&state, &apps, "n1");
        let (_, remote) = &seen["shop_default"];
        // t2 and t3 run (or start) on n2; t1 is local; t4 is finished
        assert_eq!(remote.endpoints.len(), 2, "{remote:?}");
        assert!(
            remote
                .endpoints
                .iter()
                .all(|e| e.node == IpAddr::from([192, 0, 2, 2]))
        );
        let t2 = state.overlay.address("t2", "shop_default").unwrap();
        assert!(
            remote
                .endpoints
                .iter()
                .any(|e| e.ip == IpAddr::V4(t2) && e.mac == berth_network::bridge::mac_for(t2))
        );
        // only the running one answers in DNS, by its service name
        assert_eq!(remote.names.len(), 1);
        let entry = &remote.names["peer-t2"];
        assert_eq!(entry.service.as_deref(), Some("a"));
        assert_eq!(entry.ipv4, Some(t2));
        // from n2, only t1 is remote
        let seen = remotes(&state, &apps, "n2");
        assert_eq!(seen["shop_default"].1.endpoints.len(), 1);
    }
}
