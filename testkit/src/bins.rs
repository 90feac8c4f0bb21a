//! The workspace's sibling binaries (`berthd`, `berth-runc`, `berth-shim`, `berth-init`,
//! `berth-dns`) next to a test's own binary: found there, or built once with cargo when
//! `cargo test -p <crate>` did not build them. It does not guess where the binaries are:
//! the caller names the directory (from its own `env!("CARGO_BIN_EXE_…")` or
//! [`from_test_exe`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// A binary of the workspace and the package that builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bin {
    pub name: &'static str,
    pub package: &'static str,
}

impl Bin {
    pub const fn new(name: &'static str, package: &'static str) -> Bin {
        Bin { name, package }
    }
}

pub const BERTHD: Bin = Bin::new("berthd", "berth-daemon");
pub const RUNC: Bin = Bin::new("berth-runc", "berth-runtime");
pub const SHIM: Bin = Bin::new("berth-shim", "berth-shim");
pub const INIT: Bin = Bin::new("berth-init", "berth-shim");
pub const DNS: Bin = Bin::new("berth-dns", "berth-network");

/// What a container needs: the runtime, the shim and init.
pub const CONTAINER: &[Bin] = &[RUNC, SHIM, INIT];
/// [`CONTAINER`] plus the embedded DNS server of user-defined networks.
pub const NETWORKED: &[Bin] = &[RUNC, SHIM, INIT, DNS];

/// The directory holding the binary at `exe` (a `CARGO_BIN_EXE_…` path).
pub fn dir_of(exe: &str) -> PathBuf {
    Path::new(exe).parent().expect("bin dir").to_path_buf()
}

/// `target/<profile>` for a test binary of a crate that owns no binary: the test runs from
/// `target/<profile>/deps`.
pub fn from_test_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Builds every binary of `bins` missing from `dir` (`cargo build -p <package> --bins`);
/// threads of one test binary wait for one build instead of racing cargo.
pub fn ensure(dir: &Path, bins: &[Bin]) {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if bins.iter().all(|b| dir.join(b.name).is_file()) {
        return;
    }
    let mut packages: Vec<&str> = bins.iter().map(|b| b.package).collect();
    packages.sort_unstable();
    packages.dedup();
    // bounded like every child of a test: a wedged build fails instead of hanging CI
    let mut cargo = Command::new("timeout");
    cargo.args(["--kill-after=10", "1800", env!("CARGO"), "build"]);
    for p in &packages {
        cargo.args(["-p", p]);
    }
    let status = cargo.arg("--bins").status().expect("cargo build");
    assert!(
        status.success(),
        "building {} failed",
        bins.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
    );
}
