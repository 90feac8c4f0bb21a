//! The HTTP/1.1 server: accepts connections on a unix socket, strips the `/vX.Y` prefix,
//! routes each request to its endpoint and answers errors in Docker's JSON shape. Routing
//! is one `match` over method and path segments, so the whole API surface reads in one
//! place; the endpoints live in the modules named after Docker's object kinds.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::backend::{Backend, random_id};
use crate::error::{ApiError, ApiResult};
use crate::http::{self, Query, Reply};
use crate::{archive, attach, build, containers, exec, images, networks, system, volumes};

/// Largest JSON request body accepted (container configs are a few kB).
const MAX_JSON_BODY: usize = 8 << 20;

/// Serves the Docker Engine API on `listener` until the listener fails.
pub async fn serve(listener: UnixListener, backend: Arc<Backend>) -> std::io::Result<()> {
    crate::health::resume(&backend);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve_io(stream, backend.clone()));
    }
}

/// Serves one connection of any transport (a TLS stream over TCP, for the mutual-TLS
/// listener berthd may add) until the client closes it.
pub async fn serve_io<S>(io: S, backend: Arc<Backend>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let backend = backend.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(backend, req).await) }
    });
    // mostly clients going away mid-request; kept at debug for diagnosing the rest
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

async fn handle(b: Arc<Backend>, req: Request<Incoming>) -> Reply {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    tracing::debug!(%method, %path, "request");
    match route(b, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, error = %e, "request refused");
            http::error_reply(&e)
        }
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn json_body(req: Request<Incoming>) -> ApiResult<Bytes> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_JSON_BODY);
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}

/// Writes a (possibly large) request body to a file under the backend's state dir.
async fn spool_body(b: &Backend, req: Request<Incoming>) -> ApiResult<std::path::PathBuf> {
    let dir = b.state_dir.join("tmp");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal(format!("create {}: {e}", dir.display())))?;
    let path = dir.join(format!("upload-{}", &random_id()[..16]));
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::internal(format!("create {}: {e}", path.display())))?;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )));
            }
        };
        if let Some(data) = frame.data_ref() {
            if let Err(e) = f.write_all(data).await {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(ApiError::internal(format!("write {}: {e}", path.display())));
            }
        }
    }
    f.flush()
        .await
        .map_err(|e| ApiError::internal(format!("write {}: {e}", path.display())))?;
    Ok(path)
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

fn not_yet(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!("{what} is not supported by berth's Docker API yet"),
    )
}

async fn route(b: Arc<Backend>, mut req: Request<Incoming>) -> ApiResult<Reply> {
    let raw_path = req.uri().path().to_string();
    let (version, path) = http::split_version(&raw_path)?;
    let path = percent_decode(path);
    let q = Query::parse(req.uri().query());
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = &method;
    let b = &b;
    match (segs.as_slice(), m) {
        (["_ping"], &Method::GET) => Ok(system::ping(false)),
        (["_ping"], &Method::HEAD) => Ok(system::ping(true)),
        (["version"], &Method::GET) => Ok(system::version()),
        (["info"], &Method::GET) => system::info(b).await,
        (["events"], &Method::GET) => system::events(b, &q).await,
        (["system", "df"], &Method::GET) => system::df(b).await,

        (["containers", "json"], &Method::GET) => containers::list(b, &q).await,
        (["containers", "create"], &Method::POST) => {
            containers::create(b, &q, json_body(req).await?).await
        }
        (["containers", "prune"], &Method::POST) => containers::prune(b, &q).await,
        (["containers", id], &Method::DELETE) => containers::remove(b, id, &q).await,
        (["containers", id, action], _) => {
            let id = id.to_string();
            match (*action, m) {
                ("json", &Method::GET) => containers::inspect(b, &id).await,
                ("start", &Method::POST) => containers::start(b, &id).await,
                ("stop", &Method::POST) => containers::stop(b, &id, &q).await,
                ("restart", &Method::POST) => containers::restart(b, &id, &q).await,
                ("kill", &Method::POST) => containers::kill(b, &id, &q).await,
                ("pause", &Method::POST) => containers::pause(b, &id, true).await,
                ("unpause", &Method::POST) => containers::pause(b, &id, false).await,
                ("wait", &Method::POST) => containers::wait(b, &id, &q).await,
                ("rename", &Method::POST) => containers::rename(b, &id, &q).await,
                ("top", &Method::GET) => containers::top(b, &id).await,
                ("stats", &Method::GET) => containers::stats(b, &id, &q).await,
                ("resize", &Method::POST) => containers::resize(b, &id, &q).await,
                ("logs", &Method::GET) => containers::logs(b, &id, &q).await,
                ("attach", &Method::POST) => attach::attach(b, &mut req, &id, &q).await,
                ("exec", &Method::POST) => exec::create(b, &id, json_body(req).await?).await,
                ("archive", &Method::HEAD) => archive::stat(b, &id, &q).await,
                ("archive", &Method::GET) => archive::get(b, &id, &q).await,
                ("archive", &Method::PUT) => {
                    let tar = spool_body(b, req).await?;
                    archive::put(b, &id, &q, tar).await
                }
                ("update" | "changes" | "export" | "checkpoints", _) => {
                    Err(not_yet(&format!("container {action}")))
                }
                _ => Err(ApiError::not_found("page not found")),
            }
        }

        (["exec", id, "start"], &Method::POST) => {
            let id = id.to_string();
            let body = {
                // the body is small; read it without giving up the request (needed to
                // upgrade the connection)
                let body = req.body_mut();
                let mut buf = Vec::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame
                        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
                    if let Some(d) = frame.data_ref() {
                        buf.extend_from_slice(d);
                        if buf.len() > MAX_JSON_BODY {
                            return Err(ApiError::bad_request("request body too large"));
                        }
                    }
                }
                Bytes::from(buf)
            };
            exec::start(b, &mut req, &id, body).await
        }
        (["exec", id, "resize"], &Method::POST) => exec::resize(b, id, &q).await,
        (["exec", id, "json"], &Method::GET) => exec::inspect(b, id).await,

        (["images", "json"], &Method::GET) => images::list(b, &q).await,
        (["images", "create"], &Method::POST) => {
            let auth = header(&req, "x-registry-auth");
            let body = if q.get("fromSrc").is_some() {
                Some(spool_body(b, req).await?)
            } else {
                None
            };
            images::create(b, &q, auth, body).await
        }
        (["images", "load"], &Method::POST) => {
            let tar = spool_body(b, req).await?;
            images::load(b, tar).await
        }
        (["images", "get"], &Method::GET) => images::get(b, q.all("names")).await,
        (["images", "prune"], &Method::POST) => images::prune(b, &q).await,
        (["images", "search"], _) => Err(not_yet("image search")),
        (["images", rest @ ..], _) if !rest.is_empty() => {
            let name_and_action = rest.join("/");
            let split = |suffix: &str| name_and_action.strip_suffix(suffix).map(String::from);
            match *m {
                Method::DELETE => images::remove(b, &name_and_action, &q).await,
                Method::GET => {
                    if let Some(n) = split("/json") {
                        images::inspect(b, &n).await
                    } else if let Some(n) = split("/history") {
                        images::history(b, &n).await
                    } else if let Some(n) = split("/get") {
                        images::get(b, vec![n]).await
                    } else {
                        Err(ApiError::not_found("page not found"))
                    }
                }
                Method::POST => {
                    if let Some(n) = split("/push") {
                        let auth = header(&req, "x-registry-auth");
                        images::push_image(b, &n, &q, auth).await
                    } else if let Some(n) = split("/tag") {
                        images::tag(b, &n, &q).await
                    } else {
                        Err(ApiError::not_found("page not found"))
                    }
                }
                _ => Err(ApiError::not_found("page not found")),
            }
        }
        (["build"], &Method::POST) => {
            let tar = spool_body(b, req).await?;
            build::build(b, &q, tar).await
        }
        (["build", "prune"], &Method::POST) => build::prune(b).await,
        (["build", ..], _) => Err(ApiError::not_found("page not found")),
        (["commit"], _) => Err(not_yet("commit")),

        (["networks"] | ["networks", ""], &Method::GET) => networks::list(b, &q).await,
        (["networks", "create"], &Method::POST) => networks::create(b, json_body(req).await?).await,
        (["networks", "prune"], &Method::POST) => networks::prune(b, &q).await,
        (["networks", id], &Method::GET) => networks::inspect(b, id).await,
        (["networks", id], &Method::DELETE) => networks::remove(b, id).await,
        (["networks", id, action @ ("connect" | "disconnect")], &Method::POST) => {
            let id = id.to_string();
            let connect = *action == "connect";
            networks::connect(b, &id, json_body(req).await?, connect).await
        }

        (["volumes"], &Method::GET) => volumes::list(b, &q).await,
        (["volumes", "create"], &Method::POST) => volumes::create(b, json_body(req).await?).await,
        (["volumes", "prune"], &Method::POST) => volumes::prune(b, &q, version).await,
        (["volumes", name], &Method::GET) => volumes::inspect(b, name).await,
        (["volumes", name], &Method::DELETE) => volumes::remove(b, name, &q).await,

        (["auth"], _) => Err(not_yet(
            "registry login through the API (use `berth login`)",
        )),
        (
            [
                "swarm" | "services" | "nodes" | "tasks" | "secrets" | "configs" | "plugins"
                | "session" | "distribution" | "grpc",
                ..,
            ],
            _,
        ) => Err(not_yet(segs[0])),
        _ => Err(ApiError::not_found("page not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn paths_are_decoded() {
        assert_eq!(percent_decode("127.0.0.1%3A5000/a"), "127.0.0.1:5000/a");
        assert_eq!(percent_decode("plain%"), "plain%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
