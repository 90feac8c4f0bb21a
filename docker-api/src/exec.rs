//! `POST /containers/{id}/exec`, `POST /exec/{id}/start`, `/exec/{id}/resize`,
//! `GET /exec/{id}/json`: an exec session is remembered from create to start; start runs
//! the runtime's `exec` command that berth's container layer builds, over the hijacked
//! connection — pipes framed as Docker's multiplexed stream, or with `Tty` the pty master
//! the runtime sends over a console socket, copied raw. The exit code is recorded before
//! the stream closes, as clients inspect the session right after.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use berth_node_agent::container::{ConsoleSocket, ExecOptions, Status};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::backend::{Backend, blocking, random_id};
use crate::error::{ApiError, ApiResult};
use crate::hijack::{self, Io};
use crate::http::{self, Query, Reply, frame, ok_json};

/// One exec session.
pub struct ExecSession {
    pub id: String,
    pub container: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    state: Mutex<ExecState>,
}

#[derive(Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i32>,
    pid: u32,
    /// The pty master (a clone), for resize.
    master: Option<File>,
    /// A size asked for before the pty existed.
    size: Option<(u16, u16)>,
}

impl ExecSession {
    fn lock(&self) -> std::sync::MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, code: i32) {
        let mut s = self.lock();
        s.running = false;
        s.exit_code = Some(code);
        s.master = None;
    }
}

fn set_winsize(master: &File, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize from our stack on a descriptor we own.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn create(b: &Arc<Backend>, q_id: &str, body: Bytes) -> ApiResult<Reply> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid exec config: {e}")))?;
    let args = strings(&v["Cmd"]);
    if args.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if v["Privileged"].as_bool() == Some(true) {
        return Err(ApiError::bad_request(
            "privileged exec is not supported by berth",
        ));
    }
    let b2 = b.clone();
    let q = q_id.to_string();
    let r = blocking(move || {
        let mut r = b2.containers.resolve(&q)?;
        b2.containers.observe(&mut r);
        Ok(r)
    })
    .await?;
    if r.state.status != Status::Running {
        return Err(ApiError::conflict(format!(
            "Container {} is not running",
            r.id
        )));
    }
    let s = Arc::new(ExecSession {
        id: random_id(),
        container: r.id.clone(),
        args,
        env: strings(&v["Env"]),
        workdir: v["WorkingDir"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from),
        user: v["User"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from),
        tty: v["Tty"].as_bool().unwrap_or(false),
        attach_stdin: v["AttachStdin"].as_bool().unwrap_or(false),
        attach_stdout: v["AttachStdout"].as_bool().unwrap_or(true),
        attach_stderr: v["AttachStderr"].as_bool().unwrap_or(true),
        state: Mutex::new(ExecState::default()),
    });
    b.execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(s.id.clone(), s.clone());
    b.container_event(
        &format!("exec_create: {}", s.args.join(" ")),
        &r,
        &[("execID", s.id.clone())],
    );
    Ok(http::json_reply(StatusCode::CREATED, &json!({"Id": s.id})))
}

fn session(b: &Backend, id: &str) -> ApiResult<Arc<ExecSession>> {
    b.execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

pub async fn inspect(b: &Arc<Backend>, id: &str) -> ApiResult<Reply> {
    let s = session(b, id)?;
    let st = s.lock();
    Ok(ok_json(&json!({
        "ID": s.id,
        "ContainerID": s.container,
        "Running": st.running,
        "ExitCode": st.exit_code,
        "Pid": st.pid,
        "OpenStdin": s.attach_stdin,
        "OpenStdout": s.attach_stdout,
        "OpenStderr": s.attach_stderr,
        "CanRemove": false,
        "DetachKeys": "",
        "ProcessConfig": {
            "tty": s.tty, "entrypoint": s.args[0], "arguments": &s.args[1..],
            "privileged": false, "user": s.user.clone().unwrap_or_default(),
        },
    })))
}

pub async fn resize(b: &Arc<Backend>, id: &str, q: &Query) -> ApiResult<Reply> {
    let s = session(b, id)?;
    let h = q.int("h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = q.int("w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let mut st = s.lock();
    match &st.master {
        Some(m) => set_winsize(m, h, w),
        None => st.size = Some((h, w)),
    }
    Ok(http::status_only(StatusCode::OK))
}

pub async fn start(
    b: &Arc<Backend>,
    req: &mut Request<Incoming>,
    id: &str,
    body: Bytes,
) -> ApiResult<Reply> {
    let s = session(b, id)?;
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid exec start: {e}")))?
    };
    let detach = v["Detach"].as_bool().unwrap_or(false);
    {
        let mut st = s.lock();
        if st.started {
            return Err(ApiError::conflict(format!(
                "exec {} has already been started",
                s.id
            )));
        }
        st.started = true;
        st.running = true;
        if let Some(size) = v["ConsoleSize"].as_array() {
            if let (Some(h), Some(w)) = (size.first(), size.get(1)) {
                st.size = Some((
                    h.as_u64().unwrap_or(0) as u16,
                    w.as_u64().unwrap_or(0) as u16,
                ));
            }
        }
    }
    let console = if s.tty {
        let parent = b
            .config
            .run_root
            .parent()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Some(ConsoleSocket::bind(&parent)?)
    } else {
        None
    };
    let b2 = b.clone();
    let s2 = s.clone();
    let console_path = console.as_ref().map(ConsoleSocket::path);
    let cmd = blocking(move || {
        Ok(b2.containers.exec_command(
            &s2.container,
            &ExecOptions {
                args: s2.args.clone(),
                env: s2.env.clone(),
                workdir: s2.workdir.clone(),
                user: s2.user.clone(),
                tty: s2.tty,
                console_socket: console_path,
            },
        )?)
    })
    .await;
    let cmd = match cmd {
        Ok(c) => c,
        Err(e) => {
            s.finish(126);
            return Err(e);
        }
    };
    if let Ok(r) = b.containers.resolve(&s.container) {
        b.container_event(
            &format!("exec_start: {}", s.args.join(" ")),
            &r,
            &[("execID", s.id.clone())],
        );
    }
    if detach {
        let mut cmd = cmd;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let s2 = s.clone();
        tokio::task::spawn_blocking(move || {
            // keep the console socket alive until the runtime has used it
            let _console = console;
            match cmd.spawn() {
                Ok(mut child) => {
                    s2.lock().pid = child.id();
                    let code = child.wait().map(exit_code).unwrap_or(126);
                    s2.finish(code);
                }
                Err(_) => s2.finish(126),
            }
        });
        return Ok(http::status_only(StatusCode::OK));
    }
    let (reply, pending) = hijack::hijack(req, s.tty);
    tokio::spawn(async move {
        let Some(io) = pending.into_io().await else {
            s.finish(130);
            return;
        };
        match console {
            Some(console) => run_tty(s, cmd, console, io).await,
            None => run_pipes(s, cmd, io).await,
        }
    });
    Ok(reply)
}

/// One output pipe of an exec'd process.
type Pipe = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s))
        .unwrap_or(1)
}

async fn run_pipes(s: Arc<ExecSession>, cmd: std::process::Command, io: Io) {
    let Io { reader, mut writer } = io;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(if s.attach_stdin && reader.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = writer
                .write_all(&frame(2, format!("exec failed: {e}\n").as_bytes()))
                .await;
            s.finish(126);
            let _ = writer.shutdown().await;
            return;
        }
    };
    s.lock().pid = child.id().unwrap_or(0);
    if let (Some(mut stdin), Some(mut reader)) = (child.stdin.take(), reader) {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut reader, &mut stdin).await;
            let _ = stdin.shutdown().await;
        });
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let pipes: [(u8, bool, Option<Pipe>); 2] = [
        (
            1,
            s.attach_stdout,
            child.stdout.take().map(|o| Box::new(o) as Pipe),
        ),
        (
            2,
            s.attach_stderr,
            child.stderr.take().map(|o| Box::new(o) as Pipe),
        ),
    ];
    for (stream, wanted, pipe) in pipes {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if wanted && tx.send(frame(stream, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let mut client_gone = false;
    while let Some(chunk) = rx.recv().await {
        if !client_gone && writer.write_all(&chunk).await.is_err() {
            client_gone = true;
        }
    }
    let code = child.wait().await.map(exit_code).unwrap_or(1);
    s.finish(code);
    let _ = writer.shutdown().await;
}

async fn run_tty(
    s: Arc<ExecSession>,
    mut cmd: std::process::Command,
    console: ConsoleSocket,
    io: Io,
) {
    let Io { reader, mut writer } = io;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let s2 = s.clone();
    // spawn, then wait for the runtime to hand over the pty master
    let started = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().ok()?;
        s2.lock().pid = child.id();
        let master = console.receive(|| matches!(child.try_wait(), Ok(None)));
        match master {
            Ok(m) => Some((child, File::from(m))),
            Err(_) => {
                let code = child.wait().map(exit_code).unwrap_or(126);
                s2.finish(code);
                None
            }
        }
    })
    .await
    .ok()
    .flatten();
    let Some((mut child, master)) = started else {
        if s.lock().running {
            s.finish(126);
        }
        let _ = writer.shutdown().await;
        return;
    };
    {
        let mut st = s.lock();
        if let Some((h, w)) = st.size.take() {
            set_winsize(&master, h, w);
        }
        st.master = master.try_clone().ok();
    }
    if let (Some(mut reader), Ok(mut to_pty)) = (reader, master.try_clone()) {
        let (in_tx, in_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            while let Ok(data) = in_rx.recv() {
                if to_pty.write_all(&data).is_err() {
                    return;
                }
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 || in_tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let mut from_pty = master;
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        // EIO once the last process holding the pty's other end has exited
        while let Ok(n) = from_pty.read(&mut buf) {
            if n == 0 || tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                return;
            }
        }
    });
    let mut client_gone = false;
    while let Some(chunk) = rx.recv().await {
        if !client_gone && writer.write_all(&chunk).await.is_err() {
            client_gone = true;
        }
        let _ = writer.flush().await;
    }
    let code = tokio::task::spawn_blocking(move || child.wait().map(exit_code).unwrap_or(1))
        .await
        .unwrap_or(1);
    s.finish(code);
    let _ = writer.shutdown().await;
}
