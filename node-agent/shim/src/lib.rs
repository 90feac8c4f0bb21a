//! berth-shim: one small supervisor process per container. It starts the container through
//! the OCI runtime's command line, owns its stdio and writes it to a JSON-lines log, reaps it,
//! records its exit status, and keeps running when the agent dies. The crate also holds the
//! agent's client for it ([`Shim`], [`ShimHandle`], [`recover`]) and `berth-init`, the
//! minimal reaping init for `init: true`. See `docs/shim.md`.

pub mod client;
pub mod init;
pub mod log;
pub mod options;
pub mod protocol;
pub mod recover;
pub mod runtime;
pub mod state;
pub mod supervisor;
pub mod time;

pub use client::{Attach, Shim, ShimError, ShimHandle, ShimOptions};
pub use options::ShimArgs;
pub use protocol::{ContainerState, Status};
pub use recover::{Recovered, RecoveredContainer, recover};
pub use state::ExitStatus;
