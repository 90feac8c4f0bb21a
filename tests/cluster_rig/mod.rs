//! A multi-host rig on one machine: every node is a network namespace with an address on a
//! bridge this rig made (veth), running a real `berthd` (entered with `nsenter --net`) with its own
//! data root, runtime root and socket, and busybox imported into its image store.
//!
//! Everything is bounded and torn down by `Drop`, even when the test fails: daemons are
//! killed, leftover containers removed, namespaces and the bridge deleted. Traffic stays on
//! the rig's bridge: nothing is routed or NATed anywhere else.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_testkit::bins::{self, BERTHD, DNS, INIT, RUNC, SHIM};
use berth_testkit::root;

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub fn bin_dir() -> PathBuf {
    bins::dir_of(BERTH)
}

/// Builds `berthd` and the container helpers next to `berth` if `cargo test` did not.
fn ensure_binaries() {
    bins::ensure(&bin_dir(), &[BERTHD, RUNC, SHIM, INIT, DNS]);
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command that must succeed, bounded to 20 s.
fn sh(args: &[&str]) {
    let out = Command::new("timeout")
        .arg("20")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Node {
    pub ns: String,
    pub ip: String,
    pub root: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn data_root(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("berthd.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

pub struct Rig {
    pub tag: String,
    pub bridge: String,
    pub subnet: String,
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// `count` namespaces on a new bridge, each with busybox imported and a berthd running.
    pub fn new(count: usize) -> Rig {
        Rig::with_busybox_on(count, |_| true)
    }

    /// Like [`Rig::new`], with busybox imported only on the nodes `busybox` picks.
    pub fn with_busybox_on(count: usize, busybox: impl Fn(usize) -> bool) -> Rig {
        ensure_binaries();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{:x}", (std::process::id() & 0xfff) * 16 + n);
        let third = (std::process::id() + n * 37) % 200 + 20;
        let subnet = format!("10.231.{third}");
        let dir = tempfile::Builder::new()
            .prefix("berth-rig-")
            .tempdir()
            .expect("tempdir");
        let bridge = format!("brg{tag}");
        let mut rig = Rig {
            tag: tag.clone(),
            bridge: bridge.clone(),
            subnet: subnet.clone(),
            nodes: Vec::new(),
            _dir: dir,
        };
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        // The host's own foot on the bridge: lets the test itself dial the nodes.
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{subnet}.254/24"),
            "dev",
            &bridge,
        ]);
        sh(&["ip", "link", "set", &bridge, "up"]);
        for i in 0..count {
            let ns = format!("brg{tag}n{i}");
            let veth = format!("brg{tag}v{i}");
            let ip = format!("{subnet}.{}", i + 1);
            sh(&["ip", "netns", "add", &ns]);
            let root = rig._dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&root).expect("node dir");
            rig.nodes.push(Node {
                ns: ns.clone(),
                ip: ip.clone(),
                socket: root.join("berth.sock"),
                root,
                child: None,
            });
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            sh(&["ip", "link", "set", &veth, "master", &bridge, "up"]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            if busybox(i) {
                root::import_busybox(&rig.nodes[i].data_root());
            }
            rig.start(i);
        }
        rig
    }

    /// Starts (or restarts) node `i`'s berthd and waits until it answers.
    pub fn start(&mut self, i: usize) {
        self.spawn_daemon(i);
        self.wait_answering(i);
    }

    /// Starts the berthds of `nodes` all at once, then waits until each answers (so none
    /// stays silent long enough for a leader to mark it down).
    pub fn start_all(&mut self, nodes: &[usize]) {
        for i in nodes {
            self.spawn_daemon(*i);
        }
        for i in nodes {
            self.wait_answering(*i);
        }
    }

    fn wait_answering(&self, i: usize) {
        self.wait_for(
            &format!("berthd {i} to answer"),
            Duration::from_secs(30),
            |r| r.nodes[i].socket.exists() && r.berth(i, &["node", "ls"]).status.success(),
        );
    }

    fn spawn_daemon(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.root.join("berthd.log"))
            .expect("log");
        // nsenter enters the network namespace only: `ip netns exec` would also give the
        // daemon a fresh /sys without the cgroup mounts its containers need.
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", node.ns))
            .arg("--")
            .arg(bin_dir().join("berthd"))
            .arg("--data-root")
            .arg(node.data_root())
            .arg("-H")
            .arg(node.host())
            .arg("--run-root")
            .arg(node.root.join("run"))
            .args(["--docker-host", "none", "--log-level"])
            .arg(std::env::var("BERTH_RIG_LOG").unwrap_or_else(|_| "info,raft=warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start berthd");
        node.child = Some(child);
    }

    /// `berth ARGS… -H <node i>` bounded to 120 s.
    pub fn berth(&self, i: usize, args: &[&str]) -> Output {
        let node = &self.nodes[i];
        let mut command = Command::new("timeout");
        command
            .args(["--kill-after=5", "120", BERTH])
            .arg("--data-root")
            .arg(node.data_root());
        // The Compose verbs take their flags before the verb; the cluster groups after.
        match args.first() {
            Some(&"node") | Some(&"cluster") | Some(&"service") => {
                command
                    .arg(args[0])
                    .arg("-H")
                    .arg(node.host())
                    .args(&args[1..]);
            }
            _ => {
                command.arg("-H").arg(node.host()).args(args);
            }
        }
        command
            .current_dir(&node.root)
            .stdin(Stdio::null())
            .output()
            .expect("timeout berth")
    }

    /// Runs berth on node `i`, asserting success; its stdout.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.berth(i, args);
        assert!(
            out.status.success(),
            "berth {args:?} on node {i} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `node ls --format json` as seen from node `i`.
    pub fn nodes_seen_by(&self, i: usize) -> Vec<serde_json::Value> {
        let out = self.berth(i, &["node", "ls", "--format", "json"]);
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// The node id of node `i`.
    pub fn id_of(&self, i: usize) -> String {
        self.nodes_seen_by(i)
            .iter()
            .find(|n| n["Self"] == true)
            .and_then(|n| n["ID"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn wait_for(&self, what: &str, limit: Duration, mut cond: impl FnMut(&Rig) -> bool) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let log = node.log();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- node {i} ({}) ---\n", node.ip));
            out.push_str(&lines[lines.len().saturating_sub(60)..].join("\n"));
            out.push('\n');
        }
        out
    }

    /// Writes a compose file for the test into node `i`'s directory; its path.
    pub fn compose(&self, i: usize, text: &str) -> PathBuf {
        let path = self.nodes[i].root.join("compose.yaml");
        std::fs::write(&path, text).expect("compose.yaml");
        path
    }
}

/// A `berth` command running in the background (bounded by `timeout`), killed when dropped.
pub struct Background(Option<Child>);

impl Background {
    /// Waits for it to end (it is bounded by its own timeout); its output.
    pub fn finish(mut self) -> Output {
        let child = self.0.take().expect("child");
        child.wait_with_output().expect("wait berth")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Rig {
    /// Node `i` joins the cluster node 0 formed, with a token of `role`.
    pub fn join(&self, i: usize, role: &str) {
        let token = self.ok(0, &["cluster", "join-token", role, "-q"]);
        let advertise = self.nodes[i].ip.clone();
        let manager = self.nodes[0].ip.clone();
        self.ok(
            i,
            &[
                "cluster",
                "join",
                "--token",
                token.trim(),
                "--advertise-addr",
                &advertise,
                &manager,
            ],
        );
    }

    /// Forms a cluster of every node: node 0 initializes, the first `managers` nodes are
    /// managers, the rest workers; waits until every node is ready as seen from node 0.
    pub fn form_cluster(&self, managers: usize) {
        let advertise = self.nodes[0].ip.clone();
        self.ok(0, &["cluster", "init", "--advertise-addr", &advertise]);
        for i in 1..self.nodes.len() {
            self.join(i, if i < managers { "manager" } else { "worker" });
        }
        let count = self.nodes.len();
        self.wait_for("every node ready", Duration::from_secs(60), |r| {
            let nodes = r.nodes_seen_by(0);
            nodes.len() == count
                && nodes.iter().all(|n| n["Status"] == "ready")
                && nodes.iter().filter(|n| n["Role"] == "manager").count() == managers
        });
    }

    /// The rig index of the leader as node `from` sees it.
    pub fn leader_seen_by(&self, from: usize) -> Option<usize> {
        let nodes = self.nodes_seen_by(from);
        let id = nodes.iter().find(|n| n["ManagerStatus"] == "leader")?["ID"]
            .as_str()?
            .to_owned();
        (0..self.nodes.len()).find(|i| self.id_of(*i) == id)
    }

    /// Starts `berth ARGS…` on node `i` in the background, bounded to 120 s.
    pub fn spawn_berth(&self, i: usize, args: &[&str]) -> Background {
        let node = &self.nodes[i];
        let child = Command::new("timeout")
            .args(["--kill-after=5", "120", BERTH])
            .arg("--data-root")
            .arg(node.data_root())
            .arg("-H")
            .arg(node.host())
            .args(args)
            .current_dir(&node.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        Background(Some(child))
    }

    /// `service ps --format json` of `service` as node `i` sees it (empty on failure).
    pub fn service_tasks(&self, i: usize, service: &str) -> Vec<serde_json::Value> {
        let out = self.berth(i, &["service", "ps", "--format", "json", service]);
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// Stops node `i`'s berthd gracefully (SIGTERM; SIGKILL after 20 s). Its containers keep
    /// running, as they do across any daemon restart.
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        // SAFETY: kill(2) on the berthd this rig started (nsenter executes it in place).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.wait();
    }

    /// Cuts node `i` off the rig's bridge (its veth's bridge end goes down): a partition.
    pub fn cut(&self, i: usize) {
        sh(&["ip", "link", "set", &format!("brg{}v{i}", self.tag), "down"]);
    }

    /// Puts node `i` back on the bridge.
    pub fn heal(&self, i: usize) {
        sh(&["ip", "link", "set", &format!("brg{}v{i}", self.tag), "up"]);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        // Containers outlive their daemon by design: remove what each node left.
        let d = bin_dir();
        for node in &self.nodes {
            if let Ok(c) = root::open_containers(&node.data_root(), &node.root.join("run"), &d) {
                root::remove_containers(&c, false);
            }
        }
        for node in &self.nodes {
            // What berthd started in the node's namespace (berth-dns) outlives it, and
            // would keep the namespace and its veth alive.
            if let Ok(out) = Command::new("timeout")
                .args(["20", "ip", "netns", "pids", &node.ns])
                .output()
            {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill(2) on a process inside a namespace this rig made.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("timeout")
                .args(["20", "ip", "netns", "del", &node.ns])
                .status();
        }
        let _ = Command::new("timeout")
            .args(["20", "ip", "link", "del", &self.bridge])
            .status();
        // The tmpfs of secrets and configs the nodes mounted for their tasks.
        for node in &self.nodes {
            for point in mounts_under(&node.root) {
                let _ = Command::new("timeout")
                    .args(["20", "umount", "-l"])
                    .arg(&point)
                    .status();
            }
        }
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}
