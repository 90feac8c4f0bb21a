//! `create`: from a bundle to a container process waiting on its exec fifo.
//!
//! Process model (the binary is single-threaded, so forking is sound):
//!
//! ```text
//! berth-runc create ──fork──▶ intermediate ──fork──▶ container init (PID 1 in its pid ns)
//!   │ cgroup join, id maps      │ unshare user; setns by path;   │ rootfs, pivot_root, hostname,
//!   │ hooks (prestart,          │ unshare the rest; report the   │ sysctls, console, checks;
//!   │ createRuntime)            │ init's pid; exit               │ "ready"; block on exec.fifo;
//!   ▼ state.json, pid file                                       ▼ creds, caps, seccomp; execve
//! ```
//! Parent and children talk over a socketpair ([`crate::sync`]).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{self, Cgroup, Layout};
use crate::error::ContainerError;
use crate::hooks;
use crate::namespaces::{self, Plan};
use crate::process::Prepared;
use crate::rootfs;
use crate::spec;
use crate::state::{self, EXEC_FIFO, Saved, Status};
use crate::sync::{Channel, Msg};
use crate::sys;

/// Options of `create` (and the create half of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub systemd_cgroup: bool,
    /// runc's `--no-pivot`: MS_MOVE + chroot instead of pivot_root (for roots on initramfs).
    pub no_pivot: bool,
}

/// Removes what a failed create made.
struct Rollback<'a> {
    dir: &'a Path,
    cgroup: Option<Cgroup>,
    pid: Option<i32>,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(p) = self.pid {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.destroy(std::time::Duration::from_secs(2));
        }
        let _ = fs::remove_dir_all(self.dir);
    }
}

/// Creates the container; returns its saved state (status "created").
pub fn create(opts: &CreateOptions) -> Result<Saved, ContainerError> {
    // The children run arbitrary code after fork; that is only sound when no other thread
    // can hold a lock (allocator, stdio) at the moment of the fork.
    if crate::sys::thread_count() > 1 {
        return Err(ContainerError::Invalid(
            "berth-runtime: create/exec must be called from a single-threaded process (exec berth-runc instead)".into(),
        ));
    }
    state::validate_id(&opts.id)?;
    let bundle = fs::canonicalize(&opts.bundle)
        .map_err(|e| ContainerError::Invalid(format!("bundle {}: {e}", opts.bundle.display())))?;
    let spec = spec::load(&bundle)?;
    let plan = Plan::from_spec(&spec)?;
    if !plan.has(LinuxNamespaceType::Mount) {
        return Err(ContainerError::Invalid(
            "a mount namespace is required".into(),
        ));
    }
    let rootfs = fs::canonicalize(spec::rootfs_path(&bundle, &spec))
        .map_err(|e| ContainerError::Invalid(format!("rootfs: {e}")))?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let console = match (&opts.console_socket, terminal) {
        (Some(p), true) => Some(UnixStream::connect(p).map_err(|e| {
            ContainerError::Invalid(format!("console socket {}: {e}", p.display()))
        })?),
        (None, true) => {
            return Err(ContainerError::Invalid(
                "process.terminal needs --console-socket".into(),
            ));
        }
        _ => None,
    };

    fs::create_dir_all(&opts.root).map_err(|e| sys::SysError {
        syscall: "mkdir",
        target: opts.root.display().to_string(),
        source: e,
    })?;
    let dir = state::dir(&opts.root, &opts.id);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(state::StateError::Exists {
                id: opts.id.clone(),
            }
            .into());
        }
        Err(e) => {
            return Err(sys::SysError {
                syscall: "mkdir",
                target: dir.display().to_string(),
                source: e,
            }
            .into());
        }
    }
    let mut rb = Rollback {
        dir: &dir,
        cgroup: None,
        pid: None,
        armed: true,
    };
    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| sys::errno_err("mkfifo", fifo.display(), e))?;
    // The umask trimmed the mode; and with a user namespace the container's root must be
    // able to open it (runc chowns it the same way).
    let (ruid, rgid) = host_root_ids(&spec);
    fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .and_then(|_| std::os::unix::fs::chown(&fifo, Some(ruid), Some(rgid)))
        .map_err(|e| sys::SysError {
            syscall: "chown",
            target: fifo.display().to_string(),
            source: e,
        })?;

    let linux = spec.linux().as_ref();
    let cg_path =
        cgroups::normalize_path(linux.and_then(|l| l.cgroups_path().as_deref()), &opts.id)?;
    let layout = Layout::detect()?;
    let cg = Cgroup::new(layout.clone(), cg_path.clone());
    cg.create()?;
    rb.cgroup = Some(cg.clone());
    // Even without resources the default device rules apply.
    let no_resources = oci_spec::runtime::LinuxResources::default();
    cg.apply(
        linux
            .and_then(|l| l.resources().as_ref())
            .unwrap_or(&no_resources),
    )?;

    let mut saved = Saved {
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: state::now_rfc3339(),
        cgroup_path: cg_path,
        config: spec.clone(),
        use_systemd: opts.systemd_cgroup,
    };

    let (mut parent_ch, child_ch) =
        Channel::pair().map_err(|e| ContainerError::init(&opts.id, e))?;
    let ctx = InitContext {
        id: &opts.id,
        spec: &spec,
        plan: &plan,
        rootfs: &rootfs,
        bundle: &bundle,
        fifo: &fifo,
        layout: &layout,
        cgroup_path: &saved.cgroup_path,
        console: console.as_ref().map(|c| c.as_raw_fd()),
        no_pivot: opts.no_pivot,
    };
    // SAFETY: berth-runc is single-threaded (documented requirement for library callers),
    // so the child may use the allocator and everything else after fork.
    let child = match unsafe { fork() }.map_err(|e| sys::errno_err("fork", &opts.id, e))? {
        ForkResult::Child => {
            drop(parent_ch);
            intermediate(child_ch, &ctx);
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_ch);
    drop(console);

    let res = drive(
        &mut parent_ch,
        child.as_raw(),
        &spec,
        &plan,
        &cg,
        &mut saved,
        &mut rb,
    );
    // Closing our end first: an intermediate still waiting for a message then sees EOF and
    // exits instead of blocking us forever.
    drop(parent_ch);
    let _ = waitpid(child, None);
    res?;
    saved.save(&opts.root)?;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, saved.pid)?;
    }
    rb.armed = false;
    Ok(saved)
}

/// The parent's half of the protocol.
fn drive(
    ch: &mut Channel,
    child: i32,
    spec: &Spec,
    plan: &Plan,
    cg: &Cgroup,
    saved: &mut Saved,
    rb: &mut Rollback<'_>,
) -> Result<(), ContainerError> {
    let id = saved.id.clone();
    let recv = |ch: &mut Channel| -> Result<Msg, ContainerError> {
        match ch.recv().map_err(|e| ContainerError::init(&id, e))? {
            Some(Msg::Error(e)) => Err(ContainerError::init(&id, e)),
            Some(m) => Ok(m),
            None => Err(ContainerError::init(
                &id,
                "container init exited during setup",
            )),
        }
    };
    if plan.new_userns() {
        match recv(ch)? {
            Msg::UserNs => namespaces::write_id_maps(child, spec)?,
            m => return Err(ContainerError::init(&id, format!("unexpected {m:?}"))),
        }
    }
    cg.add_pid(child)?;
    ch.send(&Msg::Go)
        .map_err(|e| ContainerError::init(&id, e))?;
    let pid = match recv(ch)? {
        Msg::Pid(p) => p,
        m => return Err(ContainerError::init(&id, format!("unexpected {m:?}"))),
    };
    rb.pid = Some(pid);
    saved.pid = pid;
    // The init waits for this, so its messages never overtake the intermediate's pid report.
    ch.send(&Msg::Go)
        .map_err(|e| ContainerError::init(&id, e))?;
    saved.pid_start = state::proc_stat(pid).map(|s| s.1).unwrap_or(0);
    loop {
        match recv(ch)? {
            Msg::Hooks => {
                let st = saved.hook_state(Status::Creating);
                let h = spec.hooks().as_ref();
                #[allow(deprecated)]
                let prestart = h.and_then(|h| h.prestart().as_ref());
                hooks::run("prestart", prestart, &st)?;
                hooks::run(
                    "createRuntime",
                    h.and_then(|h| h.create_runtime().as_ref()),
                    &st,
                )?;
                ch.send(&Msg::HooksDone)
                    .map_err(|e| ContainerError::init(&id, e))?;
            }
            Msg::Ready => return Ok(()),
            m => return Err(ContainerError::init(&id, format!("unexpected {m:?}"))),
        }
    }
}

/// The host uid/gid that container uid/gid 0 maps to (0/0 without a user namespace).
fn host_root_ids(spec: &Spec) -> (u32, u32) {
    let find = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
            .unwrap_or(0)
    };
    let l = spec.linux().as_ref();
    (
        find(l.and_then(|l| l.uid_mappings().as_ref())),
        find(l.and_then(|l| l.gid_mappings().as_ref())),
    )
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    // Written via a temp file and rename: containerd polls for it.
    let tmp = path.with_extension("berth-tmp");
    fs::write(&tmp, pid.to_string())
        .and_then(|_| fs::rename(&tmp, path))
        .map_err(|e| {
            sys::SysError {
                syscall: "write",
                target: path.display().to_string(),
                source: e,
            }
            .into()
        })
}

/// What the children need, borrowed from the parent's memory (copied by fork).
pub(crate) struct InitContext<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub plan: &'a Plan,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub fifo: &'a Path,
    pub layout: &'a Layout,
    pub cgroup_path: &'a Path,
    pub console: Option<RawFd>,
    pub no_pivot: bool,
}

/// Reports `r`'s error to the parent and exits; never returns.
pub(crate) fn finish(ch: &mut Channel, r: Result<(), ContainerError>) -> ! {
    let code = match r {
        Ok(()) => 0,
        Err(e) => {
            let _ = ch.send(&Msg::Error(e.to_string()));
            1
        }
    };
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent.
    unsafe { libc::_exit(code) }
}

fn intermediate(mut ch: Channel, ctx: &InitContext<'_>) -> ! {
    let r = intermediate_inner(&mut ch, ctx);
    finish(&mut ch, r.map(|_| ()))
}

fn intermediate_inner(ch: &mut Channel, ctx: &InitContext<'_>) -> Result<(), ContainerError> {
    let opened = namespaces::open_ordered(&ctx.plan.join)?;
    let mut rest = opened.into_iter().peekable();
    // A user namespace is joined or created before anything else.
    if let Some((LinuxNamespaceType::User, _)) = rest.peek() {
        let (t, fd) = rest.next().expect("peeked");
        namespaces::setns(t, &fd)?;
    }
    if ctx.plan.new_userns() {
        namespaces::unshare(CloneFlags::CLONE_NEWUSER)?;
        ch.send(&Msg::UserNs).map_err(|e| sys::SysError {
            syscall: "send",
            target: "sync".into(),
            source: e,
        })?;
    }
    match ch.recv() {
        Ok(Some(Msg::Go)) => {}
        other => {
            return Err(ContainerError::Invalid(format!(
                "sync: expected go, got {other:?}"
            )));
        }
    }
    if ctx.plan.has(LinuxNamespaceType::User) {
        become_root()?;
    }
    for (t, fd) in rest {
        namespaces::setns(t, &fd)?;
    }
    namespaces::unshare(ctx.plan.new & !CloneFlags::CLONE_NEWUSER)?;
    // SAFETY: still single-threaded after fork.
    match unsafe { fork() }.map_err(|e| sys::errno_err("fork", "container init", e))? {
        ForkResult::Child => container_init(ch, ctx),
        ForkResult::Parent { child } => {
            ch.send(&Msg::Pid(child.as_raw()))
                .map_err(|e| sys::SysError {
                    syscall: "send",
                    target: "sync".into(),
                    source: e,
                })?;
            Ok(())
        }
    }
}

/// Waits for the parent's "go" (sent once it has the init's pid).
pub(crate) fn wait_go(ch: &mut Channel) -> Result<(), ContainerError> {
    match ch.recv() {
        Ok(Some(Msg::Go)) => Ok(()),
        other => Err(ContainerError::Invalid(format!(
            "sync: expected go, got {other:?}"
        ))),
    }
}

fn become_root() -> Result<(), ContainerError> {
    // SAFETY: credential syscalls on ourselves.
    unsafe {
        if libc::setresgid(0, 0, 0) != 0 {
            return Err(sys::err("setresgid", 0).into());
        }
        if libc::setresuid(0, 0, 0) != 0 {
            return Err(sys::err("setresuid", 0).into());
        }
    }
    Ok(())
}

fn container_init(ch: &mut Channel, ctx: &InitContext<'_>) -> ! {
    let r = init_inner(ch, ctx);
    match r {
        // Ready was sent and the fifo released us: nothing left to report but exec failure.
        Ok(e) => {
            eprintln!("berth-runc: {e}");
            // SAFETY: leaving the child without running the parent's exit handlers.
            unsafe {
                libc::_exit(
                    if matches!(
                        e,
                        ContainerError::Process(crate::process::ProcessError::NotFound { .. })
                    ) {
                        127
                    } else {
                        126
                    },
                )
            }
        }
        Err(e) => finish(ch, Err(e)),
    }
}

/// The init's work; returns only the error that ended it after "ready".
fn init_inner(ch: &mut Channel, ctx: &InitContext<'_>) -> Result<ContainerError, ContainerError> {
    wait_go(ch)?;
    let spec = ctx.spec;
    let linux = spec.linux().as_ref();
    nix::unistd::setsid().map_err(|e| sys::errno_err("setsid", "init", e))?;
    // Host pid as the host's /proc shows it, for hooks run from inside.
    let host_pid: i32 = fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or(0);
    let in_userns = ctx.plan.has(LinuxNamespaceType::User);
    let env = rootfs::Env {
        spec,
        rootfs: ctx.rootfs,
        bundle: ctx.bundle,
        in_userns,
        new_cgroupns: ctx.plan.new.contains(CloneFlags::CLONE_NEWCGROUP),
        cgroup_path: ctx.cgroup_path,
        cgroup_layout: Some(ctx.layout),
    };
    rootfs::prepare(&env)?;
    if ctx.plan.new.contains(CloneFlags::CLONE_NEWUTS) {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h).map_err(|e| sys::errno_err("sethostname", h, e))?;
        }
        if let Some(d) = spec.domainname() {
            let c = sys::cstr(d);
            // SAFETY: c is a valid C string of the given length.
            if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
                return Err(sys::err("setdomainname", d).into());
            }
        }
    }
    // The fifo path disappears with pivot_root: keep an O_PATH handle to reopen later.
    let fifo: OwnedFd = nix::fcntl::open(
        ctx.fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| sys::errno_err("open", ctx.fifo.display(), e))?;
    let h = spec.hooks().as_ref();
    #[allow(deprecated)]
    let wants_runtime_hooks =
        h.is_some_and(|h| h.prestart().is_some() || h.create_runtime().is_some());
    if wants_runtime_hooks {
        ch.send(&Msg::Hooks).map_err(|e| sys::SysError {
            syscall: "send",
            target: "sync".into(),
            source: e,
        })?;
        match ch.recv() {
            Ok(Some(Msg::HooksDone)) => {}
            other => {
                return Err(ContainerError::Invalid(format!(
                    "sync: expected hooks-done, got {other:?}"
                )));
            }
        }
    }
    let hook_state = |status| crate::state::HookState {
        oci_version: spec.version().clone(),
        id: ctx.id.to_string(),
        status,
        pid: host_pid,
        bundle: ctx.bundle.to_path_buf(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    };
    hooks::run(
        "createContainer",
        h.and_then(|h| h.create_container().as_ref()),
        &hook_state(Status::Created),
    )?;

    if ctx.no_pivot || rootfs::on_ramfs(ctx.rootfs) {
        rootfs::move_root(ctx.rootfs)?;
    } else {
        rootfs::pivot(ctx.rootfs)?;
    }
    if let Some(l) = linux {
        // Sysctls first: /proc/sys becomes read-only with the read-only paths.
        for (k, v) in l.sysctl().iter().flatten() {
            let p = format!("/proc/sys/{}", k.replace('.', "/"));
            fs::write(&p, v).map_err(|e| sys::SysError {
                syscall: "write",
                target: p,
                source: e,
            })?;
        }
        rootfs::readonly_paths(l.readonly_paths().as_deref().unwrap_or(&[]))?;
        rootfs::mask_paths(l.masked_paths().as_deref().unwrap_or(&[]))?;
    }
    if let Some(prop) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(rootfs::propagation_flag)
    {
        sys::mount(None, "/", None, prop as libc::c_ulong, None)?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::readonly_root()?;
    }
    if let Some(sock) = ctx.console {
        crate::console::setup(sock)?;
        // SAFETY: closing our copy of the console socket; the caller keeps its own.
        unsafe { libc::close(sock) };
    }
    let process = spec.process().clone().unwrap_or_default();
    let prepared = Prepared::new(&process, linux.and_then(|l| l.seccomp().as_ref()), None)?;
    prepared.apply_privileged()?;

    ch.send(&Msg::Ready).map_err(|e| sys::SysError {
        syscall: "send",
        target: "sync".into(),
        source: e,
    })?;
    // SAFETY: closing the sync socket's descriptor; the Channel is never used again.
    unsafe { libc::close(ch.raw_fd()) };

    // From here on the parent is gone: failures are reported on the container's stderr.
    let after_ready = || -> Result<ContainerError, ContainerError> {
        // Blocks until `start` opens the fifo for reading.
        let fifo_path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
        let w = nix::fcntl::open(
            fifo_path.as_str(),
            nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| sys::errno_err("open", "exec fifo", e))?;
        nix::unistd::write(&w, b"0").map_err(|e| sys::errno_err("write", "exec fifo", e))?;
        drop(w);
        hooks::run(
            "startContainer",
            h.and_then(|h| h.start_container().as_ref()),
            &hook_state(Status::Running),
        )?;
        Ok(prepared.apply_and_exec().into())
    };
    Ok(after_ready().unwrap_or_else(|e| e))
}
