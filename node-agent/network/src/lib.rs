//! berth-network: bridge networks, IPAM, NAT and published ports with nftables, embedded DNS
//! for service discovery, and volumes.
