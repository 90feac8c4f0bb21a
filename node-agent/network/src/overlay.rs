//! Overlay networks: one layer-2 segment spanning several nodes. On every node the
//! network is the same kind of bridge a local network has (same subnet, same gateway
//! address, containers attached by veth as usual), plus one VXLAN port carrying the
//! network's VNI to the other nodes over UDP 4789.
//!
//! Nothing is learned from traffic: the cluster knows where every endpoint runs, so each
//! node is told the remote endpoints of the network and keeps two static tables on its
//! VXLAN device in step with that list — the forwarding database (container MAC → the
//! node's tunnel address) and the neighbour table (container IP → MAC), from which the
//! device answers ARP itself (`proxy`), so no broadcast crosses nodes. [`plan`] is the pure
//! diff between what the kernel has and what should be; [`sync_endpoints`] applies it.
//!
//! This module knows links and tables, not the cluster: callers hand it the VNI, this
//! node's tunnel address and the remote endpoints.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::netlink::{NeighbourEntry, Netlink, NetlinkError};

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN adds to each frame over IPv4 (outer IP 20, UDP 8, VXLAN 8, inner Ethernet
/// 14): an overlay's MTU is the underlay's minus this.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The overlay side of a network on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlay {
    pub network_id: String,
    /// The VXLAN network identifier, the same on every node (24 bits).
    pub vni: u32,
    /// This node's tunnel (underlay) address.
    pub local: Ipv4Addr,
}

/// A container on another node: its address and MAC on the overlay, and that node's
/// tunnel address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteEndpoint {
    pub ip: IpAddr,
    pub mac: [u8; 6],
    pub node: IpAddr,
}

/// Errors of overlay setup and synchronisation, naming the network.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay network {network}: VNI {vni} is outside 1..=16777215")]
    BadVni { network: String, vni: u32 },
    #[error("overlay network {network}: no bridge {bridge} on this node")]
    NoBridge { network: String, bridge: String },
    #[error("overlay network {network}: {source}")]
    Netlink {
        network: String,
        #[source]
        source: NetlinkError,
    },
}

/// The VXLAN device's name: `bvx-` and the first 11 characters of the network id (Linux
/// allows 15).
pub fn vxlan_name(network_id: &str) -> String {
    let short: String = network_id.chars().take(11).collect();
    format!("bvx-{short}")
}

/// The MTU of an overlay over an underlay of `underlay_mtu`.
pub fn overlay_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
}

/// What to change on a VXLAN device: entries to add or replace, and entries to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Neighbour entries (IP → MAC) to add or replace.
    pub add_neighbours: Vec<(IpAddr, [u8; 6])>,
    /// Forwarding entries (MAC → node) to add or replace.
    pub add_fdb: Vec<([u8; 6], IpAddr)>,
    /// Indexes into the current neighbour list to delete.
    pub delete_neighbours: Vec<usize>,
    /// Indexes into the current forwarding list to delete.
    pub delete_fdb: Vec<usize>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self == &Plan::default()
    }
}

/// The difference between the kernel's tables (`neighbours`: IP → MAC, `fdb`: MAC → node)
/// and the `desired` remote endpoints. An entry that is right stays untouched; a wrong one
/// is replaced; one nobody wants is deleted. A MAC wanted twice keeps its first node.
pub fn plan(
    neighbours: &[(IpAddr, [u8; 6])],
    fdb: &[([u8; 6], IpAddr)],
    desired: &[RemoteEndpoint],
) -> Plan {
    let mut want_neigh: BTreeMap<IpAddr, [u8; 6]> = BTreeMap::new();
    let mut want_fdb: BTreeMap<[u8; 6], IpAddr> = BTreeMap::new();
    for e in desired {
        want_neigh.entry(e.ip).or_insert(e.mac);
        want_fdb.entry(e.mac).or_insert(e.node);
    }
    let mut p = Plan::default();
    for (ip, mac) in &want_neigh {
        if !neighbours.contains(&(*ip, *mac)) {
            p.add_neighbours.push((*ip, *mac));
        }
    }
    for (mac, node) in &want_fdb {
        if !fdb.contains(&(*mac, *node)) {
            p.add_fdb.push((*mac, *node));
        }
    }
    // a replaced entry is overwritten in place; only unwanted keys are deleted
    for (i, (ip, _)) in neighbours.iter().enumerate() {
        if !want_neigh.contains_key(ip) {
            p.delete_neighbours.push(i);
        }
    }
    for (i, (mac, _)) in fdb.iter().enumerate() {
        if !want_fdb.contains_key(mac) {
            p.delete_fdb.push(i);
        }
    }
    p
}

/// Adds the VXLAN port of `overlay` to the network's existing bridge `bridge` (made by
/// [`crate::bridge::create_network`] with the overlay's MTU). Idempotent.
pub async fn ensure(
    nl: &Netlink,
    overlay: &Overlay,
    bridge: &str,
    mtu: Option<u32>,
) -> Result<u32, OverlayError> {
    if overlay.vni == 0 || overlay.vni > 0x00ff_ffff {
        return Err(OverlayError::BadVni {
            network: overlay.network_id.clone(),
            vni: overlay.vni,
        });
    }
    let err = |source| OverlayError::Netlink {
        network: overlay.network_id.clone(),
        source,
    };
    let bridge_index =
        nl.link_index(bridge)
            .await
            .map_err(err)?
            .ok_or_else(|| OverlayError::NoBridge {
                network: overlay.network_id.clone(),
                bridge: bridge.to_string(),
            })?;
    nl.ensure_vxlan(
        &vxlan_name(&overlay.network_id),
        overlay.vni,
        overlay.local,
        VXLAN_PORT,
        bridge_index,
        mtu,
    )
    .await
    .map_err(err)
}

/// Brings the VXLAN device's tables in step with `desired`; returns the plan it applied.
pub async fn sync_endpoints(
    nl: &Netlink,
    overlay: &Overlay,
    desired: &[RemoteEndpoint],
) -> Result<Plan, OverlayError> {
    let err = |source| OverlayError::Netlink {
        network: overlay.network_id.clone(),
        source,
    };
    let name = vxlan_name(&overlay.network_id);
    let index = nl
        .link_index(&name)
        .await
        .map_err(err)?
        .ok_or_else(|| err(NetlinkError::NoSuchLink { name: name.clone() }))?;
    let neighbours: Vec<NeighbourEntry> = nl.neighbours(index).await.map_err(err)?;
    let fdb: Vec<NeighbourEntry> = nl.fdb_entries(index).await.map_err(err)?;
    let p = plan(
        &neighbours
            .iter()
            .map(|e| (e.address, e.mac))
            .collect::<Vec<_>>(),
        &fdb.iter().map(|e| (e.mac, e.address)).collect::<Vec<_>>(),
        desired,
    );
    // forwarding first, so a container never has a MAC for an address it cannot reach
    for (mac, node) in &p.add_fdb {
        nl.add_fdb(index, *mac, *node).await.map_err(err)?;
    }
    for (ip, mac) in &p.add_neighbours {
        nl.add_neighbour(index, *ip, *mac).await.map_err(err)?;
    }
    for &i in &p.delete_neighbours {
        nl.delete_neighbour(&neighbours[i]).await.map_err(err)?;
    }
    for &i in &p.delete_fdb {
        nl.delete_neighbour(&fdb[i]).await.map_err(err)?;
    }
    Ok(p)
}

/// Removes the VXLAN port of a network (its tables go with it); absent is fine.
pub async fn remove(nl: &Netlink, network_id: &str) -> Result<(), OverlayError> {
    nl.delete_link_by_name(&vxlan_name(network_id))
        .await
        .map(drop)
        .map_err(|source| OverlayError::Netlink {
            network: network_id.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn ep(addr: &str, mac: [u8; 6], node: &str) -> RemoteEndpoint {
        RemoteEndpoint {
            ip: ip(addr),
            mac,
            node: ip(node),
        }
    }

    #[test]
    fn an_empty_device_gets_every_entry() {
        let p = plan(&[], &[], &[ep("10.0.0.2", A, "192.0.2.2")]);
        assert_eq!(p.add_neighbours, [(ip("10.0.0.2"), A)]);
        assert_eq!(p.add_fdb, [(A, ip("192.0.2.2"))]);
        assert!(p.delete_neighbours.is_empty() && p.delete_fdb.is_empty());
    }

    #[test]
    fn entries_in_step_are_left_alone() {
        let desired = [ep("10.0.0.2", A, "192.0.2.2")];
        let p = plan(&[(ip("10.0.0.2"), A)], &[(A, ip("192.0.2.2"))], &desired);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_moved_container_is_replaced_and_a_gone_one_deleted() {
        let current_n = [(ip("10.0.0.2"), A), (ip("10.0.0.3"), B)];
        let current_f = [(A, ip("192.0.2.2")), (B, ip("192.0.2.3"))];
        // A moved to another node; B is gone
        let p = plan(&current_n, &current_f, &[ep("10.0.0.2", A, "192.0.2.9")]);
        assert!(p.add_neighbours.is_empty());
        assert_eq!(p.add_fdb, [(A, ip("192.0.2.9"))]);
        assert_eq!(p.delete_neighbours, [1]);
        assert_eq!(p.delete_fdb, [1]);
    }

    #[test]
    fn names_fit_linux_and_mtu_leaves_room_for_the_header() {
        let n = vxlan_name("0123456789abcdef0123");
        assert_eq!(n, "bvx-0123456789a");
        assert!(n.len() <= 15);
        assert_eq!(overlay_mtu(1500), 1450);
    }
}
