//! The shim process itself: daemonizing away from the agent, creating the container through
//! the runtime with pipes (or a pty) for its stdio, and then one single-threaded `poll` loop
//! that copies output into the log and to attached clients, reaps children as the
//! subreaper, records the exit, and answers the control socket. It never spawns threads and
//! never links an async runtime: it runs once per container, so its footprint is the point.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::log::{LogError, LogWriter, encode_record};
use crate::options::ShimArgs;
use crate::protocol::{Launch, Response, Status, encode_frame};
use crate::runtime::{Runtime, RuntimeError};
use crate::state::{self, ExitStatus, ShimRecord, StateError};
use crate::time::now_rfc3339;

mod control;
mod daemon;
mod stdio;

use control::{Client, ClientMode};
use daemon::{bind_private, daemonize};
use stdio::{Output, create_with_console, create_with_pipes, pty_stdio};

/// How long output is still drained after init has exited, for pipes that some escaped
/// process keeps open; normally both pipes reach end-of-file at once.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// An attached client that lets this much output pile up unread is dropped; input for the
/// container's stdin is not read past this much either.
const MAX_CLIENT_BACKLOG: usize = 1 << 20;
/// Encoded records are written to the log in batches of about this size.
const RECORD_BATCH: usize = 16 * 1024;
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
    #[error("a shim is already running in {dir}")]
    AlreadyRunning { dir: PathBuf },
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
            // The files belong to the other shim when one was already running there.
            if !matches!(e, SupervisorError::AlreadyRunning { .. }) {
                let _ = fs::remove_file(dir.join(state::SOCKET));
                let _ = fs::remove_file(dir.join(state::SHIM_PID));
            }
            1
        }
    }
}

fn launch_line(l: &Launch) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).unwrap_or_default();
    v.push(b'\n');
    v
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
    /// Encoded log records of the current read, reused.
    records: Vec<u8>,
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
        // A second shim in the same directory would take over the first one's socket.
        if UnixStream::connect(dir.join(state::SOCKET)).is_ok() {
            return Err(SupervisorError::AlreadyRunning { dir });
        }
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
        state::write_volatile(&pid_path, std::process::id().to_string().as_bytes())?;
        let record = ShimRecord {
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            runtime: args.runtime.clone(),
            runtime_root: args.runtime_root.clone(),
            tty: args.tty,
        };
        state::write_volatile(
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
            pty_stdio(master, &dir).inspect_err(|_| drop(runtime.delete(true)))?
        } else {
            create_with_pipes(&runtime, create, &args, &args.id)?
        };
        // From here on the container exists: a failure must not leave it behind.
        let init = match state::read_pid(&pid_file) {
            Ok(Some(pid)) => pid,
            Ok(None) => {
                let _ = runtime.delete(true);
                return Err(SupervisorError::NoPid { path: pid_file });
            }
            Err(e) => {
                let _ = runtime.delete(true);
                return Err(e.into());
            }
        };

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
            records: Vec::new(),
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
                let stdin_full = self.stdin_pending.len() >= MAX_CLIENT_BACKLOG;
                match c.mode {
                    ClientMode::Closing => ev = PollFlags::empty(),
                    // Back-pressure: read no more input than the container has taken.
                    ClientMode::Attached { stdin: true, .. } if stdin_full => {
                        ev = PollFlags::empty()
                    }
                    _ => {}
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
        // One bounded buffer for the life of the shim: allocating per read fragments the
        // heap (glibc then keeps it), and short lines grow ~20× when encoded.
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        let mut failed = None;
        let (log, o) = (&mut self.log, &mut self.outputs[i]);
        let stream = o.stream;
        o.splitter.push(data, |line| {
            encode_record(&mut records, stream, &time, line);
            if records.len() >= RECORD_BATCH {
                if let Err(e) = log.append(&records) {
                    failed = Some(e);
                }
                records.clear();
            }
        });
        let frame = o.frame;
        if let Some(e) = failed {
            self.log_failure(e);
        }
        self.write_log(&records);
        self.records = records;
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
            self.log_failure(e);
        }
    }

    fn log_failure(&mut self, e: LogError) {
        // No one to tell but the log's own directory; say it once.
        if !self.log_failed {
            self.log_failed = true;
            let _ = fs::write(
                self.args.state_dir.join("log-error"),
                format!("{e}\n").as_bytes(),
            );
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
        // whole for readers; no fsync: the record matters while the shim's state directory
        // does, and no shim outlives a machine crash (see `state::write_volatile`)
        let _ = state::write_volatile(
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
