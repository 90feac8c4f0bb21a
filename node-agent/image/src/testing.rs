//! Test images without a registry: a root filesystem made of Debian's static busybox
//! (`busybox-static`, `/bin/busybox`) with one symlink per applet, imported as a one-layer
//! image. Used by this crate's tests and by later crates' tests that need `busybox:latest`.
//!
//! Only builds files under the directory it is given; never touches the host otherwise.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive::{self, ImportOptions, Imported};
use crate::reference::Reference;
use crate::store::Store;

/// Where Debian's `busybox-static` installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The static busybox binary, if installed (`apt-get install busybox-static`).
pub fn busybox_path() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("BERTH_BUSYBOX").unwrap_or_else(|| BUSYBOX.into()));
    path.is_file().then_some(path)
}

/// Fills `root` with a minimal busybox system: `/bin/busybox`, one `/bin/<applet>` symlink
/// per applet, and the usual empty directories plus `/etc/passwd` and `/etc/group`.
pub fn busybox_rootfs(root: &Path) -> io::Result<()> {
    let busybox = busybox_path().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "busybox not found: apt-get install busybox-static",
        )
    })?;
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home", "var", "proc", "sys", "dev",
        "run", "tmp",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::copy(&busybox, root.join("bin/busybox"))?;
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755))?;
    let output = Command::new(&busybox).arg("--list").output()?;
    if !output.status.success() {
        return Err(io::Error::other("busybox --list failed"));
    }
    for applet in String::from_utf8_lossy(&output.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = root.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link)?;
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

/// Builds a busybox root filesystem in a temporary directory under the store root and
/// imports it as `reference` with `CMD ["sh"]` and a default `PATH`.
pub fn import_busybox(
    store: &Store,
    reference: &Reference,
) -> Result<Imported, archive::ArchiveError> {
    let work = store
        .root()
        .join("ingest")
        .join(crate::fsutil::unique_name("busybox-rootfs-"));
    let result = (|| {
        busybox_rootfs(&work).map_err(|source| archive::ArchiveError::Io {
            op: "build busybox rootfs",
            path: work.clone(),
            source,
        })?;
        let options = ImportOptions {
            reference: Some(reference.clone()),
            changes: vec![
                r#"CMD ["sh"]"#.to_owned(),
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ],
            message: Some("busybox test image".to_owned()),
        };
        archive::import_dir(store, &work, &options)
    })();
    let _ = fs::remove_dir_all(&work);
    result
}
