//! Thin, checked wrappers over the syscalls the runtime needs and `nix` does not cover
//! (openat2, mount onto an fd, close_range, memfd sealing), each error naming the syscall.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

/// A failed syscall with what it was applied to.
#[derive(Debug, thiserror::Error)]
#[error("{syscall} {target}: {source}")]
pub struct SysError {
    pub syscall: &'static str,
    pub target: String,
    pub source: io::Error,
}

pub type SysResult<T> = Result<T, SysError>;

pub(crate) fn err(syscall: &'static str, target: impl std::fmt::Display) -> SysError {
    SysError {
        syscall,
        target: target.to_string(),
        source: io::Error::last_os_error(),
    }
}

pub(crate) fn errno_err(
    syscall: &'static str,
    target: impl std::fmt::Display,
    e: nix::errno::Errno,
) -> SysError {
    SysError {
        syscall,
        target: target.to_string(),
        source: io::Error::from_raw_os_error(e as i32),
    }
}

pub(crate) fn cstr(s: &str) -> CString {
    // Paths and strings with NUL bytes cannot reach the kernel; cut at the NUL.
    CString::new(s.split('\0').next().unwrap_or("")).unwrap_or_default()
}

/// `openat2(root, path, O_PATH|O_CLOEXEC, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)`: `path`
/// is resolved as if `root` were `/`, so symlinks (even swapped in by the container) cannot
/// lead outside it.
pub fn open_in_root(root: RawFd, path: &Path, flags: i32) -> SysResult<OwnedFd> {
    let rel = relative(path);
    let c = cstr(&rel.to_string_lossy());
    // SAFETY: open_how is plain old data; all-zero is its "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: c and how are valid for the call; the result is a new fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(err("openat2", path.display()));
    }
    // SAFETY: the kernel returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `path` with leading `/` and `.` removed (`..` is kept; RESOLVE_IN_ROOT clamps it).
pub fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// What to create when a mount target is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Opens `path` inside `root` (O_PATH), creating missing components — directories, and the
/// last one as `kind` — each relative to an already safely-opened parent.
pub fn ensure_in_root(root: RawFd, path: &Path, kind: Kind) -> SysResult<OwnedFd> {
    match open_in_root(root, path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.source.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let rel = relative(path);
    let comps: Vec<_> = rel.components().collect();
    let mut cur = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let parent = if cur.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            cur.clone()
        };
        cur.push(c);
        match open_in_root(root, &cur, libc::O_PATH) {
            Ok(_) => continue,
            Err(e) if e.source.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let pfd = open_in_root(root, &parent, libc::O_PATH | libc::O_DIRECTORY)?;
        let name = cstr(&c.as_os_str().to_string_lossy());
        let last = i + 1 == comps.len();
        // SAFETY: pfd is a directory fd and name a valid C string.
        let rc = unsafe {
            if last && kind == Kind::File {
                let fd = libc::openat(
                    pfd.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                    0o644,
                );
                if fd >= 0 {
                    libc::close(fd);
                }
                fd.min(0)
            } else {
                libc::mkdirat(pfd.as_raw_fd(), name.as_ptr(), 0o755)
            }
        };
        if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(err("mkdirat", cur.display()));
        }
    }
    open_in_root(root, path, libc::O_PATH)
}

/// The magic-link path of an fd, to hand to mount(2) instead of a re-resolvable path.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// mount(2) with optional source/type/data.
pub fn mount(
    src: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    let src_c = src.map(cstr);
    let fs_c = fstype.map(cstr);
    let data_c = data.filter(|d| !d.is_empty()).map(cstr);
    let t = cstr(target);
    let p = |o: &Option<CString>| o.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is NULL or a valid C string living across the call.
    let rc = unsafe {
        libc::mount(
            p(&src_c),
            t.as_ptr(),
            p(&fs_c),
            flags,
            p(&data_c) as *const libc::c_void,
        )
    };
    if rc != 0 {
        return Err(err(
            "mount",
            format!("{} on {target}", src.unwrap_or("none")),
        ));
    }
    Ok(())
}

/// Marks every fd from `first` up close-on-exec, so nothing leaks into the container
/// (CVE-2024-21626) while the runtime can still use them until exec.
pub fn cloexec_from(first: u32) -> SysResult<()> {
    // SAFETY: close_range only changes descriptor flags.
    let rc = unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd.
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| SysError {
        syscall: "close_range",
        target: "fds".into(),
        source: e,
    })?;
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first as i32)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on a descriptor number is harmless even if it is stale.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Whether two namespace files are the same namespace.
pub fn same_ns(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.ino() == y.ino() && x.dev() == y.dev(),
        _ => false,
    }
}

/// Number of threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1)
}
