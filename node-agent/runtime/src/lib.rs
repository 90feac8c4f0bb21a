//! berth-runtime: berth's OCI runtime (runc-compatible `berth-runc`) as a library.
//!
//! The library is meant for single-threaded callers: creating a container forks, and the
//! children set up namespaces before exec. The shim and the agent call it from a dedicated
//! process (or exec `berth-runc`), never from a tokio worker.

pub mod cgroups;
mod console;
pub mod create;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod memfd;
pub mod namespaces;
pub mod ops;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sync;
pub mod sys;
pub mod tty;

pub use create::{CreateOptions, create};
pub use error::ContainerError;
pub use exec::{ExecOptions, exec};
pub use seccomp::default_seccomp;
