//! berthd's Docker Engine API (root, real containers): on TCP with mutual TLS, driven by the
//! real docker CLI with `--tlsverify` — certificates are made here with rcgen: one CA for
//! the server and its clients, and a second CA whose client must be refused; berthd refuses
//! at startup to serve it on TCP without client verification. And on its unix socket, the
//! networks of a project deployed through berthd's Compose API (what `berth up` does) are
//! listed by `docker network ls` with the Compose labels.
//!
//! The drop guard stops berthd, removes every container and the data root's networks (its
//! bridge and nft table), and puts `ip_forward` back.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_testkit::process::{self, Stdout};
use berth_testkit::{IpForward, bins, free_port, root};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
const RUN_ROOT: &str = root::RUN_ROOT;

fn bin_dir() -> PathBuf {
    bins::dir_of(BERTHD)
}

/// A CA and the PEM files of certificates it issued, written under `dir`.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).expect("ca dir");
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write ca");
        Ca {
            cert,
            key,
            dir: dir.to_path_buf(),
        }
    }

    /// Issues `<stem>-cert.pem`/`<stem>-key.pem` for `names` (IPs become IP SANs).
    fn issue(&self, stem: &str, names: &[&str], client: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        let (c, k) = (
            self.dir.join(format!("{stem}-cert.pem")),
            self.dir.join(format!("{stem}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

/// Runs a command with a deadline: a hang fails the test instead of stalling the run.
fn bounded(command: Command, secs: u64) -> Output {
    berth_testkit::output_within(command, secs)
}

/// berthd on a temp data root; on drop: stopped, containers and networks removed.
struct Daemon {
    root: tempfile::TempDir,
    child: Option<process::Daemon>,
    _forward: IpForward,
}

impl Daemon {
    fn new() -> Daemon {
        bins::ensure(&bin_dir(), bins::NETWORKED);
        Daemon {
            root: root::busybox_root("berthd-dtls-"),
            child: None,
            _forward: IpForward::hold(),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BERTHD);
        c.arg("--data-root")
            .arg(self.root.path())
            .arg("-H")
            .arg(format!("unix://{}/berth.sock", self.root.path().display()))
            .arg("--run-root")
            .arg(RUN_ROOT);
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("berthd.log")).unwrap_or_default()
    }

    fn start(&mut self, extra: &[&str], addr: SocketAddr) {
        self.start_until(extra, &format!("listen on {addr}"), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    fn start_until(&mut self, extra: &[&str], what: &str, ready: impl Fn() -> bool) {
        let mut command = self.command();
        command.args(extra);
        let log = self.root.path().join("berthd.log");
        let mut child = process::Daemon::spawn("berthd", command, &log, Stdout::Null);
        child.wait_ready(what, Duration::from_secs(30), ready);
        self.child = Some(child);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- berthd log ---\n{}", self.log());
        }
        // berthd first, so its reconciler recreates nothing
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
        root::clean(self.root.path(), &bin_dir());
    }
}

#[test]
fn plain_tcp_docker_api_is_refused_at_startup() {
    let daemon = Daemon::new();
    let mut c = daemon.command();
    c.args(["--docker-host", "tcp://127.0.0.1:1"]);
    let out = bounded(c, 30);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one clear line: {err}");
    assert!(
        lines[0].starts_with("berthd: refusing to serve the Docker API on tcp://127.0.0.1:1")
            && lines[0].contains("--docker-tlscacert"),
        "{err}"
    );
}

#[test]
fn docker_cli_over_mutual_tls_and_refused_clients() {
    let mut daemon = Daemon::new();
    let pki = daemon.root.path().join("pki");
    let ca = Ca::new(&pki.join("ca"), "berth test CA");
    let (server_cert, server_key) = ca.issue("server", &["127.0.0.1", "localhost"], false);
    let (client_cert, client_key) = ca.issue("client", &["client"], true);
    let other = Ca::new(&pki.join("other"), "another CA");
    let (other_cert, other_key) = other.issue("intruder", &["intruder"], true);

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let host = format!("tcp://{addr}");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    daemon.start(
        &[
            "--docker-host",
            &host,
            "--docker-tlscacert",
            &s(&ca.ca_pem()),
            "--docker-tlscert",
            &s(&server_cert),
            "--docker-tlskey",
            &s(&server_key),
        ],
        addr,
    );
    let docker_config = daemon.root.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let docker = |cert: &Path, key: &Path, args: &[&str]| -> Output {
        let mut c = Command::new("timeout");
        c.args(["--kill-after=5", "120", "docker", "--tlsverify"])
            .arg("--tlscacert")
            .arg(ca.ca_pem())
            .arg("--tlscert")
            .arg(cert)
            .arg("--tlskey")
            .arg(key)
            .args(["-H", &host])
            .args(args)
            .env("DOCKER_CONFIG", &docker_config)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH");
        bounded(c, 150)
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let v = docker(
        &client_cert,
        &client_key,
        &["version", "--format", "{{.Server.Platform.Name}}"],
    );
    assert!(v.status.success(), "docker version: {}", text(&v));
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "berth");

    let r = docker(
        &client_cert,
        &client_key,
        &["run", "--rm", "busybox", "echo", "over tls"],
    );
    assert!(r.status.success(), "docker run: {}", text(&r));
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "over tls");

    // a certificate from another CA: the handshake is refused
    let o = docker(&other_cert, &other_key, &["version"]);
    assert!(!o.status.success(), "another CA's client was served");
    assert!(
        text(&o).to_lowercase().contains("tls") || text(&o).contains("certificate"),
        "{}",
        text(&o)
    );

    // no client certificate at all (curl trusts the server, presents nothing)
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca.ca_pem())
        .arg(format!("https://127.0.0.1:{port}/_ping"));
    let o = bounded(c, 40);
    assert!(
        !o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("OK"),
        "a client without a certificate was served: {}",
        text(&o)
    );
    // and the same curl with the right client certificate is served: the refusal above was
    // the missing certificate, not a broken server
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca.ca_pem())
        .arg("--cert")
        .arg(&client_cert)
        .arg("--key")
        .arg(&client_key)
        .arg(format!("https://127.0.0.1:{port}/_ping"));
    let o = bounded(c, 40);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "OK");
}

#[test]
fn docker_lists_berth_up_networks_with_compose_labels() {
    use berth_api::v1;
    use berth_api::v1::compose_client::ComposeClient;

    let mut daemon = Daemon::new();
    let api = format!("unix://{}/berth.sock", daemon.root.path().display());
    let docker_sock = daemon.root.path().join("docker.sock");
    let ready_sock = docker_sock.clone();
    daemon.start_until(&[], "serve docker.sock", move || {
        std::os::unix::net::UnixStream::connect(&ready_sock).is_ok()
    });
    let project = format!("dnet{}", std::process::id());
    let app = serde_json::json!({
        "name": "",
        "services": {"web": {
            "image": "busybox:latest",
            "command": ["sh", "-c", "exec sleep 3600"],
            "networks": {"default": null},
            "stop_grace_period": "1s",
        }},
        "networks": {"default": {}},
    })
    .to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deployed = rt.block_on(async {
        let channel = berth_api::connect(&api, &Default::default()).await?;
        tokio::time::timeout(
            Duration::from_secs(60),
            ComposeClient::new(channel).deploy(v1::DeployRequest {
                project: project.clone(),
                app_json: app,
                working_dir: "/nonexistent".into(),
                config_files: vec!["/nonexistent/compose.yaml".into()],
                options: None,
                files: Default::default(),
            }),
        )
        .await
        .map_err(|e| anyhow_like(format!("deploy timed out: {e}")))?
        .map_err(|e| anyhow_like(format!("deploy: {e}")))
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        deployed.expect("deploy");
        let docker_config = daemon.root.path().join("docker-config");
        std::fs::create_dir_all(&docker_config).unwrap();
        let host = format!("unix://{}", docker_sock.display());
        let want = format!("{project}_default");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut c = Command::new("timeout");
            c.args(["--kill-after=5", "60", "docker", "-H", &host])
                .args(["network", "ls", "--filter"])
                .arg(format!("label=com.docker.compose.project={project}"))
                .args([
                    "--format",
                    "{{.Name}} {{.Label \"com.docker.compose.network\"}}",
                ])
                .env("DOCKER_CONFIG", &docker_config)
                .env_remove("DOCKER_HOST")
                .env_remove("DOCKER_CONTEXT");
            let o = bounded(c, 90);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if out == format!("{want} default") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the project network never showed up labelled: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }));
    // the project goes first (its container and network), whatever happened above
    let _ = rt.block_on(async {
        let channel = berth_api::connect(&api, &Default::default()).await.ok()?;
        tokio::time::timeout(
            Duration::from_secs(60),
            ComposeClient::new(channel).remove(v1::RemoveRequest {
                project: project.clone(),
                remove_volumes: true,
                timeout_seconds: Some(1),
                ..Default::default()
            }),
        )
        .await
        .ok()
    });
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn anyhow_like(s: String) -> Box<dyn std::error::Error + Send + Sync> {
    s.into()
}
