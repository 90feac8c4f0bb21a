//! The control socket's connections: reading line-delimited requests, answering them,
//! holding `wait`ers until the exit is recorded, and turning `attach` connections into
//! output streams and stdin. Runs inside the shim's event loop; it never blocks except on
//! the runtime commands a request asks for.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::poll::PollFlags;

use super::Supervisor;
use super::stdio::set_window_size;
use crate::protocol::{ContainerState, Request, Response, Status};

/// What a connection is doing.
pub(super) enum ClientMode {
    Requests,
    Waiting,
    Attached {
        stdin: bool,
        stdin_once: bool,
    },
    /// Flush what is queued, then close.
    Closing,
}

/// One connection on the control socket.
pub(super) struct Client {
    pub(super) sock: UnixStream,
    pub(super) inbuf: Vec<u8>,
    pub(super) outbuf: Vec<u8>,
    pub(super) mode: ClientMode,
    pub(super) gone: bool,
}

impl Supervisor {
    pub(super) fn accept_clients(&mut self) {
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

    pub(super) fn on_client(&mut self, i: usize, rev: PollFlags, buf: &mut [u8]) {
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
                        // A client that closes with our output unread makes this read fail
                        // (ECONNRESET) instead of returning EOF; its input has ended all the
                        // same, and with `stdin_once` the container must see that.
                        self.client_eof(i);
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
                        "container {id} has not exited; kill or delete it first"
                    ))
                } else {
                    self.finishing = true;
                    Response::ok()
                }
            }
        })
    }

    pub(super) fn flush_stdin(&mut self) {
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
