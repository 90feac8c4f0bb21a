//! The life-cycle operations on an existing container: status, start, kill, pause/resume,
//! ps, stats, delete. Each reads `state.json`, acts, and never forks into namespaces.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroups::{Cgroup, CgroupStats, Layout};
use crate::error::ContainerError;
use crate::hooks;
use crate::state::{self, EXEC_FIFO, Saved, StateJson, Status};
use crate::sys;

/// The cgroup a saved container uses.
pub fn cgroup_of(saved: &Saved) -> Result<Cgroup, ContainerError> {
    Ok(Cgroup::new(Layout::detect()?, saved.cgroup_path.clone()))
}

/// Derived status (see [`crate::state`]).
pub fn status(root: &Path, saved: &Saved) -> Status {
    if !saved.alive() {
        return Status::Stopped;
    }
    if state::dir(root, &saved.id).join(EXEC_FIFO).exists() {
        return Status::Created;
    }
    match cgroup_of(saved) {
        Ok(cg) if cg.is_frozen() => Status::Paused,
        _ => Status::Running,
    }
}

/// `state ID`: runc's JSON.
pub fn state(root: &Path, id: &str) -> Result<StateJson, ContainerError> {
    let saved = Saved::load(root, id)?;
    Ok(saved.state_json(status(root, &saved)))
}

/// `start ID`: releases the init waiting on the exec fifo, then runs poststart hooks.
pub fn start(root: &Path, id: &str) -> Result<(), ContainerError> {
    let saved = Saved::load(root, id)?;
    let st = status(root, &saved);
    if st != Status::Created {
        return Err(ContainerError::BadState {
            id: id.into(),
            status: st,
            op: "start",
        });
    }
    let fifo = state::dir(root, id).join(EXEC_FIFO);
    // Non-blocking open so a dead init cannot hang us; then wait for its byte.
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo)
        .map_err(|e| sys::SysError {
            syscall: "open",
            target: fifo.display().to_string(),
            source: e,
        })?;
    let mut buf = [0u8; 1];
    loop {
        let mut pfd = [nix::poll::PollFd::new(
            f.as_fd_borrowed(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16));
        match nix::unistd::read(&f, &mut buf) {
            Ok(1) => break,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                if !saved.alive() {
                    return Err(ContainerError::init(
                        id,
                        "container init exited before start",
                    ));
                }
            }
            Err(e) => return Err(sys::errno_err("read", fifo.display(), e).into()),
        }
    }
    let _ = fs::remove_file(&fifo);
    let hooks = saved.config.hooks().as_ref();
    // A failing poststart hook is reported, but the container keeps running (as in runc).
    hooks::run(
        "poststart",
        hooks.and_then(|h| h.poststart().as_ref()),
        &saved.hook_state(Status::Running),
    )?;
    Ok(())
}

trait AsFdBorrowed {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_>;
}
impl AsFdBorrowed for fs::File {
    fn as_fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}
use std::os::unix::fs::OpenOptionsExt;

/// Pure: a signal named as runc accepts it (`KILL`, `SIGKILL`, `9`).
pub fn parse_signal(s: &str) -> Result<Signal, ContainerError> {
    let bad = || ContainerError::Invalid(format!("invalid signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

/// `kill ID SIGNAL [--all]`.
pub fn kill_container(root: &Path, id: &str, sig: Signal, all: bool) -> Result<(), ContainerError> {
    let saved = Saved::load(root, id)?;
    let st = status(root, &saved);
    if st == Status::Stopped {
        return Err(ContainerError::NotRunning { id: id.into() });
    }
    if all {
        let cg = cgroup_of(&saved)?;
        for p in cg.pids()? {
            let _ = kill(Pid::from_raw(p), sig);
        }
        // Frozen tasks only act on a signal once thawed (SIGKILL included).
        if st == Status::Paused && sig == Signal::SIGKILL {
            let _ = cg.thaw();
        }
        return Ok(());
    }
    kill(Pid::from_raw(saved.pid), sig).map_err(|e| sys::errno_err("kill", saved.pid, e))?;
    Ok(())
}

pub fn pause(root: &Path, id: &str) -> Result<(), ContainerError> {
    let saved = Saved::load(root, id)?;
    let st = status(root, &saved);
    if st != Status::Running && st != Status::Created {
        return Err(ContainerError::BadState {
            id: id.into(),
            status: st,
            op: "pause",
        });
    }
    Ok(cgroup_of(&saved)?.freeze()?)
}

pub fn resume(root: &Path, id: &str) -> Result<(), ContainerError> {
    let saved = Saved::load(root, id)?;
    let st = status(root, &saved);
    if st != Status::Paused {
        return Err(ContainerError::BadState {
            id: id.into(),
            status: st,
            op: "resume",
        });
    }
    Ok(cgroup_of(&saved)?.thaw()?)
}

/// `update`: applies new resource limits to a created, running or paused container.
pub fn update(
    root: &Path,
    id: &str,
    res: &oci_spec::runtime::LinuxResources,
) -> Result<(), ContainerError> {
    let saved = Saved::load(root, id)?;
    if status(root, &saved) == Status::Stopped {
        return Err(ContainerError::NotRunning { id: id.into() });
    }
    // Device rules are left alone: rewriting them on a live v1 cgroup would briefly deny all.
    let mut res = res.clone();
    res.set_devices(None);
    Ok(cgroup_of(&saved)?.apply_without_devices(&res)?)
}

/// `ps ID`: host pids in the container's cgroup.
pub fn ps(root: &Path, id: &str) -> Result<Vec<i32>, ContainerError> {
    let saved = Saved::load(root, id)?;
    Ok(cgroup_of(&saved)?.pids()?)
}

/// Memory/CPU/pids figures for `berth stats`.
pub fn stats(root: &Path, id: &str) -> Result<CgroupStats, ContainerError> {
    let saved = Saved::load(root, id)?;
    Ok(cgroup_of(&saved)?.stats()?)
}

/// `delete [--force] ID`: kills (with --force), waits for the processes to go, removes the
/// cgroup and state, then runs poststop hooks.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), ContainerError> {
    let saved = match Saved::load(root, id) {
        Ok(s) => s,
        // A half-created container (no state.json yet) is removable with --force.
        Err(state::StateError::NotFound { .. }) if force && state::validate_id(id).is_ok() => {
            let _ = fs::remove_dir_all(state::dir(root, id));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let st = status(root, &saved);
    let cg = cgroup_of(&saved)?;
    match st {
        Status::Stopped => {}
        Status::Created => kill_all_and_wait(&saved, &cg)?,
        _ if force => kill_all_and_wait(&saved, &cg)?,
        _ => {
            return Err(ContainerError::BadState {
                id: id.into(),
                status: st,
                op: "delete (use --force)",
            });
        }
    }
    // Stray processes (e.g. exec'd ones whose init died) would keep the cgroup busy.
    if cg.pids().map(|p| !p.is_empty()).unwrap_or(false) {
        kill_all_and_wait(&saved, &cg)?;
    }
    cg.destroy(Duration::from_secs(5))?;
    let dir = state::dir(root, id);
    fs::remove_dir_all(&dir).map_err(|e| sys::SysError {
        syscall: "rmdir",
        target: dir.display().to_string(),
        source: e,
    })?;
    let hooks = saved.config.hooks().as_ref();
    hooks::run(
        "poststop",
        hooks.and_then(|h| h.poststop().as_ref()),
        &saved.hook_state(Status::Stopped),
    )?;
    Ok(())
}

fn kill_all_and_wait(saved: &Saved, cg: &Cgroup) -> Result<(), ContainerError> {
    let _ = cg.thaw();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = cg.pids().unwrap_or_default();
        if saved.alive() && !pids.contains(&saved.pid) {
            pids.push(saved.pid);
        }
        if pids.is_empty() {
            return Ok(());
        }
        for p in pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        if Instant::now() > deadline {
            return Err(ContainerError::init(
                &saved.id,
                "processes did not die after SIGKILL",
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
