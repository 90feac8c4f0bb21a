//! The container's root filesystem, built inside its new mount namespace: propagation,
//! the spec's mounts (resolved safely inside the rootfs), /dev nodes and links, pivot_root,
//! masked and read-only paths.
//!
//! Runs in the container's init process before exec; it must not touch the host's mount
//! table (the namespace is made non-shared first). Mount targets are opened with
//! `openat2(RESOLVE_IN_ROOT)` and mounted via `/proc/self/fd/N` (CVE-2021-30465).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::cgroups::Layout;
use crate::sys::{self, Kind, SysError, SysResult, ensure_in_root, fd_path, mount};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs: {0}")]
    Sys(#[from] SysError),
    #[error("rootfs: {path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

/// Mount flags and fs data parsed from an OCI mount's options.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: u64,
    /// Flags to clear on a bind remount (e.g. `rw` after a read-only default).
    pub clear: u64,
    pub propagation: Vec<u64>,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

/// Pure: splits mount options into flags, propagation changes and filesystem data.
pub fn parse_options(opts: &[String]) -> MountOptions {
    let mut m = MountOptions::default();
    for o in opts {
        let (set, clear): (MsFlags, MsFlags) = match o.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                m.bind = true;
                continue;
            }
            "rbind" => {
                m.bind = true;
                m.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                m.propagation.push(propagation_flag(o).unwrap_or(0));
                continue;
            }
            // Options runtimes ignore or handle elsewhere.
            "defaults" | "tmpcopyup" | "idmap" | "ridmap" => continue,
            other => {
                m.data.push(other.to_string());
                continue;
            }
        };
        m.flags |= set.bits();
        m.flags &= !clear.bits();
        m.clear |= clear.bits();
    }
    m
}

/// Propagation keyword → mount flags.
pub fn propagation_flag(s: &str) -> Option<u64> {
    let rec = MsFlags::MS_REC.bits();
    Some(match s {
        "private" => MsFlags::MS_PRIVATE.bits(),
        "rprivate" => MsFlags::MS_PRIVATE.bits() | rec,
        "shared" => MsFlags::MS_SHARED.bits(),
        "rshared" => MsFlags::MS_SHARED.bits() | rec,
        "slave" => MsFlags::MS_SLAVE.bits(),
        "rslave" => MsFlags::MS_SLAVE.bits() | rec,
        "unbindable" => MsFlags::MS_UNBINDABLE.bits(),
        "runbindable" => MsFlags::MS_UNBINDABLE.bits() | rec,
        _ => return None,
    })
}

/// What the rootfs setup needs to know about the environment.
pub struct Env<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub in_userns: bool,
    pub new_cgroupns: bool,
    pub cgroup_path: &'a Path,
    pub cgroup_layout: Option<&'a Layout>,
}

/// Steps 1–3 before pivot: isolate propagation, bind the rootfs, mount everything.
pub fn prepare(env: &Env<'_>) -> Result<(), RootfsError> {
    let linux = env.spec.linux().as_ref();
    // Keep the host from seeing our mounts (and us from getting its new ones) by default.
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE.bits() | MsFlags::MS_REC.bits());
    mount(None, "/", None, prop as libc::c_ulong, None)?;
    let root = env.rootfs.to_string_lossy().to_string();
    mount(
        Some(&root),
        &root,
        None,
        (MsFlags::MS_BIND | MsFlags::MS_REC).bits() as libc::c_ulong,
        None,
    )?;
    let root_fd = fs::File::open(env.rootfs).map_err(|e| RootfsError::Invalid {
        path: env.rootfs.to_path_buf(),
        detail: e.to_string(),
    })?;
    let root_fd: OwnedFd = root_fd.into();
    let mut dev_is_tmpfs = false;
    for m in env.spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
        mount_one(env, &root_fd, m)?;
    }
    if dev_is_tmpfs {
        create_devices(env, &root_fd)?;
    }
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        create_device(env, &root_fd, d)?;
    }
    if dev_is_tmpfs {
        dev_links(env.rootfs);
    }
    Ok(())
}

fn mount_one(env: &Env<'_>, root: &OwnedFd, m: &Mount) -> Result<(), RootfsError> {
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(RootfsError::Invalid {
            path: dest.clone(),
            detail: "destination must be absolute".into(),
        });
    }
    if typ == "cgroup" {
        return mount_cgroup(env, root, m, &opts);
    }
    let bind = opts.bind || typ == "bind";
    let source = m.source().as_ref().map(|s| {
        if bind && s.is_relative() {
            env.bundle.join(s)
        } else {
            s.clone()
        }
    });
    let kind = match (&source, bind) {
        (Some(s), true) if fs::metadata(s).map(|md| !md.is_dir()).unwrap_or(false) => Kind::File,
        _ => Kind::Dir,
    };
    let target = ensure_in_root(root.as_raw_fd(), dest, kind)?;
    let tpath = fd_path(&target);
    let data = opts.data.join(",");
    let src = source.as_ref().map(|s| s.to_string_lossy().to_string());
    if bind {
        let mut flags = MsFlags::MS_BIND.bits();
        if opts.recursive {
            flags |= MsFlags::MS_REC.bits();
        }
        mount(src.as_deref(), &tpath, None, flags as libc::c_ulong, None)?;
        // Bind mounts ignore other flags until remounted.
        if opts.flags & !MsFlags::MS_REC.bits() != 0 {
            let reopened = sys::open_in_root(root.as_raw_fd(), dest, libc::O_PATH)?;
            let locked = locked_flags(&fd_path(&reopened));
            let f = opts.flags | locked | (MsFlags::MS_BIND | MsFlags::MS_REMOUNT).bits();
            mount(None, &fd_path(&reopened), None, f as libc::c_ulong, None)?;
        }
    } else {
        let r = mount(
            src.as_deref().or(Some(typ)),
            &tpath,
            Some(typ),
            opts.flags as libc::c_ulong,
            Some(&data),
        );
        match r {
            // Without its own network namespace, sysfs cannot be mounted in a user namespace;
            // bind the host's read-only instead, as runc does.
            Err(e)
                if typ == "sysfs"
                    && env.in_userns
                    && e.source.raw_os_error() == Some(libc::EPERM) =>
            {
                let f = (MsFlags::MS_BIND | MsFlags::MS_REC).bits();
                mount(Some("/sys"), &tpath, None, f as libc::c_ulong, None)?;
            }
            // An mqueue mount needs an IPC namespace we own; skip it when the spec shares the host's.
            Err(e) if typ == "mqueue" && e.source.raw_os_error() == Some(libc::EPERM) => {}
            other => other?,
        }
    }
    if !opts.propagation.is_empty() {
        let reopened = sys::open_in_root(root.as_raw_fd(), dest, libc::O_PATH)?;
        for p in &opts.propagation {
            mount(None, &fd_path(&reopened), None, *p as libc::c_ulong, None)?;
        }
    }
    Ok(())
}

/// Flags a user namespace cannot clear on remount; reading them lets a bind remount keep them.
fn locked_flags(path: &str) -> u64 {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            use nix::sys::statvfs::FsFlags;
            let f = s.flags();
            let mut out = 0;
            if f.contains(FsFlags::ST_NOSUID) {
                out |= MsFlags::MS_NOSUID.bits();
            }
            if f.contains(FsFlags::ST_NODEV) {
                out |= MsFlags::MS_NODEV.bits();
            }
            if f.contains(FsFlags::ST_NOEXEC) {
                out |= MsFlags::MS_NOEXEC.bits();
            }
            out
        }
        Err(_) => 0,
    }
}

/// The cgroup mount: v2 → cgroup2 (or a bind of the container's own cgroup without a
/// cgroup namespace); v1 → a tmpfs with one mount per hierarchy.
fn mount_cgroup(
    env: &Env<'_>,
    root: &OwnedFd,
    m: &Mount,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let dest = m.destination();
    let ro = opts.flags & MsFlags::MS_RDONLY.bits();
    let base = (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC).bits();
    let target = ensure_in_root(root.as_raw_fd(), dest, Kind::Dir)?;
    let Some(layout) = env.cgroup_layout else {
        return Ok(());
    };
    let rel = env.cgroup_path.strip_prefix("/").unwrap_or(env.cgroup_path);
    match layout {
        Layout::V2 { root: host } => {
            if env.new_cgroupns {
                mount(
                    Some("cgroup2"),
                    &fd_path(&target),
                    Some("cgroup2"),
                    (base | ro) as libc::c_ulong,
                    None,
                )?;
            } else {
                let src = host.join(rel).to_string_lossy().to_string();
                mount(
                    Some(&src),
                    &fd_path(&target),
                    None,
                    (MsFlags::MS_BIND | MsFlags::MS_REC).bits() as libc::c_ulong,
                    None,
                )?;
            }
        }
        Layout::V1 { mounts } => {
            mount(
                Some("tmpfs"),
                &fd_path(&target),
                Some("tmpfs"),
                base as libc::c_ulong,
                Some("mode=755"),
            )?;
            let mut done: Vec<&Path> = Vec::new();
            for (_, host_mp) in mounts {
                if done.contains(&host_mp.as_path()) {
                    continue;
                }
                done.push(host_mp);
                let name = host_mp
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let sub = dest.join(&name);
                let t = ensure_in_root(root.as_raw_fd(), &sub, Kind::Dir)?;
                if env.new_cgroupns {
                    let o = name.clone();
                    mount(
                        Some("cgroup"),
                        &fd_path(&t),
                        Some("cgroup"),
                        (base | ro) as libc::c_ulong,
                        Some(&o),
                    )?;
                } else {
                    let src = host_mp.join(rel).to_string_lossy().to_string();
                    mount(
                        Some(&src),
                        &fd_path(&t),
                        None,
                        MsFlags::MS_BIND.bits() as libc::c_ulong,
                        None,
                    )?;
                    if ro != 0 {
                        // The handle taken before mounting points under the new mount: reopen.
                        let t = sys::open_in_root(root.as_raw_fd(), &sub, libc::O_PATH)?;
                        let f = base | ro | (MsFlags::MS_BIND | MsFlags::MS_REMOUNT).bits();
                        mount(None, &fd_path(&t), None, f as libc::c_ulong, None)?;
                    }
                }
                // Co-mounted hierarchies ("cpu,cpuacct") get the usual per-controller links.
                if name.contains(',') {
                    for c in name.split(',') {
                        let _ = symlink(&name, env.rootfs.join(sys::relative(dest)).join(c));
                    }
                }
            }
            if ro != 0 {
                let t = sys::open_in_root(root.as_raw_fd(), dest, libc::O_PATH)?;
                let f = base | ro | (MsFlags::MS_REMOUNT | MsFlags::MS_BIND).bits();
                mount(None, &fd_path(&t), None, f as libc::c_ulong, None)?;
            }
        }
    }
    Ok(())
}

/// (path, type, major, minor) of the devices every container gets.
pub const DEFAULT_DEVICES: &[(&str, u32, u64, u64)] = &[
    ("/dev/null", libc::S_IFCHR, 1, 3),
    ("/dev/zero", libc::S_IFCHR, 1, 5),
    ("/dev/full", libc::S_IFCHR, 1, 7),
    ("/dev/random", libc::S_IFCHR, 1, 8),
    ("/dev/urandom", libc::S_IFCHR, 1, 9),
    ("/dev/tty", libc::S_IFCHR, 5, 0),
];

fn create_devices(env: &Env<'_>, root: &OwnedFd) -> Result<(), RootfsError> {
    // SAFETY: umask cannot fail; the nodes get exactly the mode we give.
    let old = unsafe { libc::umask(0) };
    let r = DEFAULT_DEVICES.iter().try_for_each(|(p, t, ma, mi)| {
        make_node(env, root, Path::new(p), *t, *ma, *mi, 0o666, 0, 0)
    });
    // SAFETY: restoring the previous mask.
    unsafe { libc::umask(old) };
    r
}

fn create_device(env: &Env<'_>, root: &OwnedFd, d: &LinuxDevice) -> Result<(), RootfsError> {
    let t = match d.typ() {
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    let mode = d.file_mode().unwrap_or(0o666);
    make_node(
        env,
        root,
        d.path(),
        t,
        d.major() as u64,
        d.minor() as u64,
        mode,
        d.uid().unwrap_or(0),
        d.gid().unwrap_or(0),
    )
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    env: &Env<'_>,
    root: &OwnedFd,
    path: &Path,
    typ: u32,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), RootfsError> {
    if env.in_userns {
        // mknod is not allowed in a user namespace: bind the host's node instead.
        let t = ensure_in_root(root.as_raw_fd(), path, Kind::File)?;
        let src = path.to_string_lossy().to_string();
        mount(
            Some(&src),
            &fd_path(&t),
            None,
            MsFlags::MS_BIND.bits() as libc::c_ulong,
            None,
        )?;
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let pfd = ensure_in_root(root.as_raw_fd(), parent, Kind::Dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let full = format!("{}/{}", fd_path(&pfd), name);
    let c = sys::cstr(&full);
    // SAFETY: c is a valid path; makedev is pure.
    let rc = unsafe {
        libc::mknod(
            c.as_ptr(),
            typ | (mode & 0o7777),
            libc::makedev(major as u32, minor as u32),
        )
    };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        return Err(sys::err("mknod", path.display()).into());
    }
    // SAFETY: c is a valid path.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
        return Err(sys::err("chown", path.display()).into());
    }
    Ok(())
}

/// The standard /dev symlinks (fd, stdio, ptmx, core).
fn dev_links(rootfs: &Path) {
    let dev = rootfs.join("dev");
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let p = dev.join(name);
        // /dev is our fresh tmpfs, so no symlink can already sit there to redirect us;
        // a plain unlink makes ptmx a link even if a node was created.
        let _ = fs::remove_file(&p);
        let _ = symlink(target, p);
    }
}

/// pivot_root into `rootfs` and detach the old root (runc's trick: pivot onto itself,
/// so no put_old directory is needed).
pub fn pivot(rootfs: &Path) -> SysResult<()> {
    let old = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| sys::errno_err("open", "/", e))?;
    let new = nix::fcntl::open(
        rootfs,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| sys::errno_err("open", rootfs.display(), e))?;
    nix::unistd::fchdir(&new).map_err(|e| sys::errno_err("fchdir", rootfs.display(), e))?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| sys::errno_err("pivot_root", rootfs.display(), e))?;
    nix::unistd::fchdir(&old).map_err(|e| sys::errno_err("fchdir", "old root", e))?;
    // The old root may be shared; make sure unmounting it does not propagate to the host.
    mount(
        None,
        ".",
        None,
        (MsFlags::MS_SLAVE | MsFlags::MS_REC).bits() as libc::c_ulong,
        None,
    )?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| sys::errno_err("umount2", "old root", e))?;
    nix::unistd::chdir("/").map_err(|e| sys::errno_err("chdir", "/", e))?;
    Ok(())
}

/// For roots on ramfs/initramfs, where pivot_root is refused: move the mount and chroot.
pub fn move_root(rootfs: &Path) -> SysResult<()> {
    nix::unistd::chdir(rootfs).map_err(|e| sys::errno_err("chdir", rootfs.display(), e))?;
    mount(
        Some("."),
        "/",
        None,
        MsFlags::MS_MOVE.bits() as libc::c_ulong,
        None,
    )?;
    nix::unistd::chroot(".").map_err(|e| sys::errno_err("chroot", rootfs.display(), e))?;
    nix::unistd::chdir("/").map_err(|e| sys::errno_err("chdir", "/", e))?;
    Ok(())
}

/// After pivot: mask paths (/dev/null over files, read-only empty tmpfs over dirs).
pub fn mask_paths(paths: &[String]) -> SysResult<()> {
    for p in paths {
        let md = match fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if md.is_dir() {
            let f =
                (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
                    .bits();
            mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                f as libc::c_ulong,
                Some("size=0,mode=755"),
            )?;
        } else if !md.file_type().is_symlink() {
            mount(
                Some("/dev/null"),
                p,
                None,
                MsFlags::MS_BIND.bits() as libc::c_ulong,
                None,
            )?;
        }
    }
    Ok(())
}

/// After pivot: bind each path onto itself read-only.
pub fn readonly_paths(paths: &[String]) -> SysResult<()> {
    for p in paths {
        if fs::symlink_metadata(p).is_err() {
            continue;
        }
        let rec = (MsFlags::MS_BIND | MsFlags::MS_REC).bits();
        mount(Some(p), p, None, rec as libc::c_ulong, None)?;
        let f = locked_flags(p)
            | (MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC)
                .bits();
        mount(None, p, None, f as libc::c_ulong, None)?;
    }
    Ok(())
}

/// After pivot: the root read-only.
pub fn readonly_root() -> SysResult<()> {
    let f =
        locked_flags("/") | (MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY).bits();
    mount(None, "/", None, f as libc::c_ulong, None)
}

/// `RAMFS_MAGIC` from linux/magic.h.
const RAMFS_MAGIC: i64 = 0x858458f6;

/// Whether the rootfs lives on ramfs/initramfs (pivot_root refuses those).
pub fn on_ramfs(rootfs: &Path) -> bool {
    nix::sys::statfs::statfs(rootfs)
        .map(|s| s.filesystem_type().0 == RAMFS_MAGIC)
        .unwrap_or(false)
}

/// Whether `p` is a character device (for tests and the ptmx check).
pub fn is_char_device(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let o = parse_options(&v(&["nosuid", "noexec", "mode=755", "size=65536k", "ro"]));
        assert_eq!(
            o.flags,
            (MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY).bits()
        );
        assert_eq!(o.data, v(&["mode=755", "size=65536k"]));
        assert!(!o.bind);
    }

    #[test]
    fn bind_and_propagation() {
        let o = parse_options(&v(&["rbind", "rprivate", "rw"]));
        assert!(o.bind && o.recursive);
        assert_eq!(
            o.propagation,
            vec![(MsFlags::MS_PRIVATE | MsFlags::MS_REC).bits()]
        );
        assert_eq!(o.flags & MsFlags::MS_RDONLY.bits(), 0);
    }

    #[test]
    fn later_option_wins() {
        let o = parse_options(&v(&["ro", "rw"]));
        assert_eq!(o.flags & MsFlags::MS_RDONLY.bits(), 0);
    }

    #[test]
    fn safe_resolution_stays_in_root() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        // A symlink pointing at the host's /etc must resolve to the rootfs' /etc.
        symlink("/etc", d.path().join("evil")).unwrap();
        let root: OwnedFd = fs::File::open(d.path()).unwrap().into();
        let fd = ensure_in_root(root.as_raw_fd(), Path::new("/evil/new-dir"), Kind::Dir).unwrap();
        drop(fd);
        assert!(d.path().join("etc/new-dir").is_dir());
        assert!(!Path::new("/etc/new-dir").exists());
        let f = ensure_in_root(root.as_raw_fd(), Path::new("a/b/file"), Kind::File).unwrap();
        drop(f);
        assert!(d.path().join("a/b/file").is_file());
    }
}
