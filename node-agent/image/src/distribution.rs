//! The read-only side of the OCI distribution API over this node's content store, so that
//! cluster peers pull images from each other with the ordinary registry client instead of
//! needing an external registry: `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<tag|digest>`,
//! `GET|HEAD /v2/<name>/blobs/<digest>`. Writes are refused (405, `UNSUPPORTED`).
//!
//! Names resolve as the store names them (`busybox:latest` is `docker.io/library/busybox`),
//! so a peer asks `<node>/<name>:<tag>` for the image the user knows as `<name>:<tag>`.
//! Blobs are served by digest from the store, verified as they are read.
//!
//! Transport security is the caller's: [`serve_connection`] takes any byte stream, which in
//! a cluster is a mutual-TLS stream accepted with the node's certificate; [`serve`] is the
//! plain-TCP loop for loopback use and tests.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::digest::Digest;
use crate::reference::Reference;
use crate::store::{Store, StoreError};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Serves connections accepted on `listener` until it fails.
pub async fn serve(listener: TcpListener, store: Arc<Store>) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve_connection(stream, store.clone()));
    }
}

/// Serves one connection (plain or already TLS-wrapped) until the peer closes it.
pub async fn serve_connection<S>(io: S, store: Arc<Store>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let store = store.clone();
        async move { Ok::<_, Infallible>(handle(&store, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(error = %e, "distribution connection ended with an error");
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Base,
    Manifest { name: String, reference: String },
    Blob { name: String, digest: String },
}

/// Splits `/v2/<name>/(manifests|blobs)/<ref>`; names may contain slashes.
fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    for (marker, blob) in [("/manifests/", false), ("/blobs/", true)] {
        if let Some(at) = rest.rfind(marker) {
            let (name, reference) = (&rest[..at], &rest[at + marker.len()..]);
            if name.is_empty() || reference.is_empty() || reference.contains('/') {
                return None;
            }
            return Some(if blob {
                Route::Blob {
                    name: name.to_string(),
                    digest: reference.to_string(),
                }
            } else {
                Route::Manifest {
                    name: name.to_string(),
                    reference: reference.to_string(),
                }
            });
        }
    }
    None
}

async fn handle(store: &Arc<Store>, req: Request<Incoming>) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this node serves images read-only",
        );
    }
    match route(req.uri().path()) {
        Some(Route::Base) => json_reply(StatusCode::OK, &json!({})),
        Some(Route::Manifest { name, reference }) => {
            let store = store.clone();
            match tokio::task::spawn_blocking(move || manifest(&store, &name, &reference)).await {
                Ok(Ok((digest, media_type, bytes))) => {
                    let len = bytes.len();
                    let body = if head {
                        Bytes::new()
                    } else {
                        Bytes::from(bytes)
                    };
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, media_type)
                        .header(header::CONTENT_LENGTH, len)
                        .header("Docker-Content-Digest", digest.to_string())
                        .header("Docker-Distribution-API-Version", "registry/2.0")
                        .body(full(body))
                        .unwrap_or_else(|_| Response::new(empty()))
                }
                Ok(Err(refusal)) => refusal.reply(),
                Err(_) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    "lookup failed",
                ),
            }
        }
        Some(Route::Blob { digest, .. }) => blob(store, &digest, head).await,
        None => error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such route"),
    }
}

type Found = (Digest, String, Vec<u8>);

/// A refusal before it becomes a response: status, the spec's error code, a message.
struct Refusal(StatusCode, &'static str, String);

impl Refusal {
    fn reply(self) -> Response<Body> {
        error(self.0, self.1, &self.2)
    }
}

fn manifest(store: &Store, name: &str, reference: &str) -> Result<Found, Refusal> {
    let unknown = |why: String| Refusal(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", why);
    let joined = if reference.contains(':') {
        format!("{name}@{reference}")
    } else {
        format!("{name}:{reference}")
    };
    let r = Reference::parse(&joined).map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("{joined}: {e}"),
        )
    })?;
    let digest = match r.digest() {
        // a digest asked for directly: any manifest this store holds under it
        Some(d) if store.has_blob(d) => d.clone(),
        Some(d) => return Err(unknown(format!("{d} is not on this node"))),
        None => store
            .resolve(&r)
            .map_err(|e| unknown(format!("{}: {e}", r.familiar())))?,
    };
    let bytes = store
        .read_blob(&digest)
        .map_err(|e| unknown(e.to_string()))?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| crate::manifest::media_types::OCI_MANIFEST.to_string());
    Ok((digest, media_type, bytes))
}

async fn blob(store: &Arc<Store>, digest: &str, head: bool) -> Response<Body> {
    let unknown = |why: &str| error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", why);
    let Ok(digest) = Digest::parse(digest) else {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", digest);
    };
    let size = match store.blob_size(&digest) {
        Ok(s) => s,
        Err(StoreError::BlobNotFound { .. }) => {
            return unknown(&format!("{digest} is not on this node"));
        }
        Err(e) => return unknown(&e.to_string()),
    };
    let builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .header("Docker-Content-Digest", digest.to_string());
    if head {
        return builder
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty()));
    }
    let file = match store.open_blob(&digest) {
        Ok(f) => tokio::fs::File::from_std(f),
        Err(e) => return unknown(&e.to_string()),
    };
    let stream = tokio_util::io::ReaderStream::new(file).map_ok(Frame::data);
    builder
        .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty() -> Body {
    full(Bytes::new())
}

fn json_reply(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .body(full(Bytes::from(value.to_string())))
        .unwrap_or_else(|_| Response::new(empty()))
}

/// An error in the distribution spec's shape.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_reply(
        status,
        &json!({"errors": [{"code": code, "message": message, "detail": null}]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_names_with_slashes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2"), Some(Route::Base));
        assert_eq!(
            route("/v2/library/busybox/manifests/latest"),
            Some(Route::Manifest {
                name: "library/busybox".into(),
                reference: "latest".into()
            })
        );
        assert_eq!(
            route("/v2/a/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a".into(),
                digest: "sha256:00".into()
            })
        );
        assert_eq!(route("/v2/manifests/x"), None);
        assert_eq!(route("/v3/a/manifests/x"), None);
        assert_eq!(route("/v2/a/manifests/"), None);
    }
}
