//! The agent's side of the shim: launching `berth-shim` and waiting for its readiness line,
//! and a blocking client for the control socket (one connection per call, so a `wait` in one
//! thread never holds up a `kill` in another). The agent wraps these calls in
//! `spawn_blocking`; nothing here needs an async runtime.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::log::Stream;
use crate::options::ShimArgs;
use crate::protocol::{
    ContainerState, FRAME_HEADER, FRAME_STDERR, FRAME_STDOUT, Launch, Request, Response,
    decode_frame_header,
};
use crate::state::{self, ExitStatus, StateError};

/// How long a request other than `wait` and `attach` may take; `start`, `kill` and
/// `delete` run the runtime, which is quick unless something is wrong.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of the client library.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shim for container {id} failed to start: {message}")]
    Launch { id: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shim at {path} answered {op} with something malformed: {detail}")]
    Protocol {
        path: PathBuf,
        op: &'static str,
        detail: String,
    },
    #[error("shim at {path} refused {op}: {message}")]
    Refused {
        path: PathBuf,
        op: &'static str,
        message: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// How to launch a shim: its binary and its command line.
#[derive(Debug, Clone)]
pub struct ShimOptions {
    /// Path of the `berth-shim` binary.
    pub binary: PathBuf,
    pub args: ShimArgs,
}

/// Launches shims.
pub struct Shim;

impl Shim {
    /// Starts a shim for one container and returns once the container is created (not yet
    /// started) and the control socket answers. The shim is detached: it is not a child of
    /// the caller and survives it.
    pub fn spawn(opts: &ShimOptions) -> Result<ShimHandle, ShimError> {
        let mut args = opts.args.clone();
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ShimError::Io { path, source }
        };
        // The shim changes directory to /, so relative paths would point elsewhere.
        args.bundle = std::path::absolute(&args.bundle).map_err(io_err(&args.bundle))?;
        args.state_dir = std::path::absolute(&args.state_dir).map_err(io_err(&args.state_dir))?;
        args.runtime_root =
            std::path::absolute(&args.runtime_root).map_err(io_err(&args.runtime_root))?;
        let mut child = Command::new(&opts.binary)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ShimError::Spawn {
                binary: opts.binary.clone(),
                source,
            })?;
        // The daemonized grandchild writes one line and closes its end; the child itself
        // exits at once.
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait().map_err(|source| ShimError::Spawn {
            binary: opts.binary.clone(),
            source,
        })?;
        let launch_failed = |message: String| ShimError::Launch {
            id: args.id.clone(),
            message,
        };
        let Some(line) = out.lines().next() else {
            let msg = err.trim();
            return Err(launch_failed(if msg.is_empty() {
                format!("it exited ({status}) without reporting readiness")
            } else {
                msg.to_string()
            }));
        };
        let launch: Launch = serde_json::from_str(line)
            .map_err(|e| launch_failed(format!("unreadable readiness line {line:?}: {e}")))?;
        if let Some(message) = launch.error {
            return Err(launch_failed(message));
        }
        Ok(ShimHandle::at(&args.state_dir))
    }
}

/// A handle on a running shim, by its state directory. Cheap: it holds no connection.
#[derive(Debug, Clone)]
pub struct ShimHandle {
    state_dir: PathBuf,
    socket: PathBuf,
}

impl ShimHandle {
    fn at(state_dir: &Path) -> Self {
        ShimHandle {
            state_dir: state_dir.to_path_buf(),
            socket: state_dir.join(state::SOCKET),
        }
    }

    /// Reconnects to the shim that owns `state_dir`, checking that it answers.
    pub fn connect(state_dir: &Path) -> Result<Self, ShimError> {
        let h = Self::at(state_dir);
        h.state()?;
        Ok(h)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The current log file (`container.log`); rotated files sit next to it.
    pub fn log_path(&self) -> PathBuf {
        self.state_dir.join(state::LOG)
    }

    pub fn state(&self) -> Result<ContainerState, ShimError> {
        let r = self.call(&Request::State, "state", Some(CALL_TIMEOUT))?;
        r.state
            .ok_or_else(|| self.malformed("state", "no state in the answer"))
    }

    /// Starts the created container.
    pub fn start(&self) -> Result<(), ShimError> {
        self.call(&Request::Start, "start", Some(CALL_TIMEOUT))
            .map(drop)
    }

    /// Sends `signal` to the container's init, or with `all` to all its processes.
    pub fn kill(&self, signal: i32, all: bool) -> Result<(), ShimError> {
        self.call(&Request::Kill { signal, all }, "kill", Some(CALL_TIMEOUT))
            .map(drop)
    }

    /// Blocks until the container has exited and its output is in the log.
    pub fn wait(&self) -> Result<ExitStatus, ShimError> {
        let r = self.call(&Request::Wait, "wait", None)?;
        r.exit
            .ok_or_else(|| self.malformed("wait", "no exit in the answer"))
    }

    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ShimError> {
        self.call(
            &Request::Resize { rows, cols },
            "resize",
            Some(CALL_TIMEOUT),
        )
        .map(drop)
    }

    /// Deletes the container through the runtime; the shim exits once the exit is recorded.
    pub fn delete(&self, force: bool) -> Result<(), ShimError> {
        self.call(&Request::Delete { force }, "delete", Some(CALL_TIMEOUT))
            .map(drop)
    }

    /// Lets a shim whose container has exited go away.
    pub fn shutdown(&self) -> Result<(), ShimError> {
        self.call(&Request::Shutdown, "shutdown", Some(CALL_TIMEOUT))
            .map(drop)
    }

    /// Attaches to the live output (and, with `stdin`, the input) of the container.
    pub fn attach(&self, stdin: bool, stdin_once: bool) -> Result<Attach, ShimError> {
        let (sock, reader, _) = self.exchange(
            &Request::Attach { stdin, stdin_once },
            "attach",
            Some(CALL_TIMEOUT),
        )?;
        let _ = sock.set_read_timeout(None);
        Ok(Attach {
            sock,
            reader,
            path: self.socket.clone(),
        })
    }

    fn call(
        &self,
        req: &Request,
        op: &'static str,
        timeout: Option<Duration>,
    ) -> Result<Response, ShimError> {
        self.exchange(req, op, timeout).map(|(_, _, r)| r)
    }

    fn exchange(
        &self,
        req: &Request,
        op: &'static str,
        timeout: Option<Duration>,
    ) -> Result<(UnixStream, BufReader<UnixStream>, Response), ShimError> {
        let io_err = |source| ShimError::Io {
            path: self.socket.clone(),
            source,
        };
        let mut sock = UnixStream::connect(&self.socket).map_err(io_err)?;
        sock.set_read_timeout(timeout).map_err(io_err)?;
        let mut line = serde_json::to_vec(req).map_err(|e| self.malformed(op, &e.to_string()))?;
        line.push(b'\n');
        sock.write_all(&line).map_err(io_err)?;
        let mut reader = BufReader::new(sock.try_clone().map_err(io_err)?);
        let mut answer = String::new();
        reader.read_line(&mut answer).map_err(io_err)?;
        if answer.is_empty() {
            return Err(self.malformed(op, "connection closed without an answer"));
        }
        let r: Response =
            serde_json::from_str(&answer).map_err(|e| self.malformed(op, &e.to_string()))?;
        if !r.ok {
            return Err(ShimError::Refused {
                path: self.socket.clone(),
                op,
                message: r.error.unwrap_or_else(|| "no reason given".into()),
            });
        }
        Ok((sock, reader, r))
    }

    fn malformed(&self, op: &'static str, detail: &str) -> ShimError {
        ShimError::Protocol {
            path: self.socket.clone(),
            op,
            detail: detail.to_string(),
        }
    }
}

/// A live attach connection.
pub struct Attach {
    sock: UnixStream,
    reader: BufReader<UnixStream>,
    path: PathBuf,
}

impl Attach {
    /// The next chunk of output, or `None` once the container's output has ended.
    pub fn next_chunk(&mut self) -> Result<Option<(Stream, Vec<u8>)>, ShimError> {
        let io_err = |source| ShimError::Io {
            path: self.path.clone(),
            source,
        };
        let mut h = [0u8; FRAME_HEADER];
        match self.reader.read_exact(&mut h) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io_err(e)),
        }
        let (stream, len) = decode_frame_header(&h);
        let stream = match stream {
            FRAME_STDOUT => Stream::Stdout,
            FRAME_STDERR => Stream::Stderr,
            other => {
                return Err(ShimError::Protocol {
                    path: self.path.clone(),
                    op: "attach",
                    detail: format!("unknown stream {other}"),
                });
            }
        };
        let mut data = vec![0u8; len];
        self.reader.read_exact(&mut data).map_err(io_err)?;
        Ok(Some((stream, data)))
    }

    /// Sends bytes to the container's stdin.
    pub fn write_stdin(&mut self, data: &[u8]) -> Result<(), ShimError> {
        self.sock.write_all(data).map_err(|source| ShimError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Ends our input; with `stdin_once` this closes the container's stdin.
    pub fn close_stdin(&mut self) -> Result<(), ShimError> {
        self.sock
            .shutdown(Shutdown::Write)
            .map_err(|source| ShimError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Bounds how long [`Attach::next_chunk`] blocks.
    pub fn set_timeout(&mut self, t: Option<Duration>) -> Result<(), ShimError> {
        self.sock
            .set_read_timeout(t)
            .map_err(|source| ShimError::Io {
                path: self.path.clone(),
                source,
            })
    }
}
