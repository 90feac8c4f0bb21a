//! `exec`: a new process inside a running container — same namespaces (joined through
//! `/proc/PID/ns`), same cgroup, the container's seccomp profile, and the process settings
//! given (or the container's own, with args/env/cwd/user overridden).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::create::{finish, write_pid_file};
use crate::error::ContainerError;
use crate::namespaces;
use crate::ops::{cgroup_of, status};
use crate::process::Prepared;
use crate::state::{Saved, Status};
use crate::sync::{Channel, Msg};
use crate::sys;

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A full process description (`--process FILE`); otherwise built from the fields below.
    pub process: Option<Process>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `UID[:GID]`.
    pub user: Option<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
}

/// Pure: the process to run, from the container's process and the exec options.
pub fn build_process(base: &Process, o: &ExecOptions) -> Result<Process, ContainerError> {
    if let Some(p) = &o.process {
        return Ok(p.clone());
    }
    if o.args.is_empty() {
        return Err(ContainerError::Invalid(
            "exec needs a command (args or --process)".into(),
        ));
    }
    let mut p = base.clone();
    p.set_args(Some(o.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(o.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(c) = &o.cwd {
        p.set_cwd(c.clone());
    }
    if let Some(u) = &o.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let bad = || ContainerError::Invalid(format!("--user {u}: expected UID[:GID]"));
        let mut user = p.user().clone();
        user.set_uid(uid.parse().map_err(|_| bad())?);
        user.set_gid(gid.parse().map_err(|_| bad())?);
        user.set_additional_gids(None);
        p.set_user(user);
    }
    p.set_terminal(Some(o.tty));
    Ok(p)
}

/// Starts the process; returns its host pid (the caller decides whether to wait).
pub fn exec(root: &Path, id: &str, o: &ExecOptions) -> Result<i32, ContainerError> {
    // The children run arbitrary code after fork; that is only sound when no other thread
    // can hold a lock (allocator, stdio) at the moment of the fork.
    if crate::sys::thread_count() > 1 {
        return Err(ContainerError::Invalid(
            "berth-runtime: create/exec must be called from a single-threaded process (exec berth-runc instead)".into(),
        ));
    }
    let saved = Saved::load(root, id)?;
    let st = status(root, &saved);
    if st != Status::Running && st != Status::Created {
        return Err(ContainerError::BadState {
            id: id.into(),
            status: st,
            op: "exec",
        });
    }
    let base = saved.config.process().clone().unwrap_or_default();
    let process = build_process(&base, o)?;
    let terminal = process.terminal().unwrap_or(false);
    let console = match (&o.console_socket, terminal) {
        (Some(p), true) => Some(UnixStream::connect(p).map_err(|e| {
            ContainerError::Invalid(format!("console socket {}: {e}", p.display()))
        })?),
        (None, true) => {
            return Err(ContainerError::Invalid(
                "--tty needs --console-socket".into(),
            ));
        }
        _ => None,
    };
    // Join every namespace of the init that differs from ours; user first, mount last.
    let mut join = Vec::new();
    for t in [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Mount,
    ] {
        let theirs = PathBuf::from(format!(
            "/proc/{}/ns/{}",
            saved.pid,
            namespaces::proc_name(t)
        ));
        let ours = PathBuf::from(format!("/proc/self/ns/{}", namespaces::proc_name(t)));
        if !sys::same_ns(&theirs, &ours) {
            join.push((t, theirs));
        }
    }
    let opened = namespaces::open_ordered(&join)?;
    let cg = cgroup_of(&saved)?;
    let seccomp = saved
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone());

    let (mut parent_ch, mut child_ch) = Channel::pair().map_err(|e| ContainerError::init(id, e))?;
    // SAFETY: single-threaded caller (see the crate docs).
    let child = match unsafe { fork() }.map_err(|e| sys::errno_err("fork", id, e))? {
        ForkResult::Child => {
            drop(parent_ch);
            let r = exec_intermediate(
                &mut child_ch,
                opened,
                &process,
                seccomp.as_ref(),
                console.as_ref().map(|c| c.as_raw_fd()),
            );
            finish(&mut child_ch, r);
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_ch);
    drop(console);
    let r = (|| {
        cg.add_pid(child.as_raw())?;
        parent_ch
            .send(&Msg::Go)
            .map_err(|e| ContainerError::init(id, e))?;
        let mut pid = None;
        loop {
            match parent_ch.recv().map_err(|e| ContainerError::init(id, e))? {
                Some(Msg::Pid(p)) => {
                    pid = Some(p);
                    // The process waits for this before reporting "ready" (ordering).
                    parent_ch
                        .send(&Msg::Go)
                        .map_err(|e| ContainerError::init(id, e))?;
                }
                Some(Msg::Ready) => break,
                Some(Msg::Error(e)) => return Err(ContainerError::init(id, e)),
                Some(m) => return Err(ContainerError::init(id, format!("unexpected {m:?}"))),
                None => return Err(ContainerError::init(id, "exec process exited during setup")),
            }
        }
        pid.ok_or_else(|| ContainerError::init(id, "no pid reported"))
    })();
    // Closing our end first: an intermediate still waiting for a message then sees EOF and
    // exits instead of blocking us forever.
    drop(parent_ch);
    let _ = waitpid(child, None);
    let pid = r?;
    if let Some(pf) = &o.pid_file {
        write_pid_file(pf, pid)?;
    }
    Ok(pid)
}

fn exec_intermediate(
    ch: &mut Channel,
    opened: Vec<(LinuxNamespaceType, std::os::fd::OwnedFd)>,
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    console: Option<i32>,
) -> Result<(), ContainerError> {
    match ch.recv() {
        Ok(Some(Msg::Go)) => {}
        other => {
            return Err(ContainerError::Invalid(format!(
                "sync: expected go, got {other:?}"
            )));
        }
    }
    for (t, fd) in &opened {
        namespaces::setns(*t, fd)?;
    }
    drop(opened);
    // SAFETY: single-threaded after fork.
    match unsafe { fork() }.map_err(|e| sys::errno_err("fork", "exec", e))? {
        ForkResult::Parent { child } => {
            ch.send(&Msg::Pid(child.as_raw()))
                .map_err(|e| ContainerError::init("exec", e))?;
            Ok(())
        }
        ForkResult::Child => {
            let r = (|| -> Result<ContainerError, ContainerError> {
                crate::create::wait_go(ch)?;
                if let Some(sock) = console {
                    nix::unistd::setsid().map_err(|e| sys::errno_err("setsid", "exec", e))?;
                    crate::console::setup(sock)?;
                    // SAFETY: closing our copy of the console socket.
                    unsafe { libc::close(sock) };
                }
                let prepared = Prepared::new(process, seccomp, None)?;
                prepared.apply_privileged()?;
                ch.send(&Msg::Ready)
                    .map_err(|e| ContainerError::init("exec", e))?;
                // SAFETY: closing the sync socket; it is not used again.
                unsafe { libc::close(ch.raw_fd()) };
                Ok(prepared.apply_and_exec().into())
            })();
            match r {
                Ok(e) => {
                    eprintln!("berth-runc exec: {e}");
                    // SAFETY: leave without the parent's exit handlers.
                    unsafe { libc::_exit(126) }
                }
                Err(e) => finish(ch, Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply() {
        let base = crate::spec::default_spec(false).process().clone().unwrap();
        let o = ExecOptions {
            args: vec!["ls".into()],
            env: vec!["X=1".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:100".into()),
            ..Default::default()
        };
        let p = build_process(&base, &o).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["ls".to_string()]);
        assert!(p.env().as_ref().unwrap().contains(&"X=1".to_string()));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 100);
        assert_eq!(p.terminal(), Some(false));
        assert!(build_process(&base, &ExecOptions::default()).is_err());
        let bad = ExecOptions {
            args: vec!["x".into()],
            user: Some("bob".into()),
            ..Default::default()
        };
        assert!(build_process(&base, &bad).is_err());
    }
}
