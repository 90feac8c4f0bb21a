//! `exec`: a new process in a running container, through the runtime's `exec` (which joins
//! the container's namespaces and cgroup and applies its security settings). The caller
//! runs the returned command with its own stdio, so exec'd processes talk to the terminal
//! directly and their exit code is the command's.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use super::record::Status;
use super::{ContainerError, Containers, io_err, user};

/// What `exec` runs and how.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    /// With `tty`: where the runtime sends the pty master (see [`ConsoleSocket`]).
    pub console_socket: Option<PathBuf>,
}

/// A listening unix socket for the runtime's `--console-socket`: the runtime connects and
/// sends the master end of the exec'd process's pty (`SCM_RIGHTS`). The socket file lives
/// in a private temporary directory, removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    dir: PathBuf,
}

impl ConsoleSocket {
    /// Binds a socket in a new directory under `parent` (mode 0700).
    pub fn bind(parent: &Path) -> Result<ConsoleSocket, ContainerError> {
        let dir = parent.join(format!(
            "console-{}-{}",
            std::process::id(),
            super::names::new_id()
                .map(|i| i[..8].to_string())
                .unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("chmod", &dir))?;
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).map_err(io_err("bind", &path))?;
        Ok(ConsoleSocket { listener, dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Waits for the runtime to send the pty master; gives up when `alive` says the runtime
    /// has exited without sending one.
    pub fn receive(&self, mut alive: impl FnMut() -> bool) -> Result<OwnedFd, ContainerError> {
        let path = self.path();
        self.listener
            .set_nonblocking(true)
            .map_err(io_err("listen", &path))?;
        let conn = loop {
            match self.listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !alive() {
                        return Err(ContainerError::Runtime {
                            id: String::new(),
                            what: "exec",
                            reason: "the runtime exited without sending a terminal".into(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(io_err("accept", &path)(e)),
            }
        };
        conn.set_nonblocking(false).map_err(io_err("read", &path))?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| io_err("recvmsg", &path)(e.into()))?;
        let mut master = None;
        for c in msg
            .cmsgs()
            .map_err(|e| io_err("recvmsg", &path)(e.into()))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: the kernel just installed these descriptors for us; each is
                    // owned exactly once here.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if master.is_none() {
                        master = Some(owned);
                    }
                }
            }
        }
        master.ok_or_else(|| ContainerError::Runtime {
            id: String::new(),
            what: "exec",
            reason: "the runtime sent no terminal on the console socket".into(),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Containers {
    /// The runtime command that runs `opts` in container `query`.
    pub fn exec_command(&self, query: &str, opts: &ExecOptions) -> Result<Command, ContainerError> {
        let mut record = self.resolve(query)?;
        self.observe(&mut record);
        if record.state.status != Status::Running {
            return Err(ContainerError::State {
                id: record.short_id().into(),
                state: "not running",
                hint: "start it before exec",
            });
        }
        if opts.args.is_empty() {
            return Err(ContainerError::NoCommand);
        }
        let mut cmd = Command::new(&self.config.runtime);
        cmd.arg("--root").arg(&self.config.run_root).arg("exec");
        if opts.tty {
            cmd.arg("--tty");
            if let Some(sock) = &opts.console_socket {
                cmd.arg("--console-socket").arg(sock);
            }
        }
        for e in &opts.env {
            cmd.arg("--env").arg(e);
        }
        if let Some(w) = &opts.workdir {
            cmd.arg("--cwd").arg(w);
        }
        if let Some(u) = &opts.user {
            let rootfs = self.rootfs_of(&record.id)?;
            let (uid, gid, _) = user::resolve(&rootfs, Some(u))?;
            cmd.arg("--user").arg(format!("{uid}:{gid}"));
        }
        cmd.arg(&record.id).args(&opts.args);
        Ok(cmd)
    }
}
