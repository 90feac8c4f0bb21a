//! IP address management: which subnet each berth network gets and which address each endpoint
//! gets, persisted in one JSON state file.
//!
//! The core ([`IpamState`] and the `pick_*`/`first_free_*` functions) is pure: host routes are
//! passed in by the caller (read with [`crate::netlink::Netlink::routes`]), so it is unit-tested
//! without root. [`Ipam`] wraps the state with the file: every mutation is computed on a copy,
//! written atomically (temp file, fsync, rename, fsync of the directory) and only then becomes
//! the state in memory, so a crash never leaves a half-written file and a restart never hands an
//! address out twice. This module must not touch links or firewall rules.
//!
//! Default pool (as Docker's): `172.17.0.0/16` … `172.31.0.0/16` as whole /16s, then
//! `192.168.0.0/16` split into /20s; IPv6 subnets are /64s from the ULA prefix
//! `fd62:6572:7468::/48` ("berth" in hex).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde::{Deserialize, Serialize};

/// Errors of address management, each naming the network, subnet or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free {family} subnet left in the address pool for network {network}")]
    PoolExhausted {
        network: String,
        family: &'static str,
    },
    #[error("subnet {subnet} requested by network {network} overlaps {other}")]
    SubnetOverlaps {
        network: String,
        subnet: IpNetwork,
        other: String,
    },
    #[error("address {addr} is outside subnet {subnet} of network {network}")]
    OutOfSubnet {
        network: String,
        addr: std::net::IpAddr,
        subnet: IpNetwork,
    },
    #[error("address {addr} is already in use on network {network}")]
    AddressInUse {
        network: String,
        addr: std::net::IpAddr,
    },
    #[error("no free address left in subnet {subnet} of network {network}")]
    SubnetExhausted { network: String, subnet: IpNetwork },
    #[error("unknown network {network}")]
    UnknownNetwork { network: String },
    #[error("network {network} has no IPv6 subnet but address {addr} was requested")]
    Ipv6NotEnabled { network: String, addr: Ipv6Addr },
    #[error("invalid pool block {base}/{prefix}: the split prefix must be at least the block's")]
    InvalidPool { base: IpNetwork, prefix: u8 },
    #[error("IPAM state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("IPAM state file {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// One block of a pool: `base` is cut into subnets of `/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolBlock<N> {
    pub base: N,
    pub prefix: u8,
}

/// Where subnets come from when a network does not name its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub v4: Vec<PoolBlock<Ipv4Network>>,
    pub v6: Vec<PoolBlock<Ipv6Network>>,
}

impl Default for Pool {
    fn default() -> Self {
        let mut v4: Vec<_> = (17..=31)
            .map(|b| PoolBlock {
                base: Ipv4Network::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid /16"),
                prefix: 16,
            })
            .collect();
        v4.push(PoolBlock {
            base: Ipv4Network::new(Ipv4Addr::new(192, 168, 0, 0), 16).expect("valid /16"),
            prefix: 20,
        });
        let v6 = vec![PoolBlock {
            base: Ipv6Network::new(Ipv6Addr::new(0xfd62, 0x6572, 0x7468, 0, 0, 0, 0, 0), 48)
                .expect("valid /48"),
            prefix: 64,
        }];
        Pool { v4, v6 }
    }
}

impl Pool {
    /// A pool of one IPv4 block and one IPv6 block, e.g. for tests confined to a private range.
    pub fn single(
        v4: Ipv4Network,
        v4_prefix: u8,
        v6: Ipv6Network,
        v6_prefix: u8,
    ) -> Result<Self, IpamError> {
        if v4_prefix < v4.prefix() || v4_prefix > 30 {
            return Err(IpamError::InvalidPool {
                base: v4.into(),
                prefix: v4_prefix,
            });
        }
        if v6_prefix < v6.prefix() || v6_prefix > 126 {
            return Err(IpamError::InvalidPool {
                base: v6.into(),
                prefix: v6_prefix,
            });
        }
        Ok(Pool {
            v4: vec![PoolBlock {
                base: v4,
                prefix: v4_prefix,
            }],
            v6: vec![PoolBlock {
                base: v6,
                prefix: v6_prefix,
            }],
        })
    }
}

/// How many candidate subnets of one block are looked at at most (a /48 cut into /64s has 65536).
const MAX_CANDIDATES: u128 = 1 << 16;

/// The first subnet of the pool that overlaps nothing in `taken` (host routes and berth's own
/// subnets).
pub fn pick_subnet_v4(pool: &[PoolBlock<Ipv4Network>], taken: &[IpNetwork]) -> Option<Ipv4Network> {
    for block in pool {
        if block.prefix < block.base.prefix() || block.prefix > 32 {
            continue;
        }
        let base = u32::from(block.base.network());
        let step = 1u64 << (32 - block.prefix);
        let count = 1u64 << (block.prefix - block.base.prefix());
        for i in 0..count.min(MAX_CANDIDATES as u64) {
            let addr = Ipv4Addr::from((base as u64 + i * step) as u32);
            let Ok(candidate) = Ipv4Network::new(addr, block.prefix) else {
                continue;
            };
            if !taken.iter().any(|t| overlaps(&candidate.into(), t)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// IPv6 counterpart of [`pick_subnet_v4`].
pub fn pick_subnet_v6(pool: &[PoolBlock<Ipv6Network>], taken: &[IpNetwork]) -> Option<Ipv6Network> {
    for block in pool {
        if block.prefix < block.base.prefix() || block.prefix > 128 {
            continue;
        }
        let base = u128::from(block.base.network());
        let step = if block.prefix == 0 {
            0
        } else {
            1u128 << (128 - block.prefix)
        };
        let bits = block.prefix - block.base.prefix();
        let count = if bits >= 17 {
            MAX_CANDIDATES
        } else {
            1u128 << bits
        };
        for i in 0..count {
            let addr = Ipv6Addr::from(base + i * step);
            let Ok(candidate) = Ipv6Network::new(addr, block.prefix) else {
                continue;
            };
            if !taken.iter().any(|t| overlaps(&candidate.into(), t)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// Whether two networks share any address (same family only). Default routes (`/0`) are not
/// passed in by callers: they would overlap everything.
pub fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    match (a, b) {
        (IpNetwork::V4(a), IpNetwork::V4(b)) => a.overlaps(*b),
        (IpNetwork::V6(a), IpNetwork::V6(b)) => {
            // ipnetwork 0.21 has no `overlaps` for IPv6; containment either way is equivalent.
            a.contains(b.network()) || b.contains(a.network())
        }
        _ => false,
    }
}

/// The first usable host address of `subnet` not in `reserved` (network and broadcast addresses
/// are never handed out).
pub fn first_free_v4(subnet: Ipv4Network, reserved: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let start = u32::from(subnet.network());
    let size = subnet.size();
    if size < 4 {
        return None;
    }
    (1..size - 1)
        .map(|i| Ipv4Addr::from(start + i))
        .find(|a| !reserved.contains(a))
}

/// The first host address of `subnet` (from `::1`) not in `reserved`; the search is bounded so
/// a /64 never means 2^64 iterations.
pub fn first_free_v6(subnet: Ipv6Network, reserved: &BTreeSet<Ipv6Addr>) -> Option<Ipv6Addr> {
    let start = u128::from(subnet.network());
    let host_bits = 128 - u32::from(subnet.prefix());
    let size: u128 = if host_bits >= 127 {
        u128::MAX
    } else {
        1u128 << host_bits
    };
    (1..size.min(MAX_CANDIDATES * 16))
        .map(|i| Ipv6Addr::from(start + i))
        .find(|a| !reserved.contains(a))
}

/// What a network asks for; everything unset is chosen from the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    pub subnet_v4: Option<Ipv4Network>,
    pub gateway_v4: Option<Ipv4Addr>,
    pub enable_ipv6: bool,
    pub subnet_v6: Option<Ipv6Network>,
    pub gateway_v6: Option<Ipv6Addr>,
}

/// What an endpoint asks for (`ipv4_address` / `ipv6_address` of Compose).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRequest {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// The subnets of one network and the addresses of its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkLease {
    pub subnet_v4: Ipv4Network,
    pub gateway_v4: Ipv4Addr,
    pub subnet_v6: Option<Ipv6Network>,
    pub gateway_v6: Option<Ipv6Addr>,
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointLease>,
}

/// The addresses of one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointLease {
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
}

/// Every allocation berth holds, keyed by network id then endpoint id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamState {
    #[serde(default)]
    pub networks: BTreeMap<String, NetworkLease>,
}

impl IpamState {
    fn used_subnets(&self, except: &str) -> Vec<(String, IpNetwork)> {
        let mut out = Vec::new();
        for (id, lease) in &self.networks {
            if id == except {
                continue;
            }
            out.push((id.clone(), lease.subnet_v4.into()));
            if let Some(s) = lease.subnet_v6 {
                out.push((id.clone(), s.into()));
            }
        }
        out
    }

    /// Gives network `id` its subnets and gateways. Idempotent: a network that already has a
    /// lease gets it back unchanged (this is what makes an agent restart safe).
    pub fn allocate_network(
        &mut self,
        id: &str,
        req: &NetworkRequest,
        pool: &Pool,
        host_routes: &[IpNetwork],
    ) -> Result<NetworkLease, IpamError> {
        if let Some(existing) = self.networks.get(id) {
            return Ok(existing.clone());
        }
        let ours = self.used_subnets(id);
        let check = |subnet: IpNetwork| -> Result<(), IpamError> {
            if let Some((other, s)) = ours.iter().find(|(_, s)| overlaps(&subnet, s)) {
                return Err(IpamError::SubnetOverlaps {
                    network: id.to_string(),
                    subnet,
                    other: format!("berth network {other} ({s})"),
                });
            }
            if let Some(r) = host_routes.iter().find(|r| overlaps(&subnet, r)) {
                return Err(IpamError::SubnetOverlaps {
                    network: id.to_string(),
                    subnet,
                    other: format!("host route {r}"),
                });
            }
            Ok(())
        };
        let mut taken: Vec<IpNetwork> = host_routes.to_vec();
        taken.extend(ours.iter().map(|(_, s)| *s));

        let subnet_v4 = match req.subnet_v4 {
            Some(s) => {
                let s = Ipv4Network::new(s.network(), s.prefix()).expect("same prefix");
                check(s.into())?;
                s
            }
            None => pick_subnet_v4(&pool.v4, &taken).ok_or_else(|| IpamError::PoolExhausted {
                network: id.to_string(),
                family: "IPv4",
            })?,
        };
        let gateway_v4 = match req.gateway_v4 {
            Some(g) if !subnet_v4.contains(g) => {
                return Err(IpamError::OutOfSubnet {
                    network: id.to_string(),
                    addr: g.into(),
                    subnet: subnet_v4.into(),
                });
            }
            Some(g) => g,
            None => first_free_v4(subnet_v4, &BTreeSet::new()).ok_or_else(|| {
                IpamError::SubnetExhausted {
                    network: id.to_string(),
                    subnet: subnet_v4.into(),
                }
            })?,
        };
        let (subnet_v6, gateway_v6) = if req.enable_ipv6 || req.subnet_v6.is_some() {
            let s = match req.subnet_v6 {
                Some(s) => {
                    let s = Ipv6Network::new(s.network(), s.prefix()).expect("same prefix");
                    check(s.into())?;
                    s
                }
                None => {
                    pick_subnet_v6(&pool.v6, &taken).ok_or_else(|| IpamError::PoolExhausted {
                        network: id.to_string(),
                        family: "IPv6",
                    })?
                }
            };
            let g = match req.gateway_v6 {
                Some(g) if !s.contains(g) => {
                    return Err(IpamError::OutOfSubnet {
                        network: id.to_string(),
                        addr: g.into(),
                        subnet: s.into(),
                    });
                }
                Some(g) => g,
                None => first_free_v6(s, &BTreeSet::new()).ok_or_else(|| {
                    IpamError::SubnetExhausted {
                        network: id.to_string(),
                        subnet: s.into(),
                    }
                })?,
            };
            (Some(s), Some(g))
        } else {
            (None, None)
        };
        let lease = NetworkLease {
            subnet_v4,
            gateway_v4,
            subnet_v6,
            gateway_v6,
            endpoints: BTreeMap::new(),
        };
        self.networks.insert(id.to_string(), lease.clone());
        Ok(lease)
    }

    /// Forgets network `id` and every endpoint address in it.
    pub fn release_network(&mut self, id: &str) -> Option<NetworkLease> {
        self.networks.remove(id)
    }

    /// Gives endpoint `endpoint` of network `network` its addresses: the requested static ones
    /// (checked to be in the subnet and free) or the first free ones. Idempotent per endpoint.
    pub fn allocate_endpoint(
        &mut self,
        network: &str,
        endpoint: &str,
        req: &EndpointRequest,
    ) -> Result<EndpointLease, IpamError> {
        let lease = self
            .networks
            .get_mut(network)
            .ok_or_else(|| IpamError::UnknownNetwork {
                network: network.to_string(),
            })?;
        if let Some(existing) = lease.endpoints.get(endpoint) {
            return Ok(*existing);
        }
        let mut used4: BTreeSet<Ipv4Addr> = lease.endpoints.values().map(|e| e.ipv4).collect();
        used4.insert(lease.gateway_v4);
        let mut used6: BTreeSet<Ipv6Addr> =
            lease.endpoints.values().filter_map(|e| e.ipv6).collect();
        used6.extend(lease.gateway_v6);

        let ipv4 = match req.ipv4 {
            Some(a) => {
                let subnet = lease.subnet_v4;
                if !subnet.contains(a) || a == subnet.network() || a == subnet.broadcast() {
                    return Err(IpamError::OutOfSubnet {
                        network: network.to_string(),
                        addr: a.into(),
                        subnet: subnet.into(),
                    });
                }
                if used4.contains(&a) {
                    return Err(IpamError::AddressInUse {
                        network: network.to_string(),
                        addr: a.into(),
                    });
                }
                a
            }
            None => first_free_v4(lease.subnet_v4, &used4).ok_or_else(|| {
                IpamError::SubnetExhausted {
                    network: network.to_string(),
                    subnet: lease.subnet_v4.into(),
                }
            })?,
        };
        let ipv6 =
            match (lease.subnet_v6, req.ipv6) {
                (None, Some(a)) => {
                    return Err(IpamError::Ipv6NotEnabled {
                        network: network.to_string(),
                        addr: a,
                    });
                }
                (None, None) => None,
                (Some(subnet), Some(a)) => {
                    if !subnet.contains(a) || a == subnet.network() {
                        return Err(IpamError::OutOfSubnet {
                            network: network.to_string(),
                            addr: a.into(),
                            subnet: subnet.into(),
                        });
                    }
                    if used6.contains(&a) {
                        return Err(IpamError::AddressInUse {
                            network: network.to_string(),
                            addr: a.into(),
                        });
                    }
                    Some(a)
                }
                (Some(subnet), None) => Some(first_free_v6(subnet, &used6).ok_or_else(|| {
                    IpamError::SubnetExhausted {
                        network: network.to_string(),
                        subnet: subnet.into(),
                    }
                })?),
            };
        let ep = EndpointLease { ipv4, ipv6 };
        lease.endpoints.insert(endpoint.to_string(), ep);
        Ok(ep)
    }

    /// Returns the addresses of `endpoint` to the network's free list.
    pub fn release_endpoint(&mut self, network: &str, endpoint: &str) -> Option<EndpointLease> {
        self.networks
            .get_mut(network)
            .and_then(|n| n.endpoints.remove(endpoint))
    }
}

/// The IPAM state bound to its file; every successful mutation is on disk before it returns.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    pool: Pool,
    state: IpamState,
}

impl Ipam {
    /// Loads the state file at `path`, or starts empty when it does not exist yet.
    pub fn open(path: impl Into<PathBuf>, pool: Pool) -> Result<Self, IpamError> {
        let path = path.into();
        let state = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| IpamError::Corrupt {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IpamState::default(),
            Err(source) => return Err(IpamError::Io { path, source }),
        };
        Ok(Ipam { path, pool, state })
    }

    pub fn state(&self) -> &IpamState {
        &self.state
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn commit<T>(
        &mut self,
        f: impl FnOnce(&mut IpamState) -> Result<T, IpamError>,
    ) -> Result<T, IpamError> {
        let mut next = self.state.clone();
        let out = f(&mut next)?;
        if next != self.state {
            write_atomically(&self.path, &next)?;
            self.state = next;
        }
        Ok(out)
    }

    /// See [`IpamState::allocate_network`]; `host_routes` should exclude default routes.
    pub fn allocate_network(
        &mut self,
        id: &str,
        req: &NetworkRequest,
        host_routes: &[IpNetwork],
    ) -> Result<NetworkLease, IpamError> {
        let pool = self.pool.clone();
        self.commit(|s| s.allocate_network(id, req, &pool, host_routes))
    }

    pub fn release_network(&mut self, id: &str) -> Result<Option<NetworkLease>, IpamError> {
        self.commit(|s| Ok(s.release_network(id)))
    }

    pub fn allocate_endpoint(
        &mut self,
        network: &str,
        endpoint: &str,
        req: &EndpointRequest,
    ) -> Result<EndpointLease, IpamError> {
        self.commit(|s| s.allocate_endpoint(network, endpoint, req))
    }

    pub fn release_endpoint(
        &mut self,
        network: &str,
        endpoint: &str,
    ) -> Result<Option<EndpointLease>, IpamError> {
        self.commit(|s| Ok(s.release_endpoint(network, endpoint)))
    }
}

fn write_atomically(path: &Path, state: &IpamState) -> Result<(), IpamError> {
    write_json_atomically(path, state).map_err(|source| IpamError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` as JSON to `path` so that readers see either the old or the new file, never
/// a mix: temp file in the same directory, fsync, rename over, fsync of the directory.
pub(crate) fn write_json_atomically<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        // data before the rename; the size is part of what fdatasync flushes
        f.sync_data()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net4(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }
    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn default_pool_is_dockers() {
        let p = Pool::default();
        assert_eq!(p.v4.len(), 16);
        assert_eq!(p.v4[0].base, net4("172.17.0.0/16"));
        assert_eq!(p.v4[15].prefix, 20);
        assert_eq!(p.v6[0].prefix, 64);
    }

    #[test]
    fn skips_host_routes_and_own_subnets() {
        let pool = Pool::default();
        let taken = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(
            pick_subnet_v4(&pool.v4, &taken),
            Some(net4("172.19.0.0/16"))
        );
        // a wide host route swallowing the whole 172.16/12 range moves to 192.168/20s
        let taken = [net("172.16.0.0/12"), net("192.168.0.0/24")];
        assert_eq!(
            pick_subnet_v4(&pool.v4, &taken),
            Some(net4("192.168.16.0/20"))
        );
    }

    #[test]
    fn ipv6_subnets_skip_taken() {
        let pool = Pool::default();
        let first = pick_subnet_v6(&pool.v6, &[]).unwrap();
        assert_eq!(first.to_string(), "fd62:6572:7468::/64");
        let second = pick_subnet_v6(&pool.v6, &[first.into()]).unwrap();
        assert_eq!(second.to_string(), "fd62:6572:7468:1::/64");
        let v4_route_is_ignored = pick_subnet_v6(&pool.v6, &[net("10.0.0.0/8")]).unwrap();
        assert_eq!(v4_route_is_ignored, first);
    }

    #[test]
    fn exhausted_pool_is_an_error() {
        let pool = Pool::single(
            net4("10.234.0.0/29"),
            30,
            "fd00:1::/64".parse().unwrap(),
            64,
        )
        .unwrap();
        let mut s = IpamState::default();
        s.allocate_network("a", &NetworkRequest::default(), &pool, &[])
            .unwrap();
        s.allocate_network("b", &NetworkRequest::default(), &pool, &[])
            .unwrap();
        let err = s
            .allocate_network("c", &NetworkRequest::default(), &pool, &[])
            .unwrap_err();
        assert!(matches!(err, IpamError::PoolExhausted { .. }), "{err}");
    }

    #[test]
    fn gateway_is_first_host_and_endpoints_follow() {
        let pool = Pool::single(
            net4("10.234.0.0/16"),
            24,
            "fd00:1::/48".parse().unwrap(),
            64,
        )
        .unwrap();
        let mut s = IpamState::default();
        let n = s
            .allocate_network(
                "n1",
                &NetworkRequest {
                    enable_ipv6: true,
                    ..Default::default()
                },
                &pool,
                &[net("10.234.0.0/24")],
            )
            .unwrap();
        assert_eq!(n.subnet_v4, net4("10.234.1.0/24"));
        assert_eq!(n.gateway_v4, Ipv4Addr::new(10, 234, 1, 1));
        assert_eq!(n.gateway_v6.unwrap().to_string(), "fd00:1::1");
        let e1 = s
            .allocate_endpoint("n1", "c1", &EndpointRequest::default())
            .unwrap();
        assert_eq!(e1.ipv4, Ipv4Addr::new(10, 234, 1, 2));
        assert_eq!(e1.ipv6.unwrap().to_string(), "fd00:1::2");
        // idempotent
        assert_eq!(
            s.allocate_endpoint("n1", "c1", &EndpointRequest::default())
                .unwrap(),
            e1
        );
        let e2 = s
            .allocate_endpoint("n1", "c2", &EndpointRequest::default())
            .unwrap();
        assert_eq!(e2.ipv4, Ipv4Addr::new(10, 234, 1, 3));
        // a released address is reused
        s.release_endpoint("n1", "c1");
        let e3 = s
            .allocate_endpoint("n1", "c3", &EndpointRequest::default())
            .unwrap();
        assert_eq!(e3.ipv4, Ipv4Addr::new(10, 234, 1, 2));
    }

    #[test]
    fn static_addresses_are_checked() {
        let pool = Pool::default();
        let mut s = IpamState::default();
        s.allocate_network(
            "n",
            &NetworkRequest {
                subnet_v4: Some(net4("10.234.7.0/24")),
                ..Default::default()
            },
            &pool,
            &[],
        )
        .unwrap();
        let want = Ipv4Addr::new(10, 234, 7, 50);
        let e = s
            .allocate_endpoint(
                "n",
                "a",
                &EndpointRequest {
                    ipv4: Some(want),
                    ipv6: None,
                },
            )
            .unwrap();
        assert_eq!(e.ipv4, want);
        let dup = s
            .allocate_endpoint(
                "n",
                "b",
                &EndpointRequest {
                    ipv4: Some(want),
                    ipv6: None,
                },
            )
            .unwrap_err();
        assert!(matches!(dup, IpamError::AddressInUse { .. }), "{dup}");
        let gw = s
            .allocate_endpoint(
                "n",
                "b",
                &EndpointRequest {
                    ipv4: Some(Ipv4Addr::new(10, 234, 7, 1)),
                    ipv6: None,
                },
            )
            .unwrap_err();
        assert!(matches!(gw, IpamError::AddressInUse { .. }), "{gw}");
        let out = s
            .allocate_endpoint(
                "n",
                "b",
                &EndpointRequest {
                    ipv4: Some(Ipv4Addr::new(10, 9, 9, 9)),
                    ipv6: None,
                },
            )
            .unwrap_err();
        assert!(matches!(out, IpamError::OutOfSubnet { .. }), "{out}");
        let v6 = s
            .allocate_endpoint(
                "n",
                "b",
                &EndpointRequest {
                    ipv4: None,
                    ipv6: Some("fd00::5".parse().unwrap()),
                },
            )
            .unwrap_err();
        assert!(matches!(v6, IpamError::Ipv6NotEnabled { .. }), "{v6}");
        // the unspecified next address skips the static one
        let next = s
            .allocate_endpoint("n", "c", &EndpointRequest::default())
            .unwrap();
        assert_eq!(next.ipv4, Ipv4Addr::new(10, 234, 7, 2));
    }

    #[test]
    fn static_subnet_overlap_is_refused() {
        let pool = Pool::default();
        let mut s = IpamState::default();
        let req = NetworkRequest {
            subnet_v4: Some(net4("10.234.8.0/24")),
            ..Default::default()
        };
        s.allocate_network("a", &req, &pool, &[]).unwrap();
        let err = s.allocate_network("b", &req, &pool, &[]).unwrap_err();
        assert!(matches!(err, IpamError::SubnetOverlaps { .. }), "{err}");
        let req = NetworkRequest {
            subnet_v4: Some(net4("192.0.2.0/25")),
            ..Default::default()
        };
        let err = s
            .allocate_network("c", &req, &pool, &[net("192.0.2.0/24")])
            .unwrap_err();
        assert!(err.to_string().contains("host route"), "{err}");
    }

    #[test]
    fn state_survives_reopen_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        let mut ipam = Ipam::open(&path, Pool::default()).unwrap();
        let n = ipam
            .allocate_network("n", &NetworkRequest::default(), &[])
            .unwrap();
        let a = ipam
            .allocate_endpoint("n", "a", &EndpointRequest::default())
            .unwrap();
        drop(ipam);
        let mut ipam = Ipam::open(&path, Pool::default()).unwrap();
        assert_eq!(ipam.state().networks["n"].subnet_v4, n.subnet_v4);
        let b = ipam
            .allocate_endpoint("n", "b", &EndpointRequest::default())
            .unwrap();
        assert_ne!(a.ipv4, b.ipv4);
        let m = ipam
            .allocate_network("m", &NetworkRequest::default(), &[])
            .unwrap();
        assert_ne!(m.subnet_v4, n.subnet_v4);
        ipam.release_network("n").unwrap();
        let reopened = Ipam::open(&path, Pool::default()).unwrap();
        assert!(!reopened.state().networks.contains_key("n"));
        // no stray temp files
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn corrupt_file_is_reported_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        fs::write(&path, b"{not json").unwrap();
        let err = Ipam::open(&path, Pool::default()).unwrap_err();
        assert!(err.to_string().contains("ipam.json"), "{err}");
    }
}
