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

/// Regular files under `dir` (recursively) whose bytes contain `needle`: how a test checks
/// that a secret never reached the disk in clear.
pub fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && std::fs::read(entry.path())
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(entry.path());
            }
        }
    }
    hits
}

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
