//! `run`/`exec` with a terminal but no `--console-socket` (an interactive user at a shell):
//! berth-runc receives the pty master itself on a private console socket and copies between
//! its own stdio and the master, forwarding signals and window-size changes, until the
//! container process exits. Lives in the CLI process, never in the container.

use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::termios;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::sys::{self, SysError};

/// A listening console socket in a directory of ours, removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    pub fn bind(dir: &Path) -> Result<ConsoleSocket, SysError> {
        std::fs::create_dir_all(dir).map_err(|e| SysError {
            syscall: "mkdir",
            target: dir.display().to_string(),
            source: e,
        })?;
        let path = dir.join(format!(".console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| SysError {
            syscall: "bind",
            target: path.display().to_string(),
            source: e,
        })?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and takes the pty master it sends.
    pub fn receive(&self) -> Result<OwnedFd, SysError> {
        let (conn, _) = self.listener.accept().map_err(|e| SysError {
            syscall: "accept",
            target: self.path.display().to_string(),
            source: e,
        })?;
        let mut buf = [0u8; 256];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| sys::errno_err("recvmsg", self.path.display(), e))?;
        for c in msg
            .cmsgs()
            .map_err(|e| sys::errno_err("recvmsg", "cmsg", e))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel installed this descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err(SysError {
            syscall: "recvmsg",
            target: self.path.display().to_string(),
            source: io::Error::new(io::ErrorKind::InvalidData, "no pty master received"),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn copy_winsize(from: i32, to: i32) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ on a local winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Pumps stdio ⇄ `master` and forwards the (already blocked) signals in `sigs` to `pid`
/// until it exits; returns its exit code (128+N for signal N).
pub fn proxy(master: OwnedFd, pid: i32, sigs: &SigSet) -> u8 {
    let stdin = io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw);
        copy_winsize(0, master.as_raw_fd());
    }
    let code = pump(&master, pid, sigs);
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, t);
    }
    code
}

fn pump(master: &OwnedFd, pid: i32, sigs: &SigSet) -> u8 {
    let sfd = match SignalFd::with_flags(sigs, SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(_) => return 1,
    };
    let mut m = std::fs::File::from(master.try_clone().expect("dup of the pty master"));
    let mut stdin_open = true;
    let mut master_open = true;
    let mut code: Option<u8> = None;
    let mut buf = [0u8; 8192];
    loop {
        if code.is_none() {
            code = reap(pid);
        }
        if code.is_some() && !master_open {
            return code.unwrap_or(1);
        }
        let stdin = io::stdin();
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open && code.is_none() {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once the process is gone, give the master a short while to drain.
        let timeout = if code.is_some() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        let n = poll(&mut fds, timeout).unwrap_or(0);
        if n == 0 && code.is_some() {
            return code.unwrap_or(1);
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            if let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) | Err(_) => {}
                    Ok(Signal::SIGWINCH) => copy_winsize(0, master.as_raw_fd()),
                    Ok(s) => {
                        let _ = kill(Pid::from_raw(pid), s);
                    }
                }
            }
        }
        let mut i = 1;
        if master_open {
            if ready[i] {
                match m.read(&mut buf) {
                    Ok(0) | Err(_) => master_open = false,
                    Ok(k) => {
                        let mut out = io::stdout();
                        let _ = out.write_all(&buf[..k]).and_then(|_| out.flush());
                    }
                }
            }
            i += 1;
        }
        if stdin_open && code.is_none() && ready.get(i).copied().unwrap_or(false) {
            match io::stdin().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(k) => {
                    let _ = m.write_all(&buf[..k]);
                }
            }
        }
    }
}

/// Reaps exited children; the exit code of `pid` once it is among them.
pub fn reap(pid: i32) -> Option<u8> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => return Some(c as u8),
            Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => return Some(128 + s as u8),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
