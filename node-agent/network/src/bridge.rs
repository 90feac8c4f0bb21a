//! Bridge networks on the host and container endpoints on them.
//!
//! Layout: one Linux bridge `br-<12 hex of the network id>` per berth network holding the
//! gateway addresses; one veth pair per endpoint, the host end `vb<12 hex>` enslaved to the
//! bridge, the peer created directly inside the container's network namespace as `eth0`,
//! `eth1`, … (never moved: moving a link between namespaces costs an RCU grace period).
//! The veth names are derived from (network, endpoint) so detach works after an agent restart
//! without any saved handle. Firewall rules and DNS are not this module's business.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ipam::{EndpointLease, NetworkLease};
use crate::netlink::{Netlink, NetlinkError, in_netns, open_netns};

/// Errors of bridge and endpoint plumbing, naming the network, endpoint or link.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("network {network}: {source}")]
    Network {
        network: String,
        #[source]
        source: NetlinkError,
    },
    #[error("endpoint {endpoint} on network {network}: {source}")]
    Endpoint {
        network: String,
        endpoint: String,
        #[source]
        source: NetlinkError,
    },
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "interface name {name:?} is not a valid Linux interface name (1-15 bytes, no '/' or space)"
    )]
    BadIfname { name: String },
    #[error("{}", join_errors(.0))]
    Teardown(Vec<BridgeError>),
}

fn join_errors(errors: &[BridgeError]) -> String {
    let parts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    format!("teardown failed: {}", parts.join("; "))
}

/// 12 hex characters naming `id` in link names: the id itself when it is already hex (Docker
/// style ids), otherwise a hash of it, so any id fits the 15-byte IFNAMSIZ limit.
fn short_hex(parts: &[&str]) -> String {
    if let [one] = parts
        && one.len() >= 12
        && one.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return one[..12].to_ascii_lowercase();
    }
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..12].to_string()
}

/// The bridge of network `network_id`: `br-` and 12 hex characters (15 bytes).
pub fn bridge_name(network_id: &str) -> String {
    format!("br-{}", short_hex(&[network_id]))
}

/// The host end of the veth of (`network_id`, `endpoint_id`): `vb` and 12 hex characters.
pub fn host_veth_name(network_id: &str, endpoint_id: &str) -> String {
    format!("vb{}", short_hex(&[network_id, endpoint_id]))
}

/// A locally administered MAC derived from the IPv4 address, as Docker does (`02:42:` + IP),
/// so neighbours keep a stable MAC across restarts of the same endpoint.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
}

/// A berth network as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeNetwork {
    pub id: String,
    pub bridge: String,
    pub subnet_v4: Ipv4Network,
    pub gateway_v4: Ipv4Addr,
    pub subnet_v6: Option<Ipv6Network>,
    pub gateway_v6: Option<Ipv6Addr>,
    pub mtu: Option<u32>,
    /// No default route for its endpoints, no masquerade, no access to the host.
    pub internal: bool,
    /// The user's labels (kept for `network ls`/`inspect`; berth reads none of them).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// When it was created (RFC 3339, as the caller wrote it).
    #[serde(default)]
    pub created: String,
}

impl BridgeNetwork {
    pub fn new(id: &str, lease: &NetworkLease, mtu: Option<u32>, internal: bool) -> Self {
        BridgeNetwork {
            id: id.to_string(),
            bridge: bridge_name(id),
            subnet_v4: lease.subnet_v4,
            gateway_v4: lease.gateway_v4,
            subnet_v6: lease.subnet_v6,
            gateway_v6: lease.gateway_v6,
            mtu,
            internal,
            labels: Default::default(),
            created: String::new(),
        }
    }

    fn gateway_addresses(&self) -> Vec<IpNetwork> {
        let mut out = vec![
            IpNetwork::new(self.gateway_v4.into(), self.subnet_v4.prefix())
                .expect("prefix of a valid subnet"),
        ];
        if let (Some(s), Some(g)) = (self.subnet_v6, self.gateway_v6) {
            out.push(IpNetwork::new(g.into(), s.prefix()).expect("prefix of a valid subnet"));
        }
        out
    }
}

/// One container interface to create on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Unique per network (the container id, or container id + network for several networks).
    pub id: String,
    /// The container's network namespace: `/proc/<pid>/ns/net` or `/run/netns/<name>`.
    pub netns: PathBuf,
    /// Interface name inside the container: `eth0`, `eth1`, … in network priority order.
    pub ifname: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    /// Whether this network carries the container's default route (the first/priority
    /// network); ignored on internal networks.
    pub default_route: bool,
    pub mac: Option<[u8; 6]>,
}

impl Endpoint {
    /// An endpoint for the addresses IPAM gave it.
    pub fn new(
        id: &str,
        netns: impl Into<PathBuf>,
        ifname: &str,
        lease: &EndpointLease,
        default_route: bool,
    ) -> Self {
        Endpoint {
            id: id.to_string(),
            netns: netns.into(),
            ifname: ifname.to_string(),
            ipv4: lease.ipv4,
            ipv6: lease.ipv6,
            default_route,
            mac: None,
        }
    }
}

/// What [`attach`] made: enough to detach it, even after a restart (it serializes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub network_id: String,
    pub endpoint_id: String,
    pub host_veth: String,
    pub ifname: String,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub netns: PathBuf,
}

fn write_sysctl(path: &str, value: &str) -> Result<(), BridgeError> {
    std::fs::write(path, value).map_err(|source| BridgeError::Sysctl {
        path: path.to_string(),
        source,
    })
}

/// Creates (or completes) the bridge of `net`: link, MTU, gateway addresses, up. Idempotent, so
/// it doubles as the restore step after a reboot.
pub async fn create_network(nl: &Netlink, net: &BridgeNetwork) -> Result<u32, BridgeError> {
    let err = |source| BridgeError::Network {
        network: net.id.clone(),
        source,
    };
    let index = nl
        .ensure_bridge(&net.bridge, mac_for(net.gateway_v4), net.mtu)
        .await
        .map_err(err)?;
    if net.subnet_v6.is_some() {
        // a host with IPv6 disabled by default would refuse the gateway address
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", net.bridge),
            "0",
        );
    }
    for addr in net.gateway_addresses() {
        nl.add_address(index, addr).await.map_err(err)?;
    }
    if !net.internal {
        // lets the output-chain DNAT send 127.0.0.1-sourced packets (curl 127.0.0.1:PORT) out
        // of this bridge; the firewall masquerades them so replies come back
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge),
            "1",
        )?;
    }
    Ok(index)
}

/// Connects the container of `ep` to `net`: one request creates the veth pair with the host
/// end on the bridge and the peer already inside the container's namespace under its final
/// name (`eth0`, …) with MAC and MTU; then, from a thread in that namespace, the peer and
/// `lo` up, addresses, and the default route when `ep.default_route` and the network is not internal.
/// On failure nothing is left behind.
pub async fn attach(
    nl: &Netlink,
    net: &BridgeNetwork,
    ep: &Endpoint,
) -> Result<Attachment, BridgeError> {
    let err = |source| BridgeError::Endpoint {
        network: net.id.clone(),
        endpoint: ep.id.clone(),
        source,
    };
    if !valid_ifname(&ep.ifname) {
        return Err(BridgeError::BadIfname {
            name: ep.ifname.clone(),
        });
    }
    let bridge = nl
        .link_index(&net.bridge)
        .await
        .map_err(err)?
        .ok_or_else(|| {
            err(NetlinkError::NoSuchLink {
                name: net.bridge.clone(),
            })
        })?;
    let ns = open_netns(&ep.netns).map_err(err)?;
    let host = host_veth_name(&net.id, &ep.id);
    let mac = ep.mac.unwrap_or_else(|| mac_for(ep.ipv4));

    let host_index = nl
        .create_veth_into(&host, bridge, &ep.ifname, &ns, mac, net.mtu)
        .await
        .map_err(err)?;
    let mut addrs =
        vec![IpNetwork::new(ep.ipv4.into(), net.subnet_v4.prefix()).expect("valid prefix")];
    if let (Some(ip), Some(s)) = (ep.ipv6, net.subnet_v6) {
        addrs.push(IpNetwork::new(ip.into(), s.prefix()).expect("valid prefix"));
    }
    let mut routes: Vec<IpAddr> = Vec::new();
    if ep.default_route && !net.internal {
        routes.push(net.gateway_v4.into());
        if ep.ipv6.is_some()
            && let Some(g) = net.gateway_v6
        {
            routes.push(g.into());
        }
    }
    let ifname = ep.ifname.clone();
    let result = in_netns(&ep.netns, move |cnl| async move {
        if let Some(lo) = cnl.link_index("lo").await? {
            cnl.set_link(lo, None, true).await?;
        }
        let index = cnl
            .link_index(&ifname)
            .await?
            .ok_or(NetlinkError::NoSuchLink { name: ifname })?;
        cnl.set_link(index, None, true).await?;
        for a in addrs {
            cnl.add_address(index, a).await?;
        }
        for gw in routes {
            cnl.add_default_route(gw, index).await?;
        }
        Ok(())
    })
    .await;
    if let Err(e) = result {
        // deleting the host end removes the peer too, wherever it is now
        let _ = nl.delete_link(host_index).await;
        return Err(err(e));
    }
    Ok(Attachment {
        network_id: net.id.clone(),
        endpoint_id: ep.id.clone(),
        host_veth: host,
        ifname: ep.ifname.clone(),
        mac,
        ipv4: ep.ipv4,
        ipv6: ep.ipv6,
        netns: ep.netns.clone(),
    })
}

/// Brings `lo` up in namespace `netns` and nothing else: `network_mode: none`.
pub async fn loopback_only(netns: &std::path::Path) -> Result<(), BridgeError> {
    in_netns(netns, |cnl| async move {
        if let Some(lo) = cnl.link_index("lo").await? {
            cnl.set_link(lo, None, true).await?;
        }
        Ok(())
    })
    .await
    .map_err(|source| BridgeError::Endpoint {
        network: "none".into(),
        endpoint: netns.display().to_string(),
        source,
    })
}

/// Removes the endpoint's veth pair (the peer goes with the host end). Already gone is fine.
pub async fn detach(nl: &Netlink, network_id: &str, endpoint_id: &str) -> Result<(), BridgeError> {
    let host = host_veth_name(network_id, endpoint_id);
    nl.delete_link_by_name(&host)
        .await
        .map(|_| ())
        .map_err(|source| BridgeError::Endpoint {
            network: network_id.to_string(),
            endpoint: endpoint_id.to_string(),
            source,
        })
}

/// Removes the network's bridge after detaching `endpoints` still on it; every step is tried
/// and every failure reported together.
pub async fn remove_network(
    nl: &Netlink,
    network_id: &str,
    endpoints: &[String],
) -> Result<(), BridgeError> {
    let mut errors = Vec::new();
    for ep in endpoints {
        if let Err(e) = detach(nl, network_id, ep).await {
            errors.push(e);
        }
    }
    if let Err(source) = nl.delete_link_by_name(&bridge_name(network_id)).await {
        errors.push(BridgeError::Network {
            network: network_id.to_string(),
            source,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(BridgeError::Teardown(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_ifnamsiz() {
        let id = "3f2a9c0d1e4b5a6978877665544332211";
        assert_eq!(bridge_name(id), "br-3f2a9c0d1e4b");
        let named = bridge_name("myproject_default");
        assert_eq!(named.len(), 15);
        assert!(named.starts_with("br-"));
        let v = host_veth_name("myproject_default", "web-1");
        assert_eq!(v.len(), 14);
        assert_ne!(v, host_veth_name("myproject_default", "web-2"));
        assert_ne!(v, host_veth_name("other", "web-1"));
    }

    #[test]
    fn mac_follows_ip() {
        assert_eq!(
            mac_for(Ipv4Addr::new(172, 17, 0, 2)),
            [0x02, 0x42, 172, 17, 0, 2]
        );
    }

    #[test]
    fn ifnames_are_checked() {
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("sixteen-chars-xx"));
    }
}
