//! Leaving the launcher behind (double fork, new session, stdio on /dev/null) and the
//! small descriptor helpers the shim's setup needs. Runs only while the shim is still
//! single-threaded, which is always.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, setsid};

use super::{SupervisorError, io_at, sys};

/// Detaches from the launcher: fork (the launcher's child exits once the grandchild exists),
/// `setsid` so no process-group or session signal of the agent reaches us, fork again so we
/// are not a session leader, and point stdio at /dev/null. Returns the launcher's stdout,
/// kept close-on-exec, for the one readiness line.
pub(super) fn daemonize() -> Result<OwnedFd, SupervisorError> {
    // SAFETY: the shim is single-threaded until here, so the child may run any code.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { child } => {
            let code = match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, c)) => c,
                _ => 1,
            };
            std::process::exit(code);
        }
        ForkResult::Child => {}
    }
    setsid().map_err(sys("setsid"))?;
    // SAFETY: still single-threaded.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => {}
    }
    let ready = fcntl(io::stdout(), FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(sys("dup stdout"))?;
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_at(Path::new("/dev/null")))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(SupervisorError::Sys {
                what: "dup2 /dev/null",
                source: Errno::last(),
            });
        }
    }
    std::env::set_current_dir("/").map_err(io_at(Path::new("/")))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(ready) })
}

/// Binds a unix socket that only root can connect to: the umask makes it 0600 from the
/// start, so there is no window in which it is open to others.
pub(super) fn bind_private(path: &Path) -> Result<UnixListener, SupervisorError> {
    let _ = fs::remove_file(path);
    let old = umask(Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    umask(old);
    let l = l.map_err(io_at(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_at(path))?;
    l.set_nonblocking(true).map_err(io_at(path))?;
    Ok(l)
}
