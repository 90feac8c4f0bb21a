//! HTTP plumbing shared by every endpoint: the response body type (whole or streamed),
//! query strings, JSON replies, the API version prefix, and Docker's stream framing.
//! Nothing here knows about containers.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode, header};
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Every response body: a whole buffer or a stream fed through a channel.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub type Reply = Response<Body>;

/// The lowest API version answered, as in Docker 25+.
pub const MIN_API_VERSION: &str = "1.24";
/// The API version this server speaks (Docker 28.3's).
pub const API_VERSION: &str = "1.51";

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A body fed by the returned sender; the stream ends when the sender is dropped.
pub fn channel() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    (tx, StreamBody::new(s).boxed_unsync())
}

pub fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(empty()))
}

pub fn ok_json(value: &serde_json::Value) -> Reply {
    json_reply(StatusCode::OK, value)
}

pub fn no_content() -> Reply {
    status_only(StatusCode::NO_CONTENT)
}

pub fn status_only(status: StatusCode) -> Reply {
    Response::builder()
        .status(status)
        .body(empty())
        .unwrap_or_else(|_| Response::new(empty()))
}

pub fn error_reply(e: &ApiError) -> Reply {
    if e.status == StatusCode::NOT_MODIFIED {
        return status_only(e.status);
    }
    let mut r = json_reply(e.status, &serde_json::Value::Null);
    *r.body_mut() = full(e.body());
    r
}

/// A streamed reply with the given content type.
pub fn stream_reply(content_type: &str, body: Body) -> Reply {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_else(|_| Response::new(empty()))
}

/// The query string of a request, decoded.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The last value of `k`, if not empty.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of a repeated parameter (`names=a&names=b`).
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Docker's booleans: `1`, `true`, `True` (and a present empty value counts as false).
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True" | "yes"))
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        self.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid {k}: {v:?}")))
            })
            .transpose()
    }
}

/// An API version, (major, minor).
pub type Version = (u32, u32);

/// Splits `/v1.43/containers/json` into the version and the rest; unprefixed paths have no
/// version. A version outside what this server speaks is refused.
pub fn split_version(path: &str) -> Result<(Option<Version>, &str), ApiError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let (v, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(version) = parse_version(v) else {
        return Ok((None, path));
    };
    let min = parse_version(MIN_API_VERSION).unwrap_or((1, 24));
    let max = parse_version(API_VERSION).unwrap_or((1, 51));
    if version < min {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if version > max {
        return Err(ApiError::bad_request(format!(
            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    Ok((Some(version), tail))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Docker's multiplexed stream frame: `[stream, 0, 0, 0, len (u32 big endian)]` + data.
/// Stream 0 is stdin, 1 stdout, 2 stderr.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    Bytes::from(out)
}

/// One JSON value and a newline, as Docker's JSON-lines streams (pull, push, events).
pub fn json_line(value: &serde_json::Value) -> Bytes {
    let mut v = serde_json::to_vec(value).unwrap_or_default();
    v.extend_from_slice(b"\r\n");
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            split_version("/v1.43/containers/json").unwrap(),
            (Some((1, 43)), "/containers/json")
        );
        assert_eq!(split_version("/_ping").unwrap(), (None, "/_ping"));
        assert_eq!(
            split_version("/volumes").unwrap(),
            (None, "/volumes"),
            "a path starting with v is not a version"
        );
        assert!(split_version("/v1.12/info").is_err());
        assert!(split_version("/v1.99/info").is_err());
    }

    #[test]
    fn frames_and_queries() {
        assert_eq!(&frame(1, b"hi")[..], &[1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        let q = Query::parse(Some("all=1&filters=%7B%22a%22%3A1%7D&force=false&t="));
        assert!(q.flag("all"));
        assert!(!q.flag("force"));
        assert_eq!(q.get("filters"), Some(r#"{"a":1}"#));
        assert_eq!(q.get("t"), None);
        assert!(Query::parse(Some("t=x")).int("t").is_err());
    }
}
