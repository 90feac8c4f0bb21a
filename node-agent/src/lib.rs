//! The berth node agent: reconciles the tasks assigned to this node against what runs here,
//! using the local runtime stack — the image store (`berth-image`), the OCI runtime and shim
//! (`berth-runtime`, `berth-shim`) and bridge networking (`berth-network`).
//!
//! [`container`] is the node-local container layer (create, start, stop, remove, exec,
//! logs, inspect, stats, list) over `<data-root>/containers/`; [`volume`] is the named
//! volume store under `<data-root>/volumes/`. Both are used by the CLI directly and by the
//! daemon later, unchanged.
//!
//! [`worker`] reconciles the tasks the controller assigns to this node.
//!
//! The agent never depends on the controller; it talks to it through the API types only.

pub mod container;
pub mod task_files;
pub mod volume;
pub mod worker;
