//! A real berth Docker API server for tests: the `berth-docker-api` binary on its own data
//! root and socket (busybox imported from Debian's static busybox), driven by real clients
//! (the docker CLI, docker-compose, docker-py). Dropping the [`Server`] removes every
//! container through berth's own container layer, stops the server, removes the data
//! root's networks and nft table, and puts `ip_forward` back when the last server goes.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_image::{Reference, Store};
use berth_node_agent::container::{Config, Containers};

pub const SERVER: &str = env!("CARGO_BIN_EXE_berth-docker-api");
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Live servers, and `ip_forward` as it was before the first: the default network turns
/// forwarding on, and the last server to go puts it back.
static LIVE: std::sync::Mutex<(usize, Option<String>)> = std::sync::Mutex::new((0, None));

pub fn bin_dir() -> PathBuf {
    Path::new(SERVER).parent().expect("bin dir").to_path_buf()
}

/// Builds `berth-runc`, `berth-shim` and `berth-init` if `cargo test` did not.
fn ensure_binaries() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = bin_dir();
        if ["berth-runc", "berth-shim", "berth-init", "berth-dns"]
            .iter()
            .all(|b| dir.join(b).is_file())
        {
            return;
        }
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "berth-runtime",
                "-p",
                "berth-shim",
                "-p",
                "berth-network",
                "--bins",
            ])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the runtime and the shim failed");
    });
}

pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Server {
    pub root: tempfile::TempDir,
    pub socket: PathBuf,
    /// The docker CLI's config dir (no user settings, no credential helpers).
    pub docker_config: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn start() -> Server {
        ensure_binaries();
        let root = tempfile::Builder::new()
            .prefix("berth-dapi-test-")
            .tempdir()
            .expect("tempdir");
        let store = Store::open(root.path().join("image")).expect("store");
        berth_image::testing::import_busybox(
            &store,
            &Reference::parse("busybox:latest").expect("ref"),
        )
        .expect("import busybox (apt-get install busybox-static)");
        {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            if live.0 == 0 {
                live.1 = std::fs::read_to_string(IP_FORWARD).ok();
            }
            live.0 += 1;
        }
        let socket = root.path().join("docker.sock");
        let docker_config = root.path().join("docker-config");
        std::fs::create_dir_all(&docker_config).expect("docker config dir");
        let log = std::fs::File::create(root.path().join("server.log")).expect("log");
        let child = Command::new(SERVER)
            // every request in the log a failing test prints
            .env("RUST_LOG", "berth_docker_api=debug")
            .arg("--socket")
            .arg(&socket)
            .arg("--data-root")
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn berth-docker-api");
        let mut server = Server {
            root,
            socket,
            docker_config,
            child: Some(child),
        };
        let sock = server.socket.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(&sock).is_ok() {
                break;
            }
            if let Some(c) = server.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "berth-docker-api exited ({status}): {}",
                        std::fs::read_to_string(server.root.path().join("server.log"))
                            .unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "the server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A client command with this server as its daemon.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .stdin(Stdio::null());
        c
    }

    /// `docker ARGS`, bounded: a hung command fails the test instead of hanging it.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.bounded("docker")
            .args(args)
            .output()
            .expect("run docker")
    }

    /// A client command killed after two minutes, so a hang fails the test (exit 124
    /// or 137) instead of stalling the run; add the client's arguments.
    pub fn bounded(&self, program: &str) -> Command {
        let mut c = self.client("timeout");
        c.args(["--kill-after=5", "120", program]);
        c
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// berth's own view of the containers of this data root.
    pub fn containers(&self) -> Containers {
        let d = bin_dir();
        Containers::open(Config {
            data_root: self.root.path().to_path_buf(),
            run_root: "/run/berth/runc".into(),
            runtime: d.join("berth-runc"),
            shim: d.join("berth-shim"),
            init: d.join("berth-init"),
        })
        .expect("containers")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // the server's own account of what went wrong, which CI shows with the panic
            let log =
                std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- berth-docker-api log (last {} lines) ---", tail.len());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        let c = self.containers();
        for id in c.ids().unwrap_or_default() {
            let _ = c.remove(&id, true);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // after the server: its Networks instance is gone, so this fresh one sees all
        let _ = c.remove_networks();
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.0 -= 1;
        if live.0 == 0 {
            if let Some(v) = live.1.take() {
                let _ = std::fs::write(IP_FORWARD, v);
            }
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Debian's `docker-registry` on 127.0.0.1 with storage in a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let bin = "/usr/bin/docker-registry";
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: install Debian's docker-registry package"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            );
            let path = dir.path().join("config.yml");
            std::fs::write(&path, config).expect("registry config");
            let mut child = Command::new(bin)
                .arg("serve")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn docker-registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break; // port taken: try another
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    if let Some(err) = child.stderr.take() {
                        std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
                    }
                    return Registry {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                assert!(Instant::now() < deadline, "docker-registry did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("docker-registry could not be started");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
