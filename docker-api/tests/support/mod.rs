//! A real berth Docker API server for tests: the `berth-docker-api` binary on its own data
//! root and socket (busybox imported from Debian's static busybox), driven by real clients
//! (the docker CLI, docker-compose, docker-py). Dropping the [`Server`] removes every
//! container through berth's own container layer, stops the server, removes the data
//! root's networks and nft table, and puts `ip_forward` back when the last server goes.
//! The generic parts are `berth_testkit`'s; this module is the Docker-client view.

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_node_agent::container::Containers;
use berth_testkit::process::{Daemon, Stdout};
use berth_testkit::{IpForward, bins, root};

#[allow(unused_imports)] // not every test binary uses both
pub use berth_testkit::{Registry, free_port};

pub const SERVER: &str = env!("CARGO_BIN_EXE_berth-docker-api");

pub fn bin_dir() -> PathBuf {
    bins::dir_of(SERVER)
}

pub fn wait_for(what: &str, secs: u64, cond: impl FnMut() -> bool) {
    berth_testkit::wait_for(what, Duration::from_secs(secs), cond);
}

pub struct Server {
    pub root: tempfile::TempDir,
    pub socket: PathBuf,
    /// The docker CLI's config dir (no user settings, no credential helpers).
    pub docker_config: PathBuf,
    daemon: Daemon,
    /// How many times [`Server::restart`] ran (each run logs to its own file).
    restarts: u32,
    _forward: IpForward,
}

impl Server {
    pub fn start() -> Server {
        bins::ensure(&bin_dir(), bins::NETWORKED);
        let root = root::busybox_root("berth-dapi-test-");
        let forward = IpForward::hold();
        let socket = root.path().join("docker.sock");
        let docker_config = root.path().join("docker-config");
        std::fs::create_dir_all(&docker_config).expect("docker config dir");
        let daemon = Self::spawn(root.path(), &socket, "server.log");
        Server {
            daemon,
            root,
            socket,
            docker_config,
            restarts: 0,
            _forward: forward,
        }
    }

    /// A server on `root`, listening once this returns.
    fn spawn(root: &std::path::Path, socket: &std::path::Path, log: &str) -> Daemon {
        let mut command = Command::new(SERVER);
        command
            // every request in the log a failing test prints
            .env("RUST_LOG", "berth_docker_api=debug")
            .arg("--socket")
            .arg(socket)
            .arg("--data-root")
            .arg(root);
        let mut daemon = Daemon::spawn("berth-docker-api", command, &root.join(log), Stdout::Log);
        daemon.wait_ready("listen", Duration::from_secs(20), || {
            UnixStream::connect(socket).is_ok()
        });
        daemon
    }

    /// Stops the server (SIGTERM, SIGKILL after 10 s) and starts a new one on the same
    /// data root and socket; the containers keep running meanwhile.
    pub fn restart(&mut self) {
        self.daemon.terminate(Duration::from_secs(10));
        self.restarts += 1;
        let log = format!("server-{}.log", self.restarts);
        self.daemon = Self::spawn(self.root.path(), &self.socket, &log);
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A client command with this server as its daemon.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        self.client_env(&mut c);
        c
    }

    fn client_env(&self, c: &mut Command) {
        c.env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .stdin(Stdio::null());
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
        let mut c = berth_testkit::bounded(120, program);
        self.client_env(&mut c);
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
        root::containers(self.root.path(), &bin_dir())
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Debian's `docker-compose` (v1, through docker-py) in `dir` as project `project`,
    /// bounded, which must succeed; its stdout.
    pub fn compose(&self, dir: &Path, project: &str, args: &[&str]) -> String {
        let mut c = berth_testkit::bounded(180, "docker-compose");
        self.client_env(&mut c);
        let o = c
            .args(["-p", project])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run docker-compose (apt-get install docker-compose)");
        assert!(
            o.status.success(),
            "docker-compose {args:?} failed: {}{}\nserver log: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // the server's own account of what went wrong, which CI shows with the panic
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- berth-docker-api log (last {} lines) ---", tail.len());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        let c = self.containers();
        root::remove_containers(&c, false);
        self.daemon.kill();
        // a `--rm` removal the server was still tearing down when it was killed (a client
        // hears "removed" before the teardown ends) is finished here
        root::remove_containers(&c, false);
        // after the server: its Networks instance is gone, so this fresh one sees all
        let _ = c.remove_networks();
    }
}
