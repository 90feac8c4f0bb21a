//! Remote CLI clients of berthd over mutual TLS, on loopback with real certificates: a berthd
//! on `tcp://127.0.0.1:<port>` answers `berth -H tcp://… --tls…` and refuses clients without a
//! certificate or with one of another CA; berthd refuses to serve tcp:// without TLS material;
//! a cluster member serves its tcp:// API with the cluster CA, and a client certificate from
//! `berth cluster client-cert` works there but is refused on the cluster port.
//!
//! Every process is bounded (`timeout` around each `berth`, a deadline on every wait) and every
//! daemon is killed by a drop guard; each test has its own data root, ports and certificates.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use berth_cluster::{ClusterCa, NodeCertRequest, NodeId, Role};
use berth_testkit::free_port;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn bin_dir() -> PathBuf {
    berth_testkit::bins::dir_of(BERTH)
}

/// Builds `berthd` next to `berth` if `cargo test` did not.
fn berthd() -> PathBuf {
    berth_testkit::bins::ensure(&bin_dir(), &[berth_testkit::bins::BERTHD]);
    bin_dir().join("berthd")
}

/// A PEM bundle in a directory, laid out as `BERTH_CERT_PATH` expects.
struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    fn write(dir: PathBuf, ca: &str, cert: &str, key: &str) -> Bundle {
        std::fs::create_dir_all(&dir).expect("bundle dir");
        std::fs::write(dir.join("ca.pem"), ca).expect("ca.pem");
        std::fs::write(dir.join("cert.pem"), cert).expect("cert.pem");
        std::fs::write(dir.join("key.pem"), key).expect("key.pem");
        Bundle { dir }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The three client flags.
    fn flags(&self) -> Vec<String> {
        vec![
            "--tlscacert".into(),
            self.file("ca.pem"),
            "--tlscert".into(),
            self.file("cert.pem"),
            "--tlskey".into(),
            self.file("key.pem"),
        ]
    }

    fn client_tls(&self) -> berth_api::ClientTls {
        berth_api::ClientTls::default().or_cert_path(Some(&self.dir))
    }
}

/// A CA of its own in `dir`, with a server bundle for 127.0.0.1 and a client bundle.
struct Pki {
    server: Bundle,
    client: Bundle,
}

fn make_pki(dir: &Path) -> Pki {
    let now = SystemTime::now();
    let ca = ClusterCa::init(&dir.join("ca"), now).expect("CA");
    let server = ca
        .issue_with_new_key(
            &NodeCertRequest {
                node_id: NodeId::new("remote-test-server").expect("id"),
                role: Role::Manager,
                addresses: vec!["127.0.0.1".parse().expect("ip")],
            },
            now,
        )
        .expect("server cert");
    let server = Bundle::write(
        dir.join("server"),
        &ca.cert_pem(),
        &server.cert.to_pem(),
        &server.key.to_pem(),
    );
    let client = ca
        .issue_client("remote-test", Duration::from_secs(3600), now)
        .expect("client cert");
    let client = Bundle::write(
        dir.join("client"),
        &client.ca_pem,
        &client.cert_pem,
        &client.key_pem,
    );
    Pki { server, client }
}

/// A berthd of the test's own, killed on drop.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    /// What a failure message should also show (an earlier daemon's log, state on disk).
    context: String,
}

impl Daemon {
    fn start(root: &Path, host: &str, extra: &[String]) -> Daemon {
        let log = root.join(format!("berthd-{}.log", free_port()));
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(berthd())
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--run-root")
            .arg(root.join("runc"))
            .arg("--docker-host")
            .arg("none")
            .arg("-H")
            .arg(host)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start berthd");
        Daemon {
            child: Some(child),
            log,
            context: String::new(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds, failing early if berthd exited.
    fn wait_for(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ready() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "berthd exited ({status}) before {what}:\n{}\n{}",
                        self.log(),
                        self.context
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}\n{}",
                self.log(),
                self.context
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `berth` with `args` (and `env`), bounded by a timeout, from `cwd`.
fn berth(cwd: &Path, args: &[String], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=5", "60", BERTH])
        .args(args)
        .current_dir(cwd)
        .env_remove("BERTH_HOST")
        .env_remove("BERTH_CERT_PATH")
        .env_remove("BERTH_TLSCACERT")
        .env_remove("BERTH_TLSCERT")
        .env_remove("BERTH_TLSKEY")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("timeout berth")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Handshakes with `addr` as a raw TLS client (trusting `ca`, presenting `cert` if any),
/// sends the HTTP/2 preface and an empty SETTINGS frame, and reports whether the server
/// answered with any bytes: a server that refused the client certificate sends an alert and
/// closes instead.
fn server_answers(addr: std::net::SocketAddr, ca: &Path, cert: Option<&Bundle>) -> bool {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).expect("ca") {
            roots.add(c.expect("ca cert")).expect("root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match cert {
            Some(b) => {
                let chain = CertificateDer::pem_file_iter(b.dir.join("cert.pem"))
                    .expect("cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert");
                let key = PrivateKeyDer::from_pem_file(b.dir.join("key.pem")).expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::IpAddress(addr.ip().into());
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await?;
            tls.flush().await?;
            let mut buf = [0u8; 64];
            let n = tls.read(&mut buf).await?;
            Ok::<_, std::io::Error>(n > 0)
        };
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(_)) => false,
            Err(_) => panic!("the TLS probe of {addr} timed out"),
        }
    })
}

#[test]
fn a_tcp_berthd_serves_clients_with_a_certificate_of_its_ca_only() {
    let root = tempfile::Builder::new()
        .prefix("berth-remote-")
        .tempdir()
        .expect("tempdir");
    let pki = make_pki(&root.path().join("pki-a"));
    let other = make_pki(&root.path().join("pki-b"));
    let port = free_port();
    let host = format!("tcp://127.0.0.1:{port}");
    let mut daemon = Daemon::start(
        root.path(),
        &host,
        &[
            "--tlscacert".into(),
            pki.server.file("ca.pem"),
            "--tlscert".into(),
            pki.server.file("cert.pem"),
            "--tlskey".into(),
            pki.server.file("key.pem"),
        ],
    );
    let cwd = root.path();
    // Docker style: the connection flags before the command.
    let mut version = args(&["-H", &host]);
    version.extend(pki.client.flags());
    version.push("version".into());
    let mut answered = None;
    daemon.wait_for("berthd to answer over mutual TLS", || {
        let o = berth(cwd, &version, &[]);
        let ok = o.status.success();
        answered = Some(o);
        ok
    });
    let out = text(answered.as_ref().expect("output"));
    assert!(out.contains("berthd version"), "{out}");

    // A Compose verb, flags before the verb (as with Docker).
    let mut ps = args(&["-H", &host]);
    ps.extend(pki.client.flags());
    ps.extend(args(&["-p", "remote-tls", "ps"]));
    let o = berth(cwd, &ps, &[]);
    assert!(o.status.success(), "ps: {}\n{}", text(&o), daemon.log());

    // The same files through BERTH_CERT_PATH.
    let o = berth(
        cwd,
        &args(&["-H", &host, "-p", "remote-tls", "ps"]),
        &[("BERTH_CERT_PATH", pki.client.dir.as_path())],
    );
    assert!(o.status.success(), "ps with BERTH_CERT_PATH: {}", text(&o));

    // No TLS material: one clear error, nothing dialled.
    let o = berth(cwd, &args(&["-H", &host, "-p", "remote-tls", "ps"]), &[]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("only over mutual TLS") && out.contains("--tlscacert"),
        "{out}"
    );
    assert_eq!(out.trim().lines().count(), 1, "{out}");

    // A client certificate of another CA is refused by the daemon.
    let mut foreign = args(&["version", "-H", &host]);
    foreign.extend(args(&[
        "--tlscacert",
        &pki.client.file("ca.pem"),
        "--tlscert",
        &other.client.file("cert.pem"),
        "--tlskey",
        &other.client.file("key.pem"),
    ]));
    let o = berth(cwd, &foreign, &[]);
    assert!(!o.status.success(), "a foreign client got in: {}", text(&o));

    // At the TLS level: with a certificate of the CA the server speaks HTTP/2; without
    // one, or with another CA's, it closes the connection.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let ca = pki.client.dir.join("ca.pem");
    assert!(server_answers(addr, &ca, Some(&pki.client)));
    assert!(!server_answers(addr, &ca, None));
    assert!(!server_answers(addr, &ca, Some(&other.client)));
    daemon.stop();
}

#[test]
fn berthd_refuses_tcp_without_tls_material() {
    let root = tempfile::Builder::new()
        .prefix("berth-remote-")
        .tempdir()
        .expect("tempdir");
    let pki = make_pki(&root.path().join("pki"));
    let host = format!("tcp://127.0.0.1:{}", free_port());
    for (extra, expect) in [
        (vec![], "without mutual TLS".to_owned()),
        (
            vec!["--tlscacert".to_owned(), pki.server.file("ca.pem")],
            "missing: --tlscert, --tlskey".to_owned(),
        ),
    ] {
        let o = Command::new("timeout")
            .args(["--kill-after=5", "60"])
            .arg(berthd())
            .arg("--data-root")
            .arg(root.path().join("data"))
            .arg("--run-root")
            .arg(root.path().join("runc"))
            .args(["--docker-host", "none", "-H", &host])
            .args(&extra)
            .stdin(Stdio::null())
            .output()
            .expect("berthd");
        let out = text(&o);
        assert!(!o.status.success(), "berthd served plain TCP: {out}");
        assert_ne!(o.status.code(), Some(124), "berthd did not exit: {out}");
        assert!(out.contains("refusing to serve the API on tcp://"), "{out}");
        assert!(out.contains(&expect), "{out}");
    }
}

#[test]
fn a_cluster_member_serves_tcp_with_the_cluster_ca_and_issues_client_certificates() {
    let root = tempfile::Builder::new()
        .prefix("berth-remote-")
        .tempdir()
        .expect("tempdir");
    let cwd = root.path();
    let socket = format!("unix://{}", root.path().join("berth.sock").display());
    let peer_port = free_port();
    let mut daemon = Daemon::start(root.path(), &socket, &[]);
    daemon.wait_for("berthd on its socket", || {
        berth(cwd, &args(&["-H", &socket, "ls"]), &[])
            .status
            .success()
    });
    let advertise = format!("127.0.0.1:{peer_port}");
    let o = berth(
        cwd,
        &args(&[
            "cluster",
            "-H",
            &socket,
            "init",
            "--advertise-addr",
            &advertise,
        ]),
        &[],
    );
    assert!(o.status.success(), "init: {}\n{}", text(&o), daemon.log());
    let certs = root.path().join("client-certs");
    let o = berth(
        cwd,
        &args(&[
            "cluster",
            "-H",
            &socket,
            "client-cert",
            "--out",
            &certs.display().to_string(),
            "--name",
            "ops",
        ]),
        &[],
    );
    assert!(o.status.success(), "client-cert: {}", text(&o));
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        assert!(certs.join(f).is_file(), "{f} not written");
    }
    daemon.stop();
    let listing = std::fs::read_dir(root.path().join("data/cluster"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|e| e.to_string());
    let context = format!(
        "--- data/cluster: {listing}\n--- the member's earlier log ---\n{}",
        daemon.log()
    );

    // The same node on tcp:// with no TLS flags: the cluster CA and its node certificate.
    // The cluster side also listens on the advertise port + 1 (images for peers).
    let api_port = std::iter::repeat_with(free_port)
        .find(|p| p.abs_diff(peer_port) > 1)
        .expect("a port");
    let host = format!("tcp://127.0.0.1:{api_port}");
    let mut daemon = Daemon::start(root.path(), &host, &[]);
    daemon.context = context;
    let mut answered = None;
    daemon.wait_for("the cluster member to answer over mutual TLS", || {
        let o = berth(
            cwd,
            &args(&["version", "-H", &host]),
            &[("BERTH_CERT_PATH", certs.as_path())],
        );
        let ok = o.status.success();
        answered = Some(o);
        ok
    });
    assert!(text(answered.as_ref().expect("output")).contains("berthd version"));
    let o = berth(
        cwd,
        &args(&["-H", &host, "node", "ls"]),
        &[("BERTH_CERT_PATH", certs.as_path())],
    );
    assert!(o.status.success(), "node ls: {}", text(&o));

    // The client certificate is no node certificate: the cluster port refuses its calls.
    let bundle = Bundle { dir: certs.clone() };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = rt.block_on(async {
        let channel = tokio::time::timeout(
            Duration::from_secs(20),
            berth_api::connect(&format!("tcp://{advertise}"), &bundle.client_tls()),
        )
        .await
        .expect("connect timed out")
        .expect("TLS to the cluster port");
        let mut peer = berth_api::v1::cluster_peer_client::ClusterPeerClient::new(channel);
        tokio::time::timeout(
            Duration::from_secs(20),
            peer.task_files(berth_api::v1::TaskFilesRequest::default()),
        )
        .await
        .expect("call timed out")
        .expect_err("a client certificate was served on the cluster port")
    });
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    daemon.stop();
}

#[test]
fn a_socket_of_its_own_without_a_data_root_starts_no_daemon() {
    let root = tempfile::Builder::new()
        .prefix("berth-remote-")
        .tempdir()
        .expect("tempdir");
    let socket = format!("unix://{}", root.path().join("nobody.sock").display());
    // BERTH_DATA_ROOT unset: the default data root, which belongs to the machine's daemon
    let mut command = Command::new("timeout");
    let o = command
        .args(["--kill-after=5", "60", BERTH, "-H", &socket, "ls"])
        .current_dir(root.path())
        .env_remove("BERTH_HOST")
        .env_remove("BERTH_DATA_ROOT")
        .stdin(Stdio::null())
        .output()
        .expect("timeout berth");
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("no berth daemon answers at"), "{out}");
    assert!(out.contains("only for the default socket"), "{out}");
    assert!(!out.contains("started"), "a daemon was started: {out}");
    assert!(
        !root.path().join("nobody.sock").exists(),
        "something serves the socket"
    );
}
