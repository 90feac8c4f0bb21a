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
//! The sockets live in their own process, `berth-dns` (one per state dir, like Podman's
//! aardvark-dns), so names keep resolving whichever process connected the containers and
//! across agent restarts: [`Networks`](crate::networks::Networks) writes the state file
//! (`state`) and starts or signals the server (`control`); the server (`service`) follows
//! the file.
//!
//! This module must not touch links, addresses or firewall rules.
//!
//! Files: `registry` (who answers to which name), `answer` (building replies: pure),
//! `server` (sockets, forwarding, listeners), `state` (the file), `service` (the server
//! process's loop), `control` (starting and signalling it).

mod answer;
pub mod control;
mod registry;
mod server;
pub mod service;
pub mod state;

pub use answer::{answer_locally, encode_for_udp};
pub use control::{ControlError, DnsControl};
pub use registry::{DnsEntry, NetnsId, Registry};
pub use server::{DnsError, DnsServer, upstreams_from_resolv_conf};
pub use state::{DnsNetwork, DnsState, StateSource};
