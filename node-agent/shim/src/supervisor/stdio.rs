//! The container's stdio: `runtime create` with pipes, or with a console socket over which
//! the runtime hands back the pty master; and the pty's window size. Setup-time code: it
//! waits for the runtime by pid and never reaps anything else.

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::pipe2;

use super::daemon::bind_private;
use super::{CONSOLE_TIMEOUT, SupervisorError, io_at, sys};
use crate::log::{LineSplitter, Stream};
use crate::options::ShimArgs;
use crate::protocol::{FRAME_STDERR, FRAME_STDOUT};
use crate::runtime::{Runtime, RuntimeError};
use crate::state;

/// One output of the container: a pipe (stdout, stderr) or the pty master.
pub(super) struct Output {
    pub(super) fd: OwnedFd,
    pub(super) stream: Stream,
    pub(super) frame: u8,
    pub(super) splitter: LineSplitter,
}

pub(super) type Stdio3 = (Vec<Output>, Option<OwnedFd>, Option<OwnedFd>);

/// `runtime create` with pipes: the runtime passes its own stdio to the container's init,
/// so the write ends go to the runtime and the shim keeps the read ends.
pub(super) fn create_with_pipes(
    runtime: &Runtime,
    mut create: Command,
    args: &ShimArgs,
    id: &str,
) -> Result<Stdio3, SupervisorError> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    let (stdin_theirs, stdin_ours) = if args.stdin {
        let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
        (Stdio::from(r), Some(w))
    } else {
        (Stdio::null(), None)
    };
    create
        .arg(id)
        .stdin(stdin_theirs)
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let status = create
        .spawn()
        .and_then(|mut c| c.wait())
        .map_err(|source| RuntimeError::Spawn {
            runtime: runtime.path.clone(),
            source,
        })?;
    // Our copies of the write ends go now, so end-of-file means the container closed them.
    drop(create);
    set_nonblocking(out_r.as_fd())?;
    set_nonblocking(err_r.as_fd())?;
    if !status.success() {
        let mut msg = [0u8; 4096];
        let n = nix::unistd::read(&err_r, &mut msg).unwrap_or(0);
        return Err(runtime
            .failure("create", &String::from_utf8_lossy(&msg[..n]))
            .into());
    }
    if let Some(w) = &stdin_ours {
        set_nonblocking(w.as_fd())?;
    }
    let outputs = vec![
        Output {
            fd: out_r,
            stream: Stream::Stdout,
            frame: FRAME_STDOUT,
            splitter: LineSplitter::default(),
        },
        Output {
            fd: err_r,
            stream: Stream::Stderr,
            frame: FRAME_STDERR,
            splitter: LineSplitter::default(),
        },
    ];
    Ok((outputs, stdin_ours, None))
}

/// `runtime create --console-socket`: the runtime connects to our socket and sends the pty
/// master as SCM_RIGHTS while it creates the container.
pub(super) fn create_with_console(
    runtime: &Runtime,
    mut create: Command,
    dir: &Path,
    id: &str,
) -> Result<OwnedFd, SupervisorError> {
    let sock_path = dir.join(state::CONSOLE_SOCKET);
    let listener = bind_private(&sock_path)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    set_nonblocking(err_r.as_fd())?;
    create
        .arg("--console-socket")
        .arg(&sock_path)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err_w));
    let mut child = create.spawn().map_err(|source| RuntimeError::Spawn {
        runtime: runtime.path.clone(),
        source,
    })?;
    drop(create);
    let outcome = receive_console(&listener, &mut child);
    let _ = fs::remove_file(&sock_path);
    let status = match child.wait() {
        Ok(s) => s,
        Err(source) => {
            return Err(RuntimeError::Spawn {
                runtime: runtime.path.clone(),
                source,
            }
            .into());
        }
    };
    if !status.success() {
        let mut msg = [0u8; 4096];
        let n = nix::unistd::read(&err_r, &mut msg).unwrap_or(0);
        return Err(runtime
            .failure("create", &String::from_utf8_lossy(&msg[..n]))
            .into());
    }
    match outcome {
        Ok(Some(master)) => Ok(master),
        // The container was created but is of no use without its terminal.
        Ok(None) => {
            let _ = runtime.delete(true);
            Err(SupervisorError::NoConsole { path: sock_path })
        }
        Err(e) => {
            let _ = runtime.delete(true);
            Err(e)
        }
    }
}

/// The shim's ends of a terminal container's stdio: the master, read as output and written
/// as input.
pub(super) fn pty_stdio(master: OwnedFd, dir: &Path) -> Result<Stdio3, SupervisorError> {
    set_nonblocking(master.as_fd())?;
    let input = master.try_clone().map_err(io_at(dir))?;
    let out = master.try_clone().map_err(io_at(dir))?;
    let outputs = vec![Output {
        fd: out,
        stream: Stream::Stdout,
        frame: FRAME_STDOUT,
        splitter: LineSplitter::default(),
    }];
    Ok((outputs, Some(input), Some(master)))
}

/// Waits for the runtime to connect and send the master, or to exit without doing so.
fn receive_console(
    listener: &UnixListener,
    child: &mut Child,
) -> Result<Option<OwnedFd>, SupervisorError> {
    let deadline = Instant::now() + CONSOLE_TIMEOUT;
    let mut exited = false;
    while Instant::now() < deadline {
        if let Ok((conn, _)) = listener.accept() {
            return recv_fd(&conn).map(Some);
        }
        if exited {
            // It exited and nothing was queued on the socket.
            return Ok(None);
        }
        exited = matches!(child.try_wait(), Ok(Some(_)));
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(50u8));
    }
    Ok(None)
}

fn recv_fd(conn: &UnixStream) -> Result<OwnedFd, SupervisorError> {
    conn.set_nonblocking(false)
        .map_err(io_at(Path::new("console socket")))?;
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("recvmsg console"))?;
    let cmsgs = msg.cmsgs().map_err(sys("recvmsg console"))?;
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            for &extra in &fds[1..] {
                // SAFETY: the kernel just installed these descriptors for us.
                drop(unsafe { OwnedFd::from_raw_fd(extra) });
            }
            // SAFETY: as above; this one we keep.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(SupervisorError::Sys {
        what: "recvmsg console: no descriptor",
        source: Errno::EBADMSG,
    })
}

pub(super) fn set_window_size(master: &OwnedFd, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives for the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

pub(super) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), SupervisorError> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(sys("F_GETFL"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(sys("F_SETFL"))?;
    Ok(())
}
