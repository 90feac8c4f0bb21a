//! The embedded DNS server: service discovery inside each berth network.
//!
//! Design: one UDP socket per network, bound to the network's gateway address on port 53 in
//! the host namespace (no socket per container, no namespace switching); each container's
//! `/etc/resolv.conf` names that gateway. A query is answered from the [`Registry`] of the
//! network the socket belongs to: service names (every running replica, rotated per query
//! for round-robin), `tasks.<service>`, container names and network aliases. Other names are
//! forwarded, as raw packets, to the querying container's own `dns:` servers when it has
//! some, else to the host's upstream resolvers (see [`upstreams_from_resolv_conf`]); internal
//! networks get no forwarding (they have no way out). Only A and AAAA are answered locally.
//!
//! This module must not touch links, addresses or firewall rules.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Errors of the DNS server, naming the network and address.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("network {network}: cannot listen for DNS on {addr}: {source}")]
    Bind {
        network: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// TTL of local answers: short, since replicas come and go.
const LOCAL_TTL: u32 = 5;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The names one endpoint answers to on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
            .filter(|e| NetworkNames::matches(e, &name))
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

    /// The `dns:` servers of the endpoint with address `ip` on `network`, if any.
    fn upstreams_of(&self, network: &str, ip: IpAddr) -> Vec<IpAddr> {
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

/// The resolvers a host-side forwarder should use, from the host's `/etc/resolv.conf`:
/// every `nameserver` that is not a loopback address; when there are only loopback ones
/// (systemd-resolved's 127.0.0.53), those, since the forwarder runs in the host namespace
/// and can reach them.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<IpAddr> {
    let all: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                // a scoped IPv6 address (fe80::1%eth0) cannot be used from another link
                .and_then(|w| w.parse::<IpAddr>().ok())
        })
        .collect();
    let remote: Vec<IpAddr> = all.iter().copied().filter(|ip| !ip.is_loopback()).collect();
    if remote.is_empty() { all } else { remote }
}

/// Builds the answer to `query` from local names, or `None` when it must be forwarded.
/// Pure apart from the registry's round-robin counter.
pub fn answer_locally(registry: &Registry, network: &str, query: &Message) -> Option<Message> {
    let q = query.queries().first()?;
    if query.op_code() != OpCode::Query {
        return None;
    }
    let qtype = q.query_type();
    let name = q.name().to_ascii();
    let ips = match qtype {
        RecordType::A | RecordType::AAAA => registry.lookup(network, &name, qtype)?,
        // a known name with another record type: say "no data" instead of forwarding
        _ => {
            registry.lookup(network, &name, RecordType::A)?;
            Vec::new()
        }
    };
    let mut resp = Message::new();
    let mut header = Header::response_from_request(query.header());
    header.set_authoritative(true);
    header.set_recursion_available(true);
    header.set_response_code(ResponseCode::NoError);
    resp.set_header(header);
    resp.add_query(q.clone());
    for ip in ips {
        let rdata = match ip {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        resp.add_answer(Record::from_rdata(q.name().clone(), LOCAL_TTL, rdata));
    }
    Some(resp)
}

fn servfail(query: &Message) -> Option<Vec<u8>> {
    let mut resp = Message::new();
    let mut header = Header::response_from_request(query.header());
    header.set_message_type(MessageType::Response);
    header.set_response_code(ResponseCode::ServFail);
    resp.set_header(header);
    resp.add_queries(query.queries().to_vec());
    resp.to_vec().ok()
}

/// Sends the raw `packet` to each upstream in turn until one answers with the same id.
async fn forward(packet: &[u8], id: u16, upstreams: &[IpAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = match up {
            IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.connect((*up, 53)).await.is_err() || sock.send(packet).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

struct Listener {
    task: JoinHandle<()>,
    addr: SocketAddr,
}

/// The DNS server of one node: the registry plus one listening task per network.
pub struct DnsServer {
    registry: Arc<Registry>,
    host_upstreams: Vec<IpAddr>,
    listeners: Mutex<HashMap<String, Vec<Listener>>>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("host_upstreams", &self.host_upstreams)
            .finish_non_exhaustive()
    }
}

impl DnsServer {
    /// A server answering from `registry` and forwarding to `host_upstreams` (usually
    /// [`upstreams_from_resolv_conf`] of the host's `/etc/resolv.conf`).
    pub fn new(registry: Arc<Registry>, host_upstreams: Vec<IpAddr>) -> Self {
        DnsServer {
            registry,
            host_upstreams,
            listeners: Mutex::new(HashMap::new()),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Starts answering for `network` on `addr` (its gateway, port 53). `forward_external`
    /// is false for internal networks. Must be called inside a tokio runtime.
    pub async fn listen(
        &self,
        network: &str,
        addr: SocketAddr,
        forward_external: bool,
    ) -> Result<(), DnsError> {
        // a listener being stopped (restart, re-create) releases its socket asynchronously
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let sock = loop {
            match bind_udp(addr) {
                Ok(s) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(source) => {
                    return Err(DnsError::Bind {
                        network: network.to_string(),
                        addr,
                        source,
                    });
                }
            }
        };
        let sock = Arc::new(sock);
        let registry = self.registry.clone();
        let upstreams = if forward_external {
            self.host_upstreams.clone()
        } else {
            Vec::new()
        };
        let net = network.to_string();
        let task = tokio::spawn(serve(sock, registry, net, upstreams, forward_external));
        self.listeners
            .lock()
            .expect("listeners lock")
            .entry(network.to_string())
            .or_default()
            .push(Listener { task, addr });
        Ok(())
    }

    /// Stops answering for `network`; returns the addresses it was listening on.
    pub fn stop(&self, network: &str) -> Vec<SocketAddr> {
        let gone = self
            .listeners
            .lock()
            .expect("listeners lock")
            .remove(network)
            .unwrap_or_default();
        gone.into_iter()
            .map(|l| {
                l.task.abort();
                l.addr
            })
            .collect()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Ok(map) = self.listeners.get_mut() {
            for l in map.values().flatten() {
                l.task.abort();
            }
        }
    }
}

/// Binds a UDP socket that may bind to an address not yet configured (the bridge may be
/// restored after the DNS server on restart) — `IP_FREEBIND`.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, bind, setsockopt, socket, sockopt,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if addr.is_ipv4() {
        setsockopt(&fd, sockopt::IpFreebind, &true)?;
    }
    let sa = SockaddrStorage::from(addr);
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa)?;
    let std_sock = std::net::UdpSocket::from(fd);
    UdpSocket::from_std(std_sock)
}

async fn serve(
    sock: Arc<UdpSocket>,
    registry: Arc<Registry>,
    network: String,
    host_upstreams: Vec<IpAddr>,
    forward_external: bool,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            // transient errors (e.g. ICMP unreachable reported on the socket) are not fatal
            tokio::task::yield_now().await;
            continue;
        };
        let packet = buf[..n].to_vec();
        let Ok(query) = Message::from_vec(&packet) else {
            continue;
        };
        if query.message_type() != MessageType::Query {
            continue;
        }
        if let Some(resp) = answer_locally(&registry, &network, &query) {
            if let Ok(bytes) = resp.to_vec() {
                let _ = sock.send_to(&bytes, peer).await;
            }
            continue;
        }
        let sock = sock.clone();
        let mut upstreams = if forward_external {
            registry.upstreams_of(&network, peer.ip())
        } else {
            Vec::new()
        };
        if forward_external && upstreams.is_empty() {
            upstreams = host_upstreams.clone();
        }
        // forwarding waits on the network: never hold up other queries
        tokio::spawn(async move {
            let reply = match forward(&packet, query.id(), &upstreams).await {
                Some(r) => Some(r),
                None => servfail(&query),
            };
            if let Some(bytes) = reply {
                let _ = sock.send_to(&bytes, peer).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn entry(name: &str, svc: &str, ip: [u8; 4]) -> DnsEntry {
        DnsEntry {
            container_name: name.into(),
            service: Some(svc.into()),
            aliases: vec![format!("{name}-alias")],
            ipv4: Some(ip.into()),
            ipv6: None,
            upstreams: vec![],
        }
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
    fn resolv_conf_upstreams_skip_loopback() {
        let text = "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch x\n";
        assert_eq!(
            upstreams_from_resolv_conf(text),
            vec![IpAddr::from([10, 255, 255, 53])]
        );
        let only_local = "nameserver 127.0.0.53\n";
        assert_eq!(
            upstreams_from_resolv_conf(only_local),
            vec![IpAddr::from([127, 0, 0, 53])]
        );
        assert!(upstreams_from_resolv_conf("nameserver fe80::1%eth0\n").is_empty());
    }

    #[test]
    fn local_answer_is_authoritative_with_all_records() {
        let r = Registry::new();
        r.register("n", "a", entry("app-web-1", "web", [10, 0, 0, 2]));
        r.register("n", "b", entry("app-web-2", "web", [10, 0, 0, 3]));
        let mut q = Message::new();
        q.set_id(77)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(
                Name::from_ascii("web.").unwrap(),
                RecordType::A,
            ));
        let resp = answer_locally(&r, "n", &q).unwrap();
        assert_eq!(resp.id(), 77);
        assert!(resp.authoritative());
        assert_eq!(resp.answers().len(), 2);
        let mut unknown = q.clone();
        unknown.queries_mut()[0].set_name(Name::from_ascii("example.org.").unwrap());
        assert!(answer_locally(&r, "n", &unknown).is_none());
        let bytes = resp.to_vec().unwrap();
        assert_eq!(Message::from_vec(&bytes).unwrap().answers().len(), 2);
    }
}
