//! The replicated state machine: apps and their services, nodes, and tasks, changed only by
//! typed [`Command`]s applied in Raft log order.
//!
//! It owns validation of every command against the current state and the deterministic
//! application of it. It must not read clocks, draw random numbers or do I/O: timestamps and
//! ids arrive inside the commands, chosen by the proposer.

mod app;
mod command;
pub mod from_compose;
mod node;
pub mod overlay;
pub mod placement;
mod restart;
mod secret;
mod state;
mod task;

pub use app::{
    AppSpec, Dependency, DependencyCondition, FailureAction, Mode, PortMode, Protocol,
    PublishedPort, Resources, ServiceSpec, UpdateConfig, UpdateOrder,
};
pub use command::{Applied, ApplyError, Command, UpdateState};
pub use from_compose::{FromComposeError, app_spec, service_spec};
pub use node::{Availability, Node, NodeResources, NodeStatus, Platform, Role};
pub use placement::{Constraint, ConstraintError, ConstraintKey, ConstraintOp, Placement};
pub use restart::{RestartCondition, RestartPolicy, RestartPolicyError};
pub use secret::{ExternalSecret, StoredSecret, check_name as check_secret_name};
pub use state::{
    AppFiles, AppRecord, ClusterSecrets, MAX_REPLICAS, ServiceRecord, State, Takedown,
    decode_reply, encode,
};
pub use task::{DesiredState, Health, NodeId, Task, TaskId, TaskState, TaskStatus, Timestamp};
