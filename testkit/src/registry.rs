//! Debian's `docker-registry` (distribution 2.8) on 127.0.0.1: a free port, filesystem
//! storage in a temp dir, and whatever auth or TLS section the test adds. Killed on drop.
//! It never listens anywhere but loopback.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// What a test adds to the registry's configuration.
#[derive(Debug, Default)]
pub struct Options {
    /// Lines under `http:` (indented two spaces), e.g. a `tls:` block.
    pub http: String,
    /// Top-level sections, e.g. an `auth:` block.
    pub sections: String,
    /// The registry serves HTTPS: being connectable is then enough to count as up (a plain
    /// `GET /v2/` would get a 400).
    pub tls: bool,
}

/// A running registry; `dir` holds its config and storage (`dir/data`).
#[derive(Debug)]
pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// No auth, plain HTTP.
    pub fn start() -> Registry {
        Registry::start_with(tempfile::tempdir().expect("tempdir"), &Options::default())
    }

    /// A registry configured by `options`, keeping its files in `dir` (where the caller may
    /// already have put an htpasswd file or certificates). A port taken between picking and
    /// binding is retried with another.
    pub fn start_with(dir: tempfile::TempDir, options: &Options) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry package"
        );
        for _ in 0..5 {
            let addr = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: berth-test-secret\n{}{}",
                dir.path().join("data").display(),
                options.http,
                options.sections
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).expect("registry config");
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn docker-registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    let mut text = String::new();
                    if let Some(err) = child.stderr.take() {
                        for line in BufReader::new(err).lines().map_while(Result::ok).take(20) {
                            text.push_str(&line);
                            text.push('\n');
                        }
                    }
                    eprintln!("docker-registry exited ({status}) on {addr}: {text}");
                    break; // most likely the port was taken: try another
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    && (options.tls || v2_answers(addr))
                {
                    // Drained in the background so the registry never blocks on it.
                    if let Some(err) = child.stderr.take() {
                        std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
                    }
                    return Registry { child, addr, dir };
                }
                assert!(
                    Instant::now() < deadline,
                    "docker-registry did not answer on {addr} within 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("docker-registry could not be started");
    }

    /// `127.0.0.1:port`, the registry part of references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An htpasswd file (bcrypt, from `htpasswd` of apache2-utils) for one user, written to
/// `dir/htpasswd`; the `auth:` section that uses it.
pub fn htpasswd_auth(dir: &Path, user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .expect("run htpasswd (apache2-utils)");
    assert!(out.status.success(), "htpasswd failed");
    let path = dir.join("htpasswd");
    std::fs::write(&path, &out.stdout).expect("write htpasswd");
    format!(
        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        path.display()
    )
}

/// `GET /v2/` answers 200 or 401 (then it is up, just protected).
fn v2_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return false;
    }
    let text = String::from_utf8_lossy(&head);
    text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.1 401")
}
