//! What every `tests/compose_*.rs` shares: a test environment with its own data root, daemon
//! socket, project directory and project name, a `berthd` of its own, and a drop guard that
//! takes everything down again (`down -v`, the daemon, any container, network or nft table
//! left in the data root), even when the test fails. The generic parts (binaries, busybox,
//! `ip_forward`, daemons, waiting) are `berth_testkit`'s; this module is the Compose view.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_node_agent::container::Containers;
use berth_testkit::bins::{self, BERTHD, INIT, RUNC, SHIM};
use berth_testkit::process::{Daemon, Stdout};
use berth_testkit::{IpForward, root};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub fn bin_dir() -> PathBuf {
    bins::dir_of(BERTH)
}

pub struct Env {
    pub root: tempfile::TempDir,
    pub project: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    daemon: Option<Daemon>,
    _forward: IpForward,
}

impl Env {
    /// A fresh data root with busybox imported, a project directory holding `compose`, and
    /// no daemon yet.
    pub fn new(project: &str, compose: &str) -> Env {
        bins::ensure(&bin_dir(), &[BERTHD, RUNC, SHIM, INIT]);
        let root = root::busybox_root("berth-cmp-");
        let dir = root.path().join("project");
        std::fs::create_dir_all(dir.join("out")).expect("project dir");
        std::fs::write(dir.join("compose.yaml"), compose).expect("compose.yaml");
        let socket = root.path().join("berth.sock");
        Env {
            root,
            project: project.to_owned(),
            dir,
            socket,
            daemon: None,
            _forward: IpForward::hold(),
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
        let mut berthd = Command::new(bin_dir().join("berthd"));
        berthd
            .arg("--data-root")
            .arg(self.root.path())
            .arg("--host")
            .arg(self.host());
        let log = self.root.path().join("berthd.log");
        let mut daemon = Daemon::spawn("berthd", berthd, &log, Stdout::Log);
        // the socket first: a `berth` run before it exists would start a second daemon
        daemon.wait_ready("answer", Duration::from_secs(30), || {
            self.socket.exists() && self.run(&["ls"]).status.success()
        });
        self.daemon = Some(daemon);
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
        self.berth_args(&mut c, args);
        c
    }

    /// `berth --data-root R -H unix://S -f DIR/compose.yaml -p PROJECT ARGS…`, bounded: a hung
    /// command fails the test (exit 124) instead of hanging it.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = berth_testkit::bounded(180, BERTH);
        self.berth_args(&mut c, args);
        c.output().expect("timeout berth")
    }

    fn berth_args(&self, c: &mut Command, args: &[&str]) {
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

    pub fn wait_for(&self, what: &str, limit: Duration, cond: impl FnMut() -> bool) {
        berth_testkit::wait_for_explained(what, limit, cond, || {
            format!("--- berthd log ---\n{}", tail(&self.daemon_log(), 40))
        });
    }

    /// Container directories left in the data root (not counting removals in progress).
    pub fn container_dirs(&self) -> usize {
        std::fs::read_dir(self.root.path().join("containers"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
                })
                .count()
            })
            .unwrap_or(0)
    }

    fn containers(&self) -> Containers {
        root::containers(self.root.path(), &bin_dir())
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
    berth_testkit::tail(text, n)
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.socket.exists() {
            let _ = self.run(&["down", "-v", "-t", "1"]);
        }
        // SIGTERM leaves containers running by design: they are removed below. Both the
        // daemon we started and the one holding the data root's pid file (a CLI-started one)
        let ours = self.daemon.as_ref().and_then(Daemon::pid);
        let theirs = self.daemon_pid().filter(|p| Some(*p) != ours);
        if let Some(daemon) = self.daemon.as_mut() {
            daemon.terminate(Duration::from_secs(10));
        }
        if let Some(pid) = theirs {
            berth_testkit::process::stop_pid(pid, Duration::from_secs(10));
        }
        root::clean(self.root.path(), &bin_dir());
    }
}
