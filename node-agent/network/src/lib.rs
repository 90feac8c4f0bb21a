//! berth-network: bridge networks, IPAM, NAT and published ports with nftables, and the
//! embedded DNS server for service discovery.
//!
//! Containers are reached through their network namespace path (`/proc/<pid>/ns/net` or
//! `/run/netns/<name>`); nothing here knows Compose or how containers are started.

pub mod bridge;
pub mod dns;
pub mod etc_files;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod networks;
pub mod overlay;

/// Address types of the network API (subnets), for callers that build requests.
pub use ipnetwork;
