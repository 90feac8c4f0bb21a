//! The embedded DNS server: service discovery inside each berth network.
//!
//! Design: one UDP and one TCP socket per network, bound to the network's gateway address on
//! port 53 in the host namespace (no socket per container, no namespace switching); each
//! container's `/etc/resolv.conf` names that gateway. A query is answered from the [`Registry`] of the
//! network the socket belongs to: service names (every running replica, rotated per query
//! for round-robin), `tasks.<service>`, container names and network aliases. Other names are
//! forwarded, as raw packets, to the querying container's own `dns:` servers when it has
//! some, else to the host's upstream resolvers (see [`upstreams_from_resolv_conf`]); internal
//! networks get no forwarding (they have no way out). A, AAAA and PTR (for container
//! addresses) are answered locally.
//!
//! This module must not touch links, addresses or firewall rules.
//!
//! Files: `registry` (who answers to which name), `answer` (building replies: pure),
//! `server` (sockets, forwarding, listeners).

mod answer;
mod registry;
mod server;

pub use answer::{answer_locally, encode_for_udp};
pub use registry::{DnsEntry, Registry};
pub use server::{DnsError, DnsServer, upstreams_from_resolv_conf};
