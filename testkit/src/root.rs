//! A test's data root: a temp dir with Debian's static busybox imported as
//! `busybox:latest`, and berth's own container layer over it, which removes whatever a
//! test left (containers, their mounts, the data root's networks and nft table) even when
//! the test failed. It runs no container itself.

use std::path::Path;

use berth_image::{Reference, Store};
use berth_node_agent::container::{Config, ContainerError, Containers};

/// The OCI runtime root every test uses, as berth does by default.
pub const RUN_ROOT: &str = "/run/berth/runc";

/// A fresh temp dir named `<prefix>…` with busybox imported into its image store.
pub fn busybox_root(prefix: &str) -> tempfile::TempDir {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    import_busybox(root.path());
    root
}

/// Imports busybox as `busybox:latest` into the image store of `data_root`.
pub fn import_busybox(data_root: &Path) {
    let store = Store::open(data_root.join("image")).expect("store");
    berth_image::testing::import_busybox(&store, &Reference::parse("busybox:latest").expect("ref"))
        .expect("import busybox (apt-get install busybox-static)");
}

/// berth's container layer over `data_root`, with the runtime, shim and init of `bin_dir`.
pub fn containers(data_root: &Path, bin_dir: &Path) -> Containers {
    open_containers(data_root, Path::new(RUN_ROOT), bin_dir).expect("containers")
}

/// The container layer over `data_root` with runtime root `run_root`; an error rather than a
/// panic, for drop guards (a panic while unwinding aborts the whole test binary).
pub fn open_containers(
    data_root: &Path,
    run_root: &Path,
    bin_dir: &Path,
) -> Result<Containers, ContainerError> {
    Containers::open(Config {
        data_root: data_root.to_path_buf(),
        run_root: run_root.to_path_buf(),
        runtime: bin_dir.join("berth-runc"),
        shim: bin_dir.join("berth-shim"),
        init: bin_dir.join("berth-init"),
    })
}

/// Force-removes every container of `c` (and with `volumes`, their anonymous volumes),
/// after finishing the removals a killed daemon left half done (their shim directories and
/// endpoints would outlive the test otherwise); errors are ignored: this is cleanup after a
/// test that may have failed anywhere.
pub fn remove_containers(c: &Containers, volumes: bool) {
    c.finish_interrupted_removals();
    for id in c.ids().unwrap_or_default() {
        let _ = c.remove_with_volumes(&id, true, volumes);
    }
}

/// [`remove_containers`], then the data root's networks (bridges, nft table): the teardown
/// of a data root nothing else is still using.
pub fn clean(data_root: &Path, bin_dir: &Path) {
    if let Ok(c) = open_containers(data_root, Path::new(RUN_ROOT), bin_dir) {
        remove_containers(&c, false);
        let _ = c.remove_networks();
    }
}
