//! What the clients' tests do not show directly: version prefixes, `_ping` headers and
//! Docker's error shapes and status codes, with plain HTTP requests on the socket.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use support::Server;

/// One request on a fresh connection; (status, headers and body as text).
fn request(s: &Server, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn versions_ping_and_docker_error_shapes() {
    let s = Server::start();
    let (st, text) = request(&s, "HEAD", "/_ping", None);
    assert_eq!(st, 200);
    assert!(
        text.to_ascii_lowercase().contains("api-version: 1.51"),
        "{text}"
    );
    for v in ["/v1.24", "/v1.41", "/v1.51", ""] {
        let (st, text) = request(&s, "GET", &format!("{v}/version"), None);
        assert_eq!(st, 200, "{v}: {text}");
        assert!(text.contains(r#""ApiVersion":"1.51""#), "{text}");
    }
    let (st, text) = request(&s, "GET", "/v1.12/version", None);
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("too old"), "{text}");

    let (st, text) = request(&s, "GET", "/containers/nosuch/json", None);
    assert_eq!(st, 404);
    assert!(
        text.contains(r#"{"message":"No such container: nosuch"}"#),
        "{text}"
    );
    let (st, _) = request(&s, "GET", "/images/nosuch:1/json", None);
    assert_eq!(st, 404);
    let (st, _) = request(&s, "GET", "/networks/nosuch", None);
    assert_eq!(st, 404);
    let (st, _) = request(&s, "GET", "/volumes/nosuch", None);
    assert_eq!(st, 404);
    let (st, _) = request(&s, "GET", "/nowhere", None);
    assert_eq!(st, 404);

    let create = r#"{"Image":"busybox","Cmd":["sleep","600"]}"#;
    let (st, text) = request(
        &s,
        "POST",
        "/v1.43/containers/create?name=twice",
        Some(create),
    );
    assert_eq!(st, 201, "{text}");
    let (st, text) = request(&s, "POST", "/containers/create?name=twice", Some(create));
    assert_eq!(st, 409, "a name in use: {text}");
    let (st, text) = request(
        &s,
        "POST",
        "/containers/create",
        Some(r#"{"Image":"busybox","HostConfig":{"BlkioWeight":300}}"#),
    );
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("BlkioWeight"), "{text}");
    let (st, _) = request(&s, "POST", "/containers/twice/start", None);
    assert_eq!(st, 204);
    let (st, _) = request(&s, "POST", "/containers/twice/start", None);
    assert_eq!(st, 304, "already started");
    let (st, _) = request(&s, "DELETE", "/containers/twice", None);
    assert_eq!(st, 409, "running");
    let (st, _) = request(&s, "POST", "/containers/twice/stop?t=0", None);
    assert_eq!(st, 204);
    let (st, _) = request(&s, "POST", "/containers/twice/stop", None);
    assert_eq!(st, 304, "already stopped");
    let (st, _) = request(&s, "POST", "/containers/twice/kill", None);
    assert_eq!(st, 409, "not running");
    let (st, text) = request(&s, "DELETE", "/images/busybox", None);
    assert_eq!(st, 409, "used by a container: {text}");
    let (st, _) = request(&s, "DELETE", "/containers/twice", None);
    assert_eq!(st, 204);
    // a build without a context streams Docker's error object, not a bare HTTP error
    let (st, text) = request(&s, "POST", "/build", None);
    assert_eq!(st, 200);
    assert!(
        text.contains("\"errorDetail\"") && text.contains("Dockerfile"),
        "{text}"
    );
    let (st, _) = request(&s, "POST", "/swarm/init", None);
    assert_eq!(st, 501);
}
