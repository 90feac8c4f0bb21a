//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with
//! a free port and filesystem storage in a temp dir, optionally behind htpasswd basic auth or
//! the token (bearer) flow with an in-test token server. Killed and removed on Drop.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::token_server::TokenServer;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";

pub enum Auth {
    None,
    Basic,
    Token,
}

pub struct TestRegistry {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub token_server: Option<TokenServer>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

impl TestRegistry {
    pub fn start(auth: Auth) -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry package"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let auth_yaml = match auth {
            Auth::None => (String::new(), None),
            Auth::Basic => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", USER, PASSWORD])
                    .output()
                    .expect("run htpasswd (apache2-utils)");
                assert!(out.status.success(), "htpasswd failed");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).unwrap();
                (
                    format!(
                        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                        path.display()
                    ),
                    None,
                )
            }
            Auth::Token => {
                let server = TokenServer::start(USER, PASSWORD);
                let bundle = dir.path().join("token-root.pem");
                std::fs::write(&bundle, &server.cert_pem).unwrap();
                (
                    format!(
                        "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                        server.realm(),
                        super::token_server::SERVICE,
                        super::token_server::ISSUER,
                        bundle.display()
                    ),
                    Some(server),
                )
            }
        };
        let (auth_yaml, token_server) = auth_yaml;
        // The port is free when picked; another process could take it before the registry
        // binds, so a failed start is retried with a new one.
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: berth-test-secret\n{auth_yaml}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
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
                if let Some(status) = child.try_wait().unwrap() {
                    let mut text = String::new();
                    if let Some(err) = child.stderr.take() {
                        for line in BufReader::new(err).lines().map_while(Result::ok).take(20) {
                            text.push_str(&line);
                            text.push('\n');
                        }
                    }
                    eprintln!("docker-registry exited ({status}) on {addr}: {text}");
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    && v2_answers(addr)
                {
                    // Drain stderr in the background so the registry never blocks on it.
                    if let Some(err) = child.stderr.take() {
                        std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
                    }
                    return Self {
                        child,
                        addr,
                        dir,
                        token_server,
                    };
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

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

/// `GET /v2/` answers 200 or 401 (then it is up, just protected).
fn v2_answers(addr: SocketAddr) -> bool {
    use std::io::{Read as _, Write as _};
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

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
