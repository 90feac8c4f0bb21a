//! Connection hijacking for attach and exec: with `Connection: Upgrade` / `Upgrade: tcp`
//! the server answers `101 UPGRADED` and the socket becomes a raw two-way stream (what the
//! docker CLI and docker-py send); without it the output is streamed as the response body
//! and there is no input. Either way the endpoint gets one [`Io`].

use std::pin::Pin;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::http::{self, Reply};

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The hijacked connection: the client's input (when upgraded) and where output goes.
pub struct Io {
    pub reader: Option<Reader>,
    pub writer: Writer,
}

/// What becomes an [`Io`] once the response is on its way.
pub enum Pending {
    Upgrade(hyper::upgrade::OnUpgrade),
    Ready(Io),
}

impl Pending {
    pub async fn into_io(self) -> Option<Io> {
        match self {
            Pending::Ready(io) => Some(io),
            Pending::Upgrade(on) => {
                let upgraded = on.await.ok()?;
                let (r, w) = tokio::io::split(TokioIo::new(upgraded));
                Some(Io {
                    reader: Some(Box::pin(r)),
                    writer: Box::pin(w),
                })
            }
        }
    }
}

pub fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp") || v.eq_ignore_ascii_case("h2c"))
}

/// The response to send now and the connection to use after it.
pub fn hijack(req: &mut Request<Incoming>, tty: bool) -> (Reply, Pending) {
    let content_type = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    if wants_upgrade(req) {
        let on = hyper::upgrade::on(req);
        let reply = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "tcp")
            .header(header::CONTENT_TYPE, content_type)
            .body(http::empty())
            .unwrap_or_else(|_| Response::new(http::empty()));
        return (reply, Pending::Upgrade(on));
    }
    // no upgrade asked: a pipe whose far end is the response body
    let (near, far) = tokio::io::duplex(64 * 1024);
    let stream = tokio_util::io::ReaderStream::new(far);
    let body = http_body_util::StreamBody::new(futures_util::StreamExt::filter_map(
        stream,
        |r| async move { r.ok().map(|b| Ok(hyper::body::Frame::data(b))) },
    ));
    let body = http_body_util::BodyExt::boxed_unsync(body);
    (
        http::stream_reply(content_type, body),
        Pending::Ready(Io {
            reader: None,
            writer: Box::pin(near),
        }),
    )
}
