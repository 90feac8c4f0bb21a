//! What every `tests/compose_*.rs` shares: a test environment with its own data root, daemon
//! socket, project directory and project name, a `berthd` of its own, and a drop guard that
//! takes everything down again (`down -v`, the daemon, any container, network or nft table
//! left in the data root), even when the test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_image::{Reference, Store};
use berth_node_agent::container::{Config, Containers};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub fn bin_dir() -> PathBuf {
    Path::new(BERTH).parent().expect("bin dir").to_path_buf()
}

/// Builds `berthd`, `berth-runc`, `berth-shim` and `berth-init` next to `berth` if `cargo
/// test` did not.
fn ensure_binaries() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = bin_dir();
        if ["berthd", "berth-runc", "berth-shim", "berth-init"]
            .iter()
            .all(|b| dir.join(b).is_file())
        {
            return;
        }
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "berth-daemon",
                "-p",
                "berth-runtime",
                "-p",
                "berth-shim",
                "--bins",
            ])
            .status()
            .expect("cargo build");
        assert!(
            status.success(),
            "building berthd, the runtime and the shim failed"
        );
    });
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Live environments, and `ip_forward` as it was before the first (bridges turn it on; the
/// last environment to go puts it back).
static LIVE: std::sync::Mutex<(usize, Option<String>)> = std::sync::Mutex::new((0, None));

pub struct Env {
    pub root: tempfile::TempDir,
    pub project: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    daemon: Option<Child>,
}

impl Env {
    /// A fresh data root with busybox imported, a project directory holding `compose`, and
    /// no daemon yet.
    pub fn new(project: &str, compose: &str) -> Env {
        ensure_binaries();
        let root = tempfile::Builder::new()
            .prefix("berth-cmp-")
            .tempdir()
            .expect("tempdir");
        let store = Store::open(root.path().join("image")).expect("store");
        berth_image::testing::import_busybox(
            &store,
            &Reference::parse("busybox:latest").expect("ref"),
        )
        .expect("import busybox (apt-get install busybox-static)");
        let dir = root.path().join("project");
        std::fs::create_dir_all(dir.join("out")).expect("project dir");
        std::fs::write(dir.join("compose.yaml"), compose).expect("compose.yaml");
        {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            if live.0 == 0 {
                live.1 = std::fs::read_to_string(IP_FORWARD).ok();
            }
            live.0 += 1;
        }
        let socket = root.path().join("berth.sock");
        Env {
            root,
            project: project.to_owned(),
            dir,
            socket,
            daemon: None,
        }
    }

    /// [`Env::new`] with a daemon started and answering.
    pub fn with_daemon(project: &str, compose: &str) -> Env {
        let mut env = Env::new(project, compose);
        env.start_daemon();
        env
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn start_daemon(&mut self) {
        let log = std::fs::File::create(self.root.path().join("berthd.log")).expect("log");
        let child = Command::new(bin_dir().join("berthd"))
            .arg("--data-root")
            .arg(self.root.path())
            .arg("--host")
            .arg(self.host())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start berthd");
        self.daemon = Some(child);
        // the socket first: a `berth` run before it exists would start a second daemon
        self.wait_for("berthd to answer", Duration::from_secs(30), || {
            self.socket.exists() && self.run(&["ls"]).status.success()
        });
    }

    /// The daemon's log, for failure messages.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("berthd.log")).unwrap_or_default()
    }

    pub fn write_compose(&self, compose: &str) {
        std::fs::write(self.dir.join("compose.yaml"), compose).expect("compose.yaml");
    }

    /// `berth --data-root R -H unix://S -f DIR/compose.yaml -p PROJECT ARGS…`, unbounded, for
    /// a test that drives the process itself.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("--data-root")
            .arg(self.root.path())
            .arg("-H")
            .arg(self.host())
            .arg("-f")
            .arg(self.dir.join("compose.yaml"))
            .arg("-p")
            .arg(&self.project)
            .arg("--progress")
            .arg("plain")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    /// `berth --data-root R -H unix://S -f DIR/compose.yaml -p PROJECT ARGS…`, bounded: a hung
    /// command fails the test (exit 124) instead of hanging it.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["--kill-after=5", "180", BERTH, "--data-root"])
            .arg(self.root.path())
            .arg("-H")
            .arg(self.host())
            .arg("-f")
            .arg(self.dir.join("compose.yaml"))
            .arg("-p")
            .arg(&self.project)
            .arg("--progress")
            .arg("plain")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("timeout berth")
    }

    /// Runs berth and asserts success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed ({}): {}\n--- berthd log ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            tail(&self.daemon_log(), 40)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ps -a --format json` as values.
    pub fn ps(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["ps", "--format", "json"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("ps json {out:?}: {e}"))
    }

    /// Containers of `service` in state `state` (from `ps -a`).
    pub fn count(&self, service: &str, state: &str) -> usize {
        self.ps(&["-a"])
            .iter()
            .filter(|c| c["Service"] == service && c["State"] == state)
            .count()
    }

    /// Lines of a file the containers write through the bind-mounted `./out`.
    pub fn out_lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("out").join(file))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn wait_for(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n--- berthd log ---\n{}",
                tail(&self.daemon_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn containers(&self) -> Containers {
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

    /// The pid of the daemon holding this data root (started by us or by the CLI), if that
    /// process is still a berthd of this data root (the file outlives its daemon).
    fn daemon_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.root.path().join("berthd.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let root = self.root.path().to_string_lossy();
        (cmdline.contains("berthd") && cmdline.contains(root.as_ref())).then_some(pid)
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.socket.exists() {
            let _ = self.run(&["down", "-v", "-t", "1"]);
        }
        // SIGTERM leaves containers running by design: they are removed below. Both the
        // daemon we started and the one holding the data root's pid file (a CLI-started one)
        let mut pids: Vec<i32> = self
            .daemon
            .as_ref()
            .map(|c| c.id() as i32)
            .into_iter()
            .collect();
        pids.extend(self.daemon_pid().filter(|p| !pids.contains(p)));
        for pid in pids {
            // SAFETY: kill(2) on a pid this test started (or the daemon of its own data root).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                if let Some(child) = self.daemon.as_mut().filter(|c| c.id() as i32 == pid) {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: as above; the daemon did not stop in time.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Some(mut child) = self.daemon.take() {
            let _ = child.wait();
        }
        let c = self.containers();
        for id in c.ids().unwrap_or_default() {
            let _ = c.remove(&id, true);
        }
        let _ = c.remove_networks();
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.0 -= 1;
        if live.0 == 0 {
            if let Some(v) = live.1.take() {
                let _ = std::fs::write(IP_FORWARD, v.trim());
            }
        }
    }
}
