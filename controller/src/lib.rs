//! The berth controller: the Raft-replicated store of apps, services, tasks, nodes,
//! networks and volumes; the orchestrator that turns desired replicas into tasks; the
//! scheduler that places tasks on nodes; and the dispatcher that streams assignments to
//! node agents.
//!
//! It consumes the canonical `App` produced by `berth-spec` and never depends on the node
//! agent. Work on it starts with the "berthd and the Compose lifecycle" issue.

pub mod durable;
pub mod orchestrator;
pub mod raft_log;
pub mod raft_node;
pub mod scheduler;
pub mod store;
