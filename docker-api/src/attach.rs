//! `POST /containers/{id}/attach`: the container's live output (framed unless it has a
//! TTY) and, with `stdin=1` on a container created with `OpenStdin`, its input, over a
//! hijacked connection. Clients attach before they start the container (`docker run`);
//! such a request waits for `start` to hand it the shim's stream, so no output is lost.

use std::sync::Arc;

use berth_node_agent::container::Status;
use bytes::Bytes;
use hyper::Request;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::backend::{AttachHandoff, Backend, blocking};
use crate::error::ApiResult;
use crate::hijack::{self, Io};
use crate::http::{Query, Reply, frame};

pub async fn attach(
    b: &Arc<Backend>,
    req: &mut Request<Incoming>,
    q_id: &str,
    q: &Query,
) -> ApiResult<Reply> {
    let b2 = b.clone();
    let q_id2 = q_id.to_string();
    let r = blocking(move || {
        let mut r = b2.containers.resolve(&q_id2)?;
        b2.containers.observe(&mut r);
        Ok(r)
    })
    .await?;
    let want_stdin = q.flag("stdin") && r.config.stdin;
    let (want_out, want_err) = (q.flag("stdout"), q.flag("stderr"));
    let with_logs = q.flag("logs");
    let tty = r.config.tty;
    let id = r.id.clone();

    // Register before answering: the client sends `start` as soon as it has our reply.
    let (handoff_rx, running) = if r.state.status == Status::Running {
        (None, true)
    } else {
        let (tx, rx) = oneshot::channel();
        b.pending_attach
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default()
            .push(tx);
        (Some(rx), false)
    };
    let (reply, pending) = hijack::hijack(req, tty);
    let b2 = b.clone();
    tokio::spawn(async move {
        let Some(io) = pending.into_io().await else {
            return;
        };
        let handoff = if running {
            let dir = b2.containers.shim_dir(&id);
            let h = tokio::task::spawn_blocking(move || {
                let shim = berth_shim::ShimHandle::connect(&dir).ok()?;
                let attach = shim.attach(false, false).ok()?;
                Some(AttachHandoff { shim, attach })
            })
            .await
            .ok()
            .flatten();
            match h {
                Some(h) => h,
                None => {
                    tracing::warn!(container = %id, "attach: the container's shim did not answer");
                    return;
                }
            }
        } else {
            match handoff_rx {
                Some(rx) => match rx.await {
                    Ok(h) => h,
                    Err(_) => {
                        tracing::debug!(container = %id, "attach: the container never started");
                        return;
                    }
                },
                None => return,
            }
        };
        let mut prefix = Vec::new();
        if with_logs {
            let (b3, id2) = (b2.clone(), id.clone());
            prefix = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let _ = b3.containers.logs(&id2, &Default::default(), |rec| {
                    let s = match rec.stream {
                        berth_shim::log::Stream::Stdout => 1,
                        berth_shim::log::Stream::Stderr => 2,
                    };
                    out.push((s, rec.log.clone().into_bytes()));
                    true
                });
                out
            })
            .await
            .unwrap_or_default();
        }
        pump(io, handoff, prefix, want_stdin, want_out, want_err, tty).await;
    });
    Ok(reply)
}

/// Copies the shim's output to the client (and the client's input to the shim) until
/// the output ends.
async fn pump(
    io: Io,
    h: AttachHandoff,
    prefix: Vec<(u8, Vec<u8>)>,
    want_stdin: bool,
    want_out: bool,
    want_err: bool,
    tty: bool,
) {
    let Io { reader, mut writer } = io;
    if want_stdin {
        if let Some(mut reader) = reader {
            let shim = h.shim.clone();
            let (in_tx, in_rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
            tokio::task::spawn_blocking(move || {
                let mut input = match shim.attach(true, true) {
                    Ok(i) => i,
                    Err(e) => {
                        tracing::warn!(error = %e, "attach: cannot open the container's stdin");
                        return;
                    }
                };
                tracing::debug!("attach: stdin attached");
                loop {
                    match in_rx.recv() {
                        Ok(Some(data)) => {
                            if let Err(e) = input.write_stdin(&data) {
                                tracing::debug!(error = %e, "attach: stdin closed by the container");
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            tracing::debug!("attach: the client's input ended without an end mark");
                            break;
                        }
                    }
                }
                match input.close_stdin() {
                    Ok(()) => {
                        tracing::debug!("attach: stdin closed after the client's input ended")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "attach: cannot close the container's stdin")
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    match reader.read(&mut buf).await {
                        Ok(0) => {
                            tracing::debug!("attach: the client closed its input");
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "attach: reading the client's input failed");
                            break;
                        }
                        Ok(n) => {
                            if in_tx.send(Some(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = in_tx.send(None);
            });
        }
    }
    let encode = move |s: u8, data: &[u8]| -> Bytes {
        if tty {
            Bytes::copy_from_slice(data)
        } else {
            frame(s, data)
        }
    };
    for (s, data) in prefix {
        if (s == 1 && want_out) || (s == 2 && want_err) {
            let _ = writer.write_all(&encode(s, &data)).await;
        }
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let mut attach = h.attach;
    tokio::task::spawn_blocking(move || {
        while let Ok(Some((stream, data))) = attach.next_chunk() {
            let s = match stream {
                berth_shim::log::Stream::Stdout => 1,
                berth_shim::log::Stream::Stderr => 2,
            };
            if (s == 1 && !want_out) || (s == 2 && !want_err) {
                continue;
            }
            if tx.blocking_send(encode(s, &data)).is_err() {
                return;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if writer.write_all(&chunk).await.is_err() {
            return;
        }
        let _ = writer.flush().await;
    }
    let _ = writer.shutdown().await;
}
