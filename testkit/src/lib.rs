//! Shared test support for berth's integration tests: finding and building the workspace
//! binaries, bounded child processes and daemons, waiting on conditions with a deadline, the
//! `ip_forward` guard, free loopback ports, Debian's `docker-registry` on 127.0.0.1 and (with
//! the `containers` feature) data roots with busybox imported and their cleanup.
//!
//! This crate is a `[dev-dependencies]` entry only and must never become a normal
//! dependency of a berth crate: it panics on failure by design, which is right in a test and
//! wrong anywhere else. It does not know which binary a test drives: `env!("CARGO_BIN_EXE_…")`
//! only resolves in the package that owns the binary, so callers pass paths in.

pub mod bins;
pub mod forward;
pub mod net;
pub mod process;
pub mod registry;
#[cfg(feature = "containers")]
pub mod root;
pub mod wait;

pub use bins::Bin;
pub use forward::IpForward;
pub use net::free_port;
pub use process::{bounded, output_within};
pub use registry::Registry;
pub use wait::{tail, wait_for, wait_for_explained};

/// Whether the test runs as root (namespaces, mounts, bridges and nftables need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns from the calling test, saying so, unless it runs as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}
