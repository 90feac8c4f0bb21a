//! The listening side: one UDP and one TCP socket per network on its gateway, forwarding of
//! names berth does not know, and the host's upstream resolvers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::answer::{answer_locally, encode_for_udp, servfail};
use super::registry::Registry;
use super::state::StateSource;

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

const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The resolvers a host-side forwarder should use, from the host's `/etc/resolv.conf`:
/// every `nameserver` that is not a loopback address; when there are only loopback ones
/// (systemd-resolved's 127.0.0.53), those, since the forwarder runs in the host namespace
/// and can reach them.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<IpAddr> {
    let all = crate::etc_files::nameservers(text);
    let remote: Vec<IpAddr> = all.iter().copied().filter(|ip| !ip.is_loopback()).collect();
    if remote.is_empty() { all } else { remote }
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
    /// When set, the registry follows this state file (checked before every answer).
    source: Option<Arc<StateSource>>,
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
            source: None,
            host_upstreams,
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// A server whose names follow the state file of `source` (see [`StateSource`]).
    pub fn following(source: Arc<StateSource>, host_upstreams: Vec<IpAddr>) -> Self {
        DnsServer {
            registry: source.registry().clone(),
            source: Some(source),
            host_upstreams,
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces the host's upstream resolvers for listeners started from now on.
    pub fn set_host_upstreams(&mut self, upstreams: Vec<IpAddr>) {
        self.host_upstreams = upstreams;
    }

    /// The networks listened on, with their addresses.
    pub fn listening(&self) -> HashMap<String, Vec<SocketAddr>> {
        self.listeners
            .lock()
            .expect("listeners lock")
            .iter()
            .map(|(id, ls)| {
                let mut addrs: Vec<SocketAddr> = ls.iter().map(|l| l.addr).collect();
                addrs.dedup();
                (id.clone(), addrs)
            })
            .collect()
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
        // a listener being stopped (restart, re-create) releases its sockets asynchronously
        let sock = bind_retrying(network, addr, bind_udp).await?;
        let tcp = bind_retrying(network, addr, bind_tcp).await?;
        let responder = Arc::new(Responder {
            registry: self.registry.clone(),
            source: self.source.clone(),
            network: network.to_string(),
            host_upstreams: if forward_external {
                self.host_upstreams.clone()
            } else {
                Vec::new()
            },
            forward_external,
        });
        let udp_task = tokio::spawn(serve_udp(Arc::new(sock), responder.clone()));
        let tcp_task = tokio::spawn(serve_tcp(tcp, responder));
        let mut listeners = self.listeners.lock().expect("listeners lock");
        let entry = listeners.entry(network.to_string()).or_default();
        entry.push(Listener {
            task: udp_task,
            addr,
        });
        entry.push(Listener {
            task: tcp_task,
            addr,
        });
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
        let mut addrs: Vec<SocketAddr> = gone
            .into_iter()
            .map(|l| {
                l.task.abort();
                l.addr
            })
            .collect();
        addrs.dedup();
        addrs
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

/// Binds with `bind`, retrying for up to 2 s while the address is still in use.
async fn bind_retrying<T>(
    network: &str,
    addr: SocketAddr,
    bind: fn(SocketAddr) -> std::io::Result<T>,
) -> Result<T, DnsError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match bind(addr) {
            Ok(s) => return Ok(s),
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
    }
}

/// Binds a UDP socket that may bind to an address not yet configured (the bridge may be
/// restored after the DNS server on restart) — `IP_FREEBIND`.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, socket};
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
    freebind(&fd, addr)?;
    let sa = SockaddrStorage::from(addr);
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &sa)?;
    let std_sock = std::net::UdpSocket::from(fd);
    UdpSocket::from_std(std_sock)
}

/// `IP_FREEBIND` / `IPV6_FREEBIND`: bind to a gateway address before (or while) the bridge
/// carries it — an IPv6 address may also still be tentative.
fn freebind(fd: &std::os::fd::OwnedFd, addr: SocketAddr) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name) = if addr.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_FREEBIND)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
    };
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// What a listener needs to answer: shared by its UDP and TCP sides.
struct Responder {
    registry: Arc<Registry>,
    source: Option<Arc<StateSource>>,
    network: String,
    host_upstreams: Vec<IpAddr>,
    forward_external: bool,
}

/// How a reply must fit its transport.
#[derive(Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

impl Responder {
    /// The reply to `packet` from `peer`, or `None` for packets that get no reply.
    async fn reply(&self, packet: &[u8], peer: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        let query = Message::from_vec(packet).ok()?;
        if query.message_type() != MessageType::Query {
            return None;
        }
        if let Some(source) = &self.source {
            source.refresh();
        }
        let local = self
            .registry
            .networks_of(&self.network, peer)
            .iter()
            .find_map(|network| answer_locally(&self.registry, network, &query));
        if let Some(resp) = local {
            return match transport {
                Transport::Tcp => resp.to_vec().ok(),
                Transport::Udp => encode_for_udp(resp, usize::from(query.max_payload())),
            };
        }
        let mut upstreams = Vec::new();
        if self.forward_external {
            upstreams = self.registry.upstreams_of(&self.network, peer);
            if upstreams.is_empty() {
                upstreams = self.host_upstreams.clone();
            }
        }
        match forward(packet, query.id(), &upstreams).await {
            Some(r) => Some(r),
            None => servfail(&query),
        }
    }
}

/// The TCP counterpart of [`bind_udp`] (answers too large for UDP are fetched over TCP).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt,
        socket, sockopt,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    freebind(&fd, addr)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    listen(&fd, Backlog::new(128).map_err(std::io::Error::from)?)?;
    tokio::net::TcpListener::from_std(std::net::TcpListener::from(fd))
}

async fn serve_udp(sock: Arc<UdpSocket>, responder: Arc<Responder>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            // transient errors (e.g. ICMP unreachable reported on the socket) are not fatal
            tokio::task::yield_now().await;
            continue;
        };
        let packet = buf[..n].to_vec();
        let sock = sock.clone();
        let responder = responder.clone();
        // a forwarded query waits on the network: never hold up the others
        tokio::spawn(async move {
            if let Some(bytes) = responder.reply(&packet, peer.ip(), Transport::Udp).await {
                let _ = sock.send_to(&bytes, peer).await;
            }
        });
    }
}

/// How long an idle TCP client may keep its connection.
const TCP_IDLE: Duration = Duration::from_secs(10);

async fn serve_tcp(listener: tokio::net::TcpListener, responder: Arc<Responder>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::task::yield_now().await;
            continue;
        };
        let responder = responder.clone();
        tokio::spawn(async move {
            let _ = serve_tcp_client(stream, peer.ip(), &responder).await;
        });
    }
}

/// Answers length-prefixed queries (RFC 1035 4.2.2) until the client closes or idles.
async fn serve_tcp_client(
    mut stream: tokio::net::TcpStream,
    peer: IpAddr,
    responder: &Responder,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let Some(reply) = responder.reply(&packet, peer, Transport::Tcp).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
