//! The shim process itself: daemonizing away from the agent, creating the container through
//! the runtime with pipes (or a pty) for its stdio, and then one single-threaded `poll` loop
//! that copies output into the log and to attached clients, reaps children as the
//! subreaper, records the exit, and answers the control socket. It never spawns threads and
//! never links an async runtime: it runs once per container, so its footprint is the point.

use std::fs;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};

use crate::log::{LineSplitter, LogError, LogWriter, Stream, encode_record};
use crate::options::ShimArgs;
use crate::protocol::{
    ContainerState, FRAME_STDERR, FRAME_STDOUT, Launch, Request, Response, Status, encode_frame,
};
use crate::runtime::{Runtime, RuntimeError};
use crate::state::{self, ExitStatus, ShimRecord, StateError};
use crate::time::now_rfc3339;

/// How long output is still drained after init has exited, for pipes that some escaped
/// process keeps open; normally both pipes reach end-of-file at once.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// An attached client that lets this much output pile up unread is dropped.
const MAX_CLIENT_BACKLOG: usize = 1 << 20;
/// How long the runtime may take to hand over the pty master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Signals that, sent to the shim, are passed on to the container's init.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Errors while setting the shim up; all of them are reported to the launcher.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("the runtime did not send the console (pty master) on {path}")]
    NoConsole { path: PathBuf },
    #[error("the runtime wrote no pid to {path}")]
    NoPid { path: PathBuf },
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> SupervisorError {
    move |source| SupervisorError::Sys { what, source }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SupervisorError {
    let path = path.to_path_buf();
    move |source| SupervisorError::Io { path, source }
}

/// Runs the shim to completion and returns the process exit code. Called from `main` of a
/// single-threaded process: it forks.
pub fn main(mut args: ShimArgs) -> i32 {
    // The daemon runs in /, so relative paths must be resolved first.
    for p in [
        &mut args.bundle,
        &mut args.state_dir,
        &mut args.runtime_root,
    ] {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    let ready = match daemonize() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            return 1;
        }
    };
    let mut ready = fs::File::from(ready);
    match Supervisor::setup(args) {
        Ok(mut sup) => {
            let launch = Launch {
                shim_pid: std::process::id() as i32,
                pid: sup.init_pid.as_raw(),
                error: None,
            };
            let _ = ready.write_all(&launch_line(&launch));
            drop(ready);
            sup.run();
            sup.cleanup();
            0
        }
        Err((e, dir)) => {
            let launch = Launch {
                error: Some(e.to_string()),
                ..Launch::default()
            };
            let _ = ready.write_all(&launch_line(&launch));
            let _ = fs::remove_file(dir.join(state::SOCKET));
            let _ = fs::remove_file(dir.join(state::SHIM_PID));
            1
        }
    }
}

fn launch_line(l: &Launch) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Detaches from the launcher: fork (the launcher's child exits once the grandchild exists),
/// `setsid` so no process-group or session signal of the agent reaches us, fork again so we
/// are not a session leader, and point stdio at /dev/null. Returns the launcher's stdout,
/// kept close-on-exec, for the one readiness line.
fn daemonize() -> Result<OwnedFd, SupervisorError> {
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

/// One output of the container: a pipe (stdout, stderr) or the pty master.
struct Output {
    fd: OwnedFd,
    stream: Stream,
    frame: u8,
    splitter: LineSplitter,
}

enum ClientMode {
    Requests,
    Waiting,
    Attached {
        stdin: bool,
        stdin_once: bool,
    },
    /// Flush what is queued, then close.
    Closing,
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    mode: ClientMode,
    gone: bool,
}

struct Supervisor {
    args: ShimArgs,
    runtime: Runtime,
    init_pid: Pid,
    status: Status,
    exit: Option<ExitStatus>,
    /// Init has been reaped; the exit is recorded once output is drained or the grace ends.
    pending_exit: Option<(ExitStatus, Instant)>,
    outputs: Vec<Output>,
    stdin: Option<OwnedFd>,
    stdin_pending: Vec<u8>,
    close_stdin_when_flushed: bool,
    pty: Option<OwnedFd>,
    log: LogWriter,
    log_failed: bool,
    listener: UnixListener,
    signals: SignalFd,
    clients: Vec<Client>,
    /// A `delete`, `shutdown` or `--exit-with-container` asked us to exit once stopped.
    finishing: bool,
}

#[derive(Clone, Copy)]
enum Tag {
    Signals,
    Listener,
    Output(usize),
    Stdin,
    Client(usize),
}

impl Supervisor {
    fn setup(args: ShimArgs) -> Result<Self, (SupervisorError, PathBuf)> {
        let dir = args.state_dir.clone();
        Self::try_setup(args).map_err(|e| (e, dir))
    }

    fn try_setup(args: ShimArgs) -> Result<Self, SupervisorError> {
        let dir = args.state_dir.clone();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_at(&dir))?;
        nix::sys::prctl::set_child_subreaper(true).map_err(sys("PR_SET_CHILD_SUBREAPER"))?;

        // Blocked before any child exists, so no SIGCHLD is lost; std's spawn gives children
        // an empty mask again.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        for s in FORWARDED {
            mask.add(s);
        }
        mask.thread_block().map_err(sys("sigprocmask"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(sys("signalfd"))?;

        let pid_path = dir.join(state::SHIM_PID);
        state::write_atomic(&pid_path, std::process::id().to_string().as_bytes())?;
        let record = ShimRecord {
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            runtime: args.runtime.clone(),
            runtime_root: args.runtime_root.clone(),
            tty: args.tty,
        };
        state::write_atomic(
            &dir.join(state::RECORD),
            &serde_json::to_vec_pretty(&record).unwrap_or_default(),
        )?;
        let _ = fs::remove_file(dir.join(state::EXIT));

        let listener = bind_private(&dir.join(state::SOCKET))?;
        let log = LogWriter::open(&dir.join(state::LOG), args.log_max_size, args.log_max_files)?;
        let runtime = Runtime {
            path: args.runtime.clone(),
            root: args.runtime_root.clone(),
            log: dir.join(state::RUNTIME_LOG),
            id: args.id.clone(),
        };

        let pid_file = dir.join(state::CONTAINER_PID);
        let _ = fs::remove_file(&pid_file);
        let mut create = runtime.command("create");
        create
            .arg("--bundle")
            .arg(&args.bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        let (outputs, stdin, pty) = if args.tty {
            let master = create_with_console(&runtime, create, &dir, &args.id)?;
            set_nonblocking(master.as_fd())?;
            let input = master.try_clone().map_err(io_at(&dir))?;
            let out = master.try_clone().map_err(io_at(&dir))?;
            let outputs = vec![Output {
                fd: out,
                stream: Stream::Stdout,
                frame: FRAME_STDOUT,
                splitter: LineSplitter::default(),
            }];
            (outputs, Some(input), Some(master))
        } else {
            create_with_pipes(&runtime, create, &args, &args.id)?
        };

        let init = state::read_pid(&pid_file)?.ok_or_else(|| SupervisorError::NoPid {
            path: pid_file.clone(),
        })?;

        Ok(Supervisor {
            finishing: args.exit_with_container,
            args,
            runtime,
            init_pid: Pid::from_raw(init),
            status: Status::Created,
            exit: None,
            pending_exit: None,
            outputs,
            stdin,
            stdin_pending: Vec::new(),
            close_stdin_when_flushed: false,
            pty,
            log,
            log_failed: false,
            listener,
            signals,
            clients: Vec::new(),
        })
    }

    /// The event loop; returns when the shim's job is done.
    fn run(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            if self.finishing && self.exit.is_some() {
                return;
            }
            let mut tags = Vec::with_capacity(4 + self.clients.len());
            let mut fds = Vec::with_capacity(4 + self.clients.len());
            fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
            tags.push(Tag::Signals);
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            tags.push(Tag::Listener);
            for (i, o) in self.outputs.iter().enumerate() {
                fds.push(PollFd::new(o.fd.as_fd(), PollFlags::POLLIN));
                tags.push(Tag::Output(i));
            }
            if let Some(fd) = &self.stdin
                && !self.stdin_pending.is_empty()
            {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
                tags.push(Tag::Stdin);
            }
            for (i, c) in self.clients.iter().enumerate() {
                let mut ev = PollFlags::POLLIN;
                if matches!(c.mode, ClientMode::Closing) {
                    ev = PollFlags::empty();
                }
                if !c.outbuf.is_empty() {
                    ev |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.sock.as_fd(), ev));
                tags.push(Tag::Client(i));
            }
            let timeout = match &self.pending_exit {
                Some((_, deadline)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().min(60_000) as u32 + 1)
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                // Nothing sensible is left to do if poll itself fails.
                Err(_) => return,
            }
            let ready: Vec<(Tag, PollFlags)> = fds
                .iter()
                .zip(tags)
                .filter_map(|(f, t)| f.revents().filter(|r| !r.is_empty()).map(|r| (t, r)))
                .collect();
            drop(fds);

            let mut ended_outputs = Vec::new();
            for (tag, rev) in ready {
                match tag {
                    Tag::Signals => self.on_signals(),
                    Tag::Listener => self.accept_clients(),
                    Tag::Output(i) => {
                        if !self.read_output(i, &mut buf) {
                            ended_outputs.push(i);
                        }
                    }
                    Tag::Stdin => self.flush_stdin(),
                    Tag::Client(i) => self.on_client(i, rev, &mut buf),
                }
            }
            for i in ended_outputs.into_iter().rev() {
                let mut o = self.outputs.remove(i);
                self.finish_output(&mut o);
            }
            self.maybe_record_exit(&mut buf);
            for c in &mut self.clients {
                if matches!(c.mode, ClientMode::Closing) && c.outbuf.is_empty() {
                    c.gone = true;
                }
            }
            self.clients.retain(|c| !c.gone);
        }
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == libc::SIGCHLD {
                self.reap();
            } else if self.exit.is_none()
                && self.pending_exit.is_none()
                && let Ok(sig) = Signal::try_from(signo)
            {
                let _ = kill(self.init_pid, sig);
            }
        }
    }

    /// Reaps every exited child: init, and whatever else got reparented to us.
    fn reap(&mut self) {
        loop {
            let (pid, code, signal) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Some(code), None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, None, Some(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return,
            };
            if pid == self.init_pid && self.pending_exit.is_none() && self.exit.is_none() {
                let exit = ExitStatus::from_wait(pid.as_raw(), code, signal, now_rfc3339());
                self.pending_exit = Some((exit, Instant::now() + DRAIN_GRACE));
            }
        }
    }

    /// Reads what output is available; false at end of file.
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        // Bounded, so one chatty stream cannot starve the other or the control socket.
        for _ in 0..8 {
            let n = match nix::unistd::read(&self.outputs[i].fd, buf) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(Errno::EAGAIN) => return true,
                Err(Errno::EINTR) => continue,
                // EIO: the pty's last slave was closed.
                Err(_) => return false,
            };
            self.on_output(i, &buf[..n]);
        }
        true
    }

    fn on_output(&mut self, i: usize, data: &[u8]) {
        let time = now_rfc3339();
        let o = &mut self.outputs[i];
        let mut records = Vec::with_capacity(data.len() + 128);
        let stream = o.stream;
        o.splitter.push(data, |line| {
            encode_record(&mut records, stream, &time, line)
        });
        let frame = o.frame;
        self.write_log(&records);
        for c in &mut self.clients {
            if matches!(c.mode, ClientMode::Attached { .. }) {
                encode_frame(&mut c.outbuf, frame, data);
                if c.outbuf.len() > MAX_CLIENT_BACKLOG {
                    c.gone = true;
                }
            }
        }
    }

    fn finish_output(&mut self, o: &mut Output) {
        let time = now_rfc3339();
        let mut records = Vec::new();
        let stream = o.stream;
        o.splitter
            .finish(|line| encode_record(&mut records, stream, &time, line));
        self.write_log(&records);
    }

    fn write_log(&mut self, records: &[u8]) {
        if let Err(e) = self.log.append(records) {
            // No one to tell but the log's own directory; say it once.
            if !self.log_failed {
                self.log_failed = true;
                let _ = fs::write(
                    self.args.state_dir.join("log-error"),
                    format!("{e}\n").as_bytes(),
                );
            }
        }
    }

    fn maybe_record_exit(&mut self, buf: &mut [u8]) {
        let Some((_, deadline)) = &self.pending_exit else {
            return;
        };
        if !self.outputs.is_empty() && Instant::now() < *deadline {
            return;
        }
        // Take what is still buffered in the pipes, then give up on them.
        for i in 0..self.outputs.len() {
            self.read_output(i, buf);
        }
        for mut o in std::mem::take(&mut self.outputs) {
            self.finish_output(&mut o);
        }
        let Some((exit, _)) = self.pending_exit.take() else {
            return;
        };
        let _ = state::write_atomic(
            &self.args.state_dir.join(state::EXIT),
            &serde_json::to_vec_pretty(&exit).unwrap_or_default(),
        );
        self.status = Status::Stopped;
        self.stdin = None;
        self.stdin_pending.clear();
        let answer = Response {
            exit: Some(exit.clone()),
            ..Response::ok()
        }
        .to_line();
        for c in &mut self.clients {
            match c.mode {
                ClientMode::Waiting => {
                    c.outbuf.extend_from_slice(&answer);
                    c.mode = ClientMode::Requests;
                }
                ClientMode::Attached { .. } => c.mode = ClientMode::Closing,
                _ => {}
            }
        }
        self.exit = Some(exit);
    }

    fn accept_clients(&mut self) {
        while let Ok((sock, _)) = self.listener.accept() {
            if sock.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    sock,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    mode: ClientMode::Requests,
                    gone: false,
                });
            }
        }
    }

    fn on_client(&mut self, i: usize, rev: PollFlags, buf: &mut [u8]) {
        if rev.contains(PollFlags::POLLOUT) || rev.contains(PollFlags::POLLHUP) {
            flush_client(&mut self.clients[i]);
        }
        if rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            && !matches!(self.clients[i].mode, ClientMode::Closing)
        {
            loop {
                match self.clients[i].sock.read(buf) {
                    Ok(0) => {
                        self.client_eof(i);
                        break;
                    }
                    Ok(n) => self.client_input(i, &buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.clients[i].gone = true;
                        break;
                    }
                }
                if self.clients[i].gone {
                    break;
                }
            }
        }
    }

    fn client_eof(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if let ClientMode::Attached { stdin_once, .. } = c.mode
            && stdin_once
        {
            self.close_stdin_when_flushed = true;
            self.flush_stdin();
        }
        let c = &mut self.clients[i];
        if c.outbuf.is_empty() {
            c.gone = true;
        } else {
            c.mode = ClientMode::Closing;
        }
    }

    fn client_input(&mut self, i: usize, data: &[u8]) {
        if let ClientMode::Attached { stdin, .. } = self.clients[i].mode {
            if stdin && self.stdin.is_some() {
                self.stdin_pending.extend_from_slice(data);
                self.flush_stdin();
            }
            return;
        }
        self.clients[i].inbuf.extend_from_slice(data);
        while matches!(self.clients[i].mode, ClientMode::Requests) {
            let Some(nl) = self.clients[i].inbuf.iter().position(|&b| b == b'\n') else {
                if self.clients[i].inbuf.len() > 64 * 1024 {
                    self.clients[i].gone = true;
                }
                return;
            };
            let line: Vec<u8> = self.clients[i].inbuf.drain(..=nl).collect();
            let response = match serde_json::from_slice::<Request>(&line) {
                Ok(req) => self.handle(i, req),
                Err(e) => Some(Response::error(format!("bad request: {e}"))),
            };
            if let Some(r) = response {
                self.clients[i].outbuf.extend_from_slice(&r.to_line());
            }
            // Whatever followed an attach request is already the client's stdin.
            if let ClientMode::Attached { .. } = self.clients[i].mode {
                let rest = std::mem::take(&mut self.clients[i].inbuf);
                if !rest.is_empty() {
                    self.client_input(i, &rest);
                }
            }
        }
        flush_client(&mut self.clients[i]);
    }

    fn state(&self) -> ContainerState {
        ContainerState {
            id: self.args.id.clone(),
            pid: self.init_pid.as_raw(),
            shim_pid: std::process::id() as i32,
            status: self.status,
            exit: self.exit.clone(),
        }
    }

    fn exited(&self) -> bool {
        self.exit.is_some() || self.pending_exit.is_some()
    }

    /// Answers one request; `None` when the answer comes later (`wait`).
    fn handle(&mut self, i: usize, req: Request) -> Option<Response> {
        let id = &self.args.id;
        Some(match req {
            Request::State => Response {
                state: Some(self.state()),
                ..Response::ok()
            },
            Request::Start => {
                if self.exited() {
                    Response::error(format!("container {id} has exited"))
                } else if self.status != Status::Created {
                    Response::error(format!("container {id} is already running"))
                } else {
                    match self.runtime.start() {
                        Ok(()) => {
                            self.status = Status::Running;
                            Response::ok()
                        }
                        Err(e) => Response::error(e.to_string()),
                    }
                }
            }
            Request::Kill { signal, all } => {
                if self.exited() {
                    Response::error(format!("container {id} has exited"))
                } else {
                    result(self.runtime.kill(signal, all))
                }
            }
            Request::Wait => match &self.exit {
                Some(exit) => Response {
                    exit: Some(exit.clone()),
                    ..Response::ok()
                },
                None => {
                    self.clients[i].mode = ClientMode::Waiting;
                    return None;
                }
            },
            Request::Resize { rows, cols } => match &self.pty {
                None => Response::error(format!("container {id} has no terminal")),
                Some(master) => result(set_window_size(master, rows, cols)),
            },
            Request::Attach { stdin, stdin_once } => {
                if stdin && self.stdin.is_none() && self.exit.is_none() {
                    Response::error(format!("container {id} has no stdin to attach to"))
                } else {
                    self.clients[i].mode = if self.exit.is_some() {
                        ClientMode::Closing
                    } else {
                        ClientMode::Attached { stdin, stdin_once }
                    };
                    Response::ok()
                }
            }
            Request::Delete { force } => match self.runtime.delete(force) {
                Ok(()) => {
                    self.finishing = true;
                    Response::ok()
                }
                Err(e) => Response::error(e.to_string()),
            },
            Request::Shutdown => {
                if self.exit.is_none() {
                    Response::error(format!(
                        "container {id} is still running; kill or delete it first"
                    ))
                } else {
                    self.finishing = true;
                    Response::ok()
                }
            }
        })
    }

    fn flush_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.stdin_pending.clear();
            return;
        };
        while !self.stdin_pending.is_empty() {
            match nix::unistd::write(fd, &self.stdin_pending) {
                Ok(n) => {
                    self.stdin_pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // The container closed its stdin.
                    self.stdin = None;
                    self.stdin_pending.clear();
                    return;
                }
            }
        }
        if self.close_stdin_when_flushed && self.pty.is_none() {
            self.stdin = None;
        }
    }

    /// Answers what can still be answered, removes the socket and pid file.
    fn cleanup(&mut self) {
        let _ = fs::remove_file(self.args.state_dir.join(state::SOCKET));
        let _ = fs::remove_file(self.args.state_dir.join(state::SHIM_PID));
        for c in &mut self.clients {
            let _ = c.sock.set_nonblocking(false);
            let _ = c.sock.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = c.sock.write_all(&c.outbuf);
        }
    }
}

fn result<E: std::fmt::Display>(r: Result<(), E>) -> Response {
    match r {
        Ok(()) => Response::ok(),
        Err(e) => Response::error(e.to_string()),
    }
}

fn flush_client(c: &mut Client) {
    while !c.outbuf.is_empty() {
        match c.sock.write(&c.outbuf) {
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.gone = true;
                c.outbuf.clear();
                return;
            }
        }
    }
}

/// Binds a unix socket that only root can connect to: the umask makes it 0600 from the
/// start, so there is no window in which it is open to others.
fn bind_private(path: &Path) -> Result<UnixListener, SupervisorError> {
    let _ = fs::remove_file(path);
    let old = umask(Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    umask(old);
    let l = l.map_err(io_at(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_at(path))?;
    l.set_nonblocking(true).map_err(io_at(path))?;
    Ok(l)
}

fn set_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> Result<(), SupervisorError> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(sys("F_GETFL"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(sys("F_SETFL"))?;
    Ok(())
}

type Stdio3 = (Vec<Output>, Option<OwnedFd>, Option<OwnedFd>);

/// `runtime create` with pipes: the runtime passes its own stdio to the container's init,
/// so the write ends go to the runtime and the shim keeps the read ends.
fn create_with_pipes(
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
fn create_with_console(
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
    outcome?.ok_or(SupervisorError::NoConsole { path: sock_path })
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

fn set_window_size(master: &OwnedFd, rows: u16, cols: u16) -> Result<(), Errno> {
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
