//! Terminals: a pty made inside the container's devpts, its master handed to the caller
//! over the `--console-socket` with SCM_RIGHTS (as runc does: the payload is the pty name),
//! its slave becoming the process's controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

use crate::sys::{self, SysResult};

/// Opens a new pty, sends its master on `socket`, and makes the slave stdio + ctty.
pub fn setup(socket: RawFd) -> SysResult<()> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| sys::errno_err("posix_openpt", "/dev/ptmx", e))?;
    nix::pty::grantpt(&master).map_err(|e| sys::errno_err("grantpt", "pty", e))?;
    nix::pty::unlockpt(&master).map_err(|e| sys::errno_err("unlockpt", "pty", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| sys::errno_err("ptsname", "pty", e))?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .map_err(|e| sys::SysError {
            syscall: "open",
            target: name.clone(),
            source: e,
        })?
        .into();
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| sys::errno_err("sendmsg", "console socket", e))?;
    drop(master);
    // SAFETY: dup2 onto stdio and TIOCSCTTY on a descriptor we own.
    unsafe {
        for target in 0..3 {
            if libc::dup2(slave.as_raw_fd(), target) < 0 {
                return Err(sys::err("dup2", &name));
            }
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            return Err(sys::err("ioctl TIOCSCTTY", &name));
        }
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;
