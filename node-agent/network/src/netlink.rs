//! The rtnetlink edge: one [`Netlink`] handle per network namespace, and the only code that
//! enters another namespace.
//!
//! A netlink socket works in the namespace of the thread that created it. The host handle is
//! made on the agent's runtime; a container's handle is made by [`in_netns`], which starts a
//! dedicated OS thread, `setns`es it into the container's namespace, and runs a small
//! current-thread runtime there. `setns` is therefore never called on a shared tokio worker.
//! This module knows links, addresses and routes; it must not know berth networks or IPAM.

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
};

/// Errors of netlink requests and namespace entry, naming the operation and the object.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("netlink {op} failed: {source}")]
    Request {
        op: String,
        // boxed: the error can carry a whole netlink message
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("network namespace {path}: {op} failed: {source}")]
    Netns {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no link named {name}")]
    NoSuchLink { name: String },
    #[error("the namespace thread for {path} ended without an answer")]
    ThreadLost { path: PathBuf },
}

fn request(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let op = op.into();
    move |source| NetlinkError::Request {
        op,
        source: Box::new(source),
    }
}

/// Errno of a netlink NACK, if the error is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// A netlink handle bound to the namespace it was created in.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a handle in the calling thread's network namespace; must run inside a tokio
    /// runtime (the connection is spawned on it).
    pub fn connect() -> Result<Self, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The index of link `name`, or `None` when there is no such link.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(request(format!("get link {name}"))(e)),
        }
    }

    async fn require_index(&self, name: &str) -> Result<u32, NetlinkError> {
        self.link_index(name)
            .await?
            .ok_or_else(|| NetlinkError::NoSuchLink {
                name: name.to_string(),
            })
    }

    /// Creates bridge `name` (or finds it when it exists) with MAC `mac`, sets its MTU and
    /// brings it up. The MAC is set explicitly because a bridge without one takes the lowest
    /// MAC of its ports, which changes as veths join and leaves every neighbour with a stale
    /// ARP entry for the gateway.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<u32, NetlinkError> {
        if let Some(index) = self.link_index(name).await? {
            let mut msg = LinkUnspec::new_with_index(index).address(mac.to_vec()).up();
            if let Some(mtu) = mtu {
                msg = msg.mtu(mtu);
            }
            self.handle
                .link()
                .set(msg.build())
                .execute()
                .await
                .map_err(request(format!("set up bridge {name}")))?;
            return Ok(index);
        }
        let mut msg = LinkBridge::new(name).address(mac.to_vec());
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        match self.handle.link().add(msg.build()).execute().await {
            Ok(()) => {}
            // a concurrent creator won the race; the link is there either way
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(request(format!("create bridge {name}"))(e)),
        }
        self.require_index(name).await
    }

    /// Sets MTU and/or brings link `index` up.
    pub async fn set_link(
        &self,
        index: u32,
        mtu: Option<u32>,
        up: bool,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkUnspec::new_with_index(index);
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        if up {
            msg = msg.up();
        }
        self.handle
            .link()
            .set(msg.build())
            .execute()
            .await
            .map_err(request(format!("set link {index}")))
    }

    /// Renames link `index`, sets its MAC and MTU, and brings it up, in one request.
    pub async fn configure_link(
        &self,
        index: u32,
        name: &str,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let mut msg = LinkUnspec::new_with_index(index)
            .name(name.to_string())
            .address(mac.to_vec());
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        self.handle
            .link()
            .set(msg.up().build())
            .execute()
            .await
            .map_err(request(format!("configure link {index} as {name}")))
    }

    /// Adds `addr` to link `index`; an address already there is fine.
    pub async fn add_address(&self, index: u32, addr: IpNetwork) -> Result<(), NetlinkError> {
        let mut req = self.handle.address().add(index, addr.ip(), addr.prefix());
        if addr.is_ipv6() {
            // no duplicate address detection: IPAM owns the subnet, and DAD would keep the
            // address tentative (unusable) for about a second after attach
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(request(format!("add address {addr} to link {index}"))(e)),
        }
    }

    /// Creates a veth pair in this namespace with `mtu` on both ends; returns the indexes.
    pub async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        mtu: Option<u32>,
    ) -> Result<(u32, u32), NetlinkError> {
        let mut msg = LinkVeth::new(host, peer);
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        self.handle
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(request(format!("create veth {host}/{peer}")))?;
        let host_index = self.require_index(host).await?;
        let peer_index = self.require_index(peer).await?;
        if let Some(mtu) = mtu {
            // the peer message of a veth carries no MTU of its own
            self.set_link(peer_index, Some(mtu), false).await?;
        }
        Ok((host_index, peer_index))
    }

    /// Creates a veth pair in one request: the host end `host` enslaved to `bridge` and up in
    /// this namespace, the peer created directly inside namespace `ns` as `peer` with `mac`
    /// (still down). Creating the peer in place avoids moving a link between namespaces, which costs
    /// the kernel an RCU grace period (tens of milliseconds). Returns the host end's index.
    pub async fn create_veth_into(
        &self,
        host: &str,
        bridge: u32,
        peer: &str,
        ns: &File,
        mac: [u8; 6],
        mtu: Option<u32>,
    ) -> Result<u32, NetlinkError> {
        // the peer cannot be brought up in this request (its own peer is not linked yet:
        // ENOTCONN); the caller does that inside the namespace
        let mut peer_msg = LinkUnspec::new_with_name(peer)
            .address(mac.to_vec())
            .setns_by_fd(ns.as_raw_fd());
        let mut msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_string())
            .controller(bridge)
            .up();
        if let Some(mtu) = mtu {
            peer_msg = peer_msg.mtu(mtu);
            msg = msg.mtu(mtu);
        }
        let msg = msg.set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())));
        self.handle
            .link()
            .add(msg.build())
            .execute()
            .await
            .map_err(request(format!(
                "create veth {host} with peer {peer} in a namespace"
            )))?;
        self.require_index(host).await
    }

    /// Enslaves link `index` to bridge `bridge` and brings it up.
    pub async fn attach_to_bridge(&self, index: u32, bridge: u32) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(request(format!("attach link {index} to bridge {bridge}")))
    }

    /// Moves link `index` into the network namespace open as `ns`.
    pub async fn move_to_netns(&self, index: u32, ns: &File) -> Result<(), NetlinkError> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .setns_by_fd(ns.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(request(format!("move link {index} to another namespace")))
    }

    /// Deletes link `index` (deleting one end of a veth deletes both).
    pub async fn delete_link(&self, index: u32) -> Result<(), NetlinkError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(request(format!("delete link {index}"))(e)),
        }
    }

    /// Deletes link `name` when it exists; returns whether it did.
    pub async fn delete_link_by_name(&self, name: &str) -> Result<bool, NetlinkError> {
        match self.link_index(name).await? {
            Some(index) => self.delete_link(index).await.map(|()| true),
            None => Ok(false),
        }
    }

    /// Adds the default route via `gateway` out of link `index`.
    pub async fn add_default_route(&self, gateway: IpAddr, index: u32) -> Result<(), NetlinkError> {
        let msg = match gateway {
            IpAddr::V4(g) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(g)
                .output_interface(index)
                .build(),
            IpAddr::V6(g) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(g)
                .output_interface(index)
                .build(),
        };
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(request(format!("add default route via {gateway}"))(e)),
        }
    }

    /// Every unicast destination of the main routing tables (IPv4 and IPv6), default routes
    /// left out: what IPAM must not overlap.
    pub async fn routes(&self) -> Result<Vec<IpNetwork>, NetlinkError> {
        let mut out = Vec::new();
        let queries = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for q in queries {
            let mut stream = self.handle.route().get(q).execute();
            while let Some(msg) = stream.try_next().await.map_err(request("dump routes"))? {
                if msg.header.kind != RouteType::Unicast
                    || msg.header.destination_prefix_length == 0
                {
                    continue;
                }
                let prefix = msg.header.destination_prefix_length;
                let dest = msg.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                    _ => None,
                });
                if let Some(net) = dest.and_then(|d| IpNetwork::new(d, prefix).ok()) {
                    // link-local fe80::/64 exists on every link and is never allocated from
                    if matches!(net, IpNetwork::V6(n) if n.ip().segments()[0] == 0xfe80) {
                        continue;
                    }
                    out.push(net);
                }
            }
        }
        Ok(out)
    }
}

/// One static entry of a link's neighbour table (ARP/NDP: address → MAC) or forwarding
/// database (FDB: MAC → the remote tunnel endpoint that has it), as netlink lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    pub address: IpAddr,
    pub mac: [u8; 6],
    /// The kernel's own message, which is what deleting the entry takes.
    message: NeighbourMessage,
}

impl Netlink {
    /// Creates VXLAN device `name` (VNI `vni`, source address `local`, UDP `port`, no
    /// learning, ARP answered from the neighbour table) as a port of `bridge`, with `mtu`,
    /// and brings it up; an existing device of that name is reused. Returns its index.
    pub async fn ensure_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        bridge: u32,
        mtu: Option<u32>,
    ) -> Result<u32, NetlinkError> {
        if self.link_index(name).await?.is_none() {
            let mut msg = LinkVxlan::new(name, vni)
                .local(local)
                .port(port)
                .learning(false)
                .proxy(true)
                .controller(bridge);
            if let Some(mtu) = mtu {
                msg = msg.mtu(mtu);
            }
            match self.handle.link().add(msg.up().build()).execute().await {
                Ok(()) => {}
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => return Err(request(format!("create vxlan {name} (vni {vni})"))(e)),
            }
        }
        let index = self.require_index(name).await?;
        self.set_link(index, mtu, true).await?;
        Ok(index)
    }

    /// The static neighbour entries (address → MAC) of link `index`.
    pub async fn neighbours(&self, index: u32) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut list = self
                .handle
                .neighbours()
                .get()
                .set_address_family(family)
                .execute();
            while let Some(msg) = list
                .try_next()
                .await
                .map_err(request(format!("list neighbours of link {index}")))?
            {
                if msg.header.ifindex != index || msg.header.state != NeighbourState::Permanent {
                    continue;
                }
                if let (Some(address), Some(mac)) = (neighbour_ip(&msg), neighbour_mac(&msg)) {
                    out.push(NeighbourEntry {
                        address,
                        mac,
                        message: msg,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Adds (or replaces) a static neighbour entry `address` → `mac` on link `index`.
    pub async fn add_neighbour(
        &self,
        index: u32,
        address: IpAddr,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add(index, address)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(request(format!("add neighbour {address} on link {index}")))
    }

    /// The forwarding entries of VXLAN link `index` that send a MAC to a remote endpoint.
    pub async fn fdb_entries(&self, index: u32) -> Result<Vec<NeighbourEntry>, NetlinkError> {
        let mut out = Vec::new();
        let mut list = self
            .handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Bridge)
            .execute();
        while let Some(msg) = list
            .try_next()
            .await
            .map_err(request(format!("list forwarding entries of link {index}")))?
        {
            if msg.header.ifindex != index || !msg.header.flags.contains(NeighbourFlags::Own) {
                continue;
            }
            if let (Some(address), Some(mac)) = (neighbour_ip(&msg), neighbour_mac(&msg)) {
                out.push(NeighbourEntry {
                    address,
                    mac,
                    message: msg,
                });
            }
        }
        Ok(out)
    }

    /// Adds (or replaces) the forwarding entry sending `mac` to tunnel endpoint `remote`
    /// on VXLAN link `index`.
    pub async fn add_fdb(
        &self,
        index: u32,
        mac: [u8; 6],
        remote: IpAddr,
    ) -> Result<(), NetlinkError> {
        self.handle
            .neighbours()
            .add_bridge(index, &mac)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .destination(remote)
            .replace()
            .execute()
            .await
            .map_err(request(format!(
                "add forwarding entry {} via {remote} on link {index}",
                format_mac(&mac)
            )))
    }

    /// Deletes a neighbour or forwarding entry listed by [`Netlink::neighbours`] or
    /// [`Netlink::fdb_entries`]; one already gone is fine.
    pub async fn delete_neighbour(&self, entry: &NeighbourEntry) -> Result<(), NetlinkError> {
        match self
            .handle
            .neighbours()
            .del(entry.message.clone())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(request(format!(
                "delete entry {} / {}",
                entry.address,
                format_mac(&entry.mac)
            ))(e)),
        }
    }
}

fn neighbour_ip(msg: &NeighbourMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        // forwarding entries (AF_BRIDGE) carry the remote address as raw bytes
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    })
}

fn neighbour_mac(msg: &NeighbourMessage) -> Option<[u8; 6]> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => b.as_slice().try_into().ok(),
        _ => None,
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Opens network namespace `path` (`/proc/<pid>/ns/net`, `/run/netns/<name>`).
pub fn open_netns(path: &Path) -> Result<File, NetlinkError> {
    File::open(path).map_err(|source| NetlinkError::Netns {
        path: path.to_path_buf(),
        op: "open",
        source,
    })
}

/// A thread running inside another network namespace (see [`spawn_in_netns`]).
#[derive(Debug)]
pub struct NetnsThread<T> {
    inner: std::thread::JoinHandle<Option<T>>,
}

impl<T> NetnsThread<T> {
    /// Waits for the thread; `Err` carries its panic.
    pub fn join(self) -> std::thread::Result<T> {
        self.inner
            .join()
            .map(|v| v.expect("a NetnsThread exists only when setns succeeded"))
    }

    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// Runs `f` on a new OS thread that has entered network namespace `path`. The thread never
/// leaves the namespace; it ends when `f` returns. Fails when the namespace cannot be entered.
pub fn spawn_in_netns<T, F>(path: &Path, f: F) -> Result<NetnsThread<T>, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let ns = open_netns(path)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let inner = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            // setns only affects this thread, which exists for nothing else
            if let Err(e) = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Err(std::io::Error::from(e)));
                return None;
            }
            let _ = tx.send(Ok(()));
            Some(f())
        })
        .map_err(|source| NetlinkError::Netns {
            path: path.to_path_buf(),
            op: "spawn thread",
            source,
        })?;
    match rx.recv() {
        Ok(Ok(())) => Ok(NetnsThread { inner }),
        Ok(Err(source)) => Err(NetlinkError::Netns {
            path: path.to_path_buf(),
            op: "setns",
            source,
        }),
        Err(_) => Err(NetlinkError::ThreadLost {
            path: path.to_path_buf(),
        }),
    }
}

/// Runs `f` with a [`Netlink`] handle inside network namespace `path`, on a dedicated thread
/// with its own current-thread runtime, and awaits the result from the caller's runtime.
pub async fn in_netns<T, F, Fut>(path: &Path, f: F) -> Result<T, NetlinkError>
where
    T: Send + 'static,
    F: FnOnce(Netlink) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetlinkError>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let owned = path.to_path_buf();
    let _thread = spawn_in_netns(path, move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NetlinkError::Netns {
                path: owned.clone(),
                op: "start runtime",
                source,
            })
            .and_then(|rt| {
                rt.block_on(async move {
                    let nl = Netlink::connect()?;
                    f(nl).await
                })
            });
        let _ = tx.send(result);
    })?;
    rx.await.map_err(|_| NetlinkError::ThreadLost {
        path: path.to_path_buf(),
    })?
}
