//! Containers through the CLI on the real kernel (root): `run`, exit codes, isolation,
//! detached lifecycle, limits, capabilities, mounts and volumes, published ports, the default
//! network, and survival of the CLI's death. Each test has its own data root and names and
//! removes everything it made (containers, mounts, bridge, nft table) through a drop guard.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_node_agent::container::Containers;
use berth_testkit::{IpForward, bins, root};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn bin_dir() -> PathBuf {
    bins::dir_of(BERTH)
}

struct Env {
    root: tempfile::TempDir,
    _forward: IpForward,
}

impl Env {
    fn new() -> Env {
        bins::ensure(&bin_dir(), bins::CONTAINER);
        Env {
            root: root::busybox_root("berth-ctr-test-"),
            _forward: IpForward::hold(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BERTH);
        c.arg("--data-root")
            .arg(self.root.path())
            .arg("container")
            .args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs berth to completion, bounded: a hung command fails the test (exit 124) instead
    /// of hanging it.
    fn run(&self, args: &[&str]) -> Output {
        berth_testkit::bounded(120, BERTH)
            .arg("--data-root")
            .arg(self.root.path())
            .arg("container")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("timeout berth")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn containers(&self) -> Containers {
        root::containers(self.root.path(), &bin_dir())
    }

    fn wait_for(&self, what: &str, cond: impl FnMut() -> bool) {
        berth_testkit::wait_for(what, Duration::from_secs(20), cond);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        root::clean(self.root.path(), &bin_dir());
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn run_prints_output_and_returns_exit_codes() {
    let e = Env::new();
    let o = e.run(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hi\n");
    let o = e.run(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code(&o), 3);
    let o = e.run(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code(&o), 127, "{}", String::from_utf8_lossy(&o.stderr));
    let o = e.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code(&o), 126, "{}", String::from_utf8_lossy(&o.stderr));
    let o = e.run(&["run", "--rm", "no-such-image"]);
    assert_eq!(code(&o), 125);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found locally"));
    assert!(
        e.ok(&["ps", "-aq"]).trim().is_empty(),
        "--rm left a container"
    );
}

#[test]
fn container_is_pid_1_with_its_own_hostname_and_no_host_processes() {
    let e = Env::new();
    let out = e.ok(&[
        "run",
        "--rm",
        "--hostname",
        "isolated",
        "busybox",
        "sh",
        "-c",
        "echo $$; hostname; ls /proc | grep -c '^[0-9]'; wc -c < /proc/timer_list",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "isolated");
    let procs: u32 = lines[2].parse().unwrap();
    assert!(procs <= 3, "the container sees {procs} processes");
    assert_eq!(lines[3].trim(), "0", "/proc/timer_list is not masked");
}

#[test]
fn detached_lifecycle_ps_logs_exec_stop_rm() {
    let e = Env::new();
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "lc-test",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; seq 1 500; echo err >&2; while true; do sleep 1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    assert!(e.ok(&["ps"]).contains("lc-test"));
    let json = e.ok(&["ps", "--format", "json"]);
    assert!(json.contains("\"running\""));
    e.wait_for("the logs", || {
        e.ok(&["logs", "lc-test"]).lines().count() >= 500
    });
    let logs = e.ok(&["logs", "lc-test"]);
    let nums: Vec<u32> = logs.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(nums, (1..=500).collect::<Vec<_>>());
    assert_eq!(e.ok(&["logs", "--tail", "2", &id[..10]]), "500\n");
    assert_eq!(e.ok(&["exec", "lc-test", "echo", "inside"]), "inside\n");
    // -t: a pty from the runtime's console socket, proxied by the CLI
    let tty = e.ok(&["exec", "-t", "lc-test", "tty"]);
    assert!(tty.contains("/dev/pts/"), "{tty}");
    let o = e.run(&["exec", "lc-test", "sh", "-c", "exit 4"]);
    assert_eq!(code(&o), 4);
    let stats = e.ok(&["stats", "--no-stream", "lc-test"]);
    assert!(stats.contains("lc-test") && stats.contains("iB"), "{stats}");
    let top = e.ok(&["top", "lc-test"]);
    assert!(top.contains("sh -c trap"), "{top}");
    let started = Instant::now();
    e.ok(&["stop", "-t", "1", "lc-test"]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "SIGTERM was not ignored"
    );
    let inspect = e.ok(&["inspect", "lc-test"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v[0]["State"]["Status"], "exited");
    assert_eq!(v[0]["State"]["ExitCode"], 137);
    assert!(!e.ok(&["ps"]).contains("lc-test"));
    e.ok(&["rm", "lc-test"]);
    assert!(!e.ok(&["ps", "-a"]).contains("lc-test"));
}

#[test]
fn memory_limit_oom_kills_and_inspect_says_so() {
    let e = Env::new();
    let o = e.run(&[
        "run",
        "--name",
        "oom-test",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(code(&o), 137, "{}", String::from_utf8_lossy(&o.stdout));
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "oom-test"])).unwrap();
    assert_eq!(v[0]["State"]["OOMKilled"], true);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let e = Env::new();
    let o = e.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 40); do sleep 300 & done; echo all-forked",
    ]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("all-forked"));
    assert!(String::from_utf8_lossy(&o.stderr).contains("can't fork"));
    assert_ne!(code(&o), 0);
}

#[test]
fn default_capabilities_exclude_net_admin() {
    let e = Env::new();
    let o = e.run(&[
        "run", "--rm", "busybox", "ip", "link", "set", "lo", "mtu", "1400",
    ]);
    assert_ne!(code(&o), 0, "ip link add succeeded without CAP_NET_ADMIN");
    let o = e.run(&[
        "run",
        "--rm",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "ip",
        "link",
        "set",
        "lo",
        "mtu",
        "1400",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bind_mounts_and_named_volumes_outlive_containers() {
    let e = Env::new();
    let host = e.root.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    let bind = format!("{}:/data", host.display());
    e.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "-v",
        "vol-test:/v",
        "busybox",
        "sh",
        "-c",
        "echo bound > /data/f; echo kept > /v/f",
    ]);
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "bound\n");
    let out = e.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{bind}:ro"),
        "-v",
        "vol-test:/v",
        "busybox",
        "sh",
        "-c",
        "cat /data/f /v/f; echo no > /data/g || echo read-only",
    ]);
    assert_eq!(out, "bound\nkept\nread-only\n");
    // a new volume starts with the image's content at its mount point
    let out = e.ok(&[
        "run",
        "--rm",
        "-v",
        "etc-copy:/etc",
        "busybox",
        "cat",
        "/etc/group",
    ]);
    assert!(out.contains("root:x:0:"));
}

#[test]
fn published_port_and_default_network() {
    let e = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:80");
    e.ok(&[
        "run",
        "-d",
        "--name",
        "web-test",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "echo hello > /tmp/index.html; httpd -f -p 80 -h /tmp",
    ]);
    let url = format!("http://127.0.0.1:{port}/index.html");
    e.wait_for("httpd to answer", || {
        Command::new("timeout")
            .args(["5", "busybox", "wget", "-q", "-O-", &url])
            .output()
            .is_ok_and(|o| o.stdout == b"hello\n")
    });
    let v: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "web-test"])).unwrap();
    let ip = v[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!ip.is_empty());
    let out = e.ok(&[
        "run",
        "--rm",
        "busybox",
        "timeout",
        "5",
        "wget",
        "-q",
        "-O-",
        &format!("http://{ip}/index.html"),
    ]);
    assert_eq!(out, "hello\n");
}

#[test]
fn containers_survive_kill_9_of_the_cli() {
    let e = Env::new();
    let mut cli = e
        .cmd(&["run", "--name", "survivor", "busybox", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    e.wait_for("the container to run", || {
        e.ok(&["ps"]).contains("survivor")
    });
    cli.kill().unwrap();
    cli.wait().unwrap();
    assert!(e.ok(&["ps"]).contains("survivor"));
    e.ok(&["exec", "survivor", "true"]);
}

#[test]
fn run_options_reach_the_process() {
    let e = Env::new();
    let env_file = e.root.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let out = e.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hello",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/tmp",
        "-u",
        "nobody",
        "--hostname",
        "opts",
        "--add-host",
        "db:10.1.2.3",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "--dns",
        "192.0.2.53",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING $FROM_FILE; pwd; id -u; cat /etc/hostname; grep db /etc/hosts; \
         grep nameserver /etc/resolv.conf; touch /x 2>/dev/null || echo ro; \
         touch /scratch/y && echo tmpfs-rw",
    ]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "hello yes",
            "/tmp",
            "65534",
            "opts",
            "10.1.2.3\tdb",
            "nameserver 192.0.2.53",
            "ro",
            "tmpfs-rw",
        ],
        "{out}"
    );
}

#[test]
fn names_prefixes_restart_kill_and_wait() {
    let e = Env::new();
    let id = e.ok(&[
        "run",
        "-d",
        "--name",
        "named-test",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    let id = id.trim();
    // PID 1 ignores USR1 until the trap is set
    e.wait_for("the trap to be set", || {
        e.run(&["logs", "named-test"]).stdout.starts_with(b"ready")
    });
    let o = e.run(&["run", "-d", "--name", "named-test", "busybox", "true"]);
    assert_eq!(code(&o), 125);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in use"));
    // an id prefix finds it; kill -s and wait report the signal's code
    e.ok(&["kill", "-s", "USR1", &id[..8]]);
    assert_eq!(e.ok(&["wait", "named-test"]).trim(), "7");
    // started again: a new process in the same container
    e.ok(&["start", "named-test"]);
    assert!(e.ok(&["ps"]).contains("named-test"));
    let o = e.run(&["rm", "named-test"]);
    assert_ne!(
        code(&o),
        0,
        "rm of a running container without -f succeeded"
    );
    e.ok(&["rm", "-f", "named-test"]);
    assert!(e.ok(&["ps", "-aq"]).trim().is_empty());
    // `run -d --rm` is removed once seen exited
    e.ok(&["run", "-d", "--rm", "busybox", "true"]);
    e.wait_for("the auto-removed container to go", || {
        e.ok(&["ps", "-aq"]).trim().is_empty()
    });
}

/// A static `berth-init` (the one `--init` needs inside an image), built once into its own
/// target dir so the main one's fingerprints stay valid.
fn static_init() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = bin_dir().parent().expect("target dir").join("static-init");
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-q",
                    "-p",
                    "berth-shim",
                    "--bin",
                    "berth-init",
                    "--target",
                    "x86_64-unknown-linux-gnu",
                ])
                .arg("--target-dir")
                .arg(&target)
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .status()
                .expect("cargo build");
            assert!(status.success(), "building a static berth-init failed");
            target.join("x86_64-unknown-linux-gnu/debug/berth-init")
        })
        .clone()
}

#[test]
fn init_runs_as_pid_1_and_reaps() {
    let e = Env::new();
    // the dynamically linked test build is refused with a clear error
    let o = e.run(&["run", "--rm", "--init", "busybox", "true"]);
    assert_eq!(code(&o), 125);
    assert!(String::from_utf8_lossy(&o.stderr).contains("dynamically linked"));
    let o = e
        .cmd(&[
            "run",
            "--rm",
            "--init",
            "busybox",
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; (sleep 0.1 &); sleep 0.3; \
             ps -o stat | grep -c Z; exit 5",
        ])
        .env("BERTH_INIT", static_init())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("/sbin/berth-init -- sh"), "{out}");
    assert_eq!(lines[1].trim(), "0", "zombies were left: {out}");
    assert_eq!(code(&o), 5);
}

#[test]
fn attached_run_forwards_sigterm() {
    let e = Env::new();
    let mut cli = e
        .cmd(&[
            "run",
            "--name",
            "fwd-test",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 9' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // "ready" on the CLI's stdout means both that the trap is set and that the CLI is in its
    // attach loop, which starts after its signal forwarder; `ps` alone is too early.
    let mut out = std::io::BufReader::new(cli.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(cli.id() as i32, libc::SIGTERM) };
    let mut status = None;
    e.wait_for("the CLI to exit", || {
        status = cli.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(9));
}

#[test]
fn logs_follow_until_exit_with_timestamps() {
    let e = Env::new();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "follow-test",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done",
    ]);
    // -f returns once the container has exited, with every line
    let out = e.ok(&["logs", "-f", "follow-test"]);
    assert_eq!(out, "line1\nline2\nline3\n");
    let stamped = e.ok(&["logs", "-t", "follow-test"]);
    for line in stamped.lines() {
        let (time, text) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert!(text.starts_with("line"));
    }
    assert!(
        e.ok(&["logs", "--since", "1m", "follow-test"])
            .contains("line3")
    );
    assert!(
        e.ok(&["logs", "--since", "2999-01-01T00:00:00Z", "follow-test"])
            .is_empty()
    );
}

#[test]
fn logs_follow_ends_when_the_container_is_removed_and_keeps_its_last_lines() {
    let e = Env::new();
    // `last` is written on the way out, just before the removal deletes the log file:
    // a follower must still deliver it, and must end instead of waiting for a container
    // that no longer exists (docker-py's `run(remove=True)` reads its logs after `DELETE`)
    e.ok(&[
        "run",
        "-d",
        "--name",
        "follow-rm",
        "busybox",
        "sh",
        "-c",
        "trap 'echo last; exit 0' TERM; echo first; while :; do sleep 0.05; done",
    ]);
    let c = e.containers();
    let id = c.resolve("follow-rm").unwrap().id;
    e.wait_for("the first line", || {
        e.ok(&["logs", "follow-rm"]).contains("first")
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let follower = {
        let c = e.containers();
        let id = id.clone();
        std::thread::spawn(move || {
            let opts = berth_node_agent::container::LogOptions {
                follow: true,
                ..Default::default()
            };
            let mut lines = String::new();
            let r = c.logs(&id, &opts, |rec| {
                lines.push_str(&rec.log);
                true
            });
            let _ = tx.send((r.is_ok(), lines));
        })
    };
    c.stop(&id, Duration::from_secs(10)).unwrap();
    c.remove(&id, false).unwrap();
    let (ok, lines) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the follower did not end after the container was removed");
    follower.join().unwrap();
    assert!(ok);
    assert_eq!(lines, "first\nlast\n");
}

#[test]
fn a_removal_cut_short_is_finished_by_the_next_owner_and_a_live_one_is_left_alone() {
    let e = Env::new();
    let c = e.containers();
    let mut ids = Vec::new();
    for name in ["rm-cut", "rm-live"] {
        e.ok(&["run", "-d", "--name", name, "busybox", "sleep", "600"]);
        ids.push(c.resolve(name).unwrap().id);
    }
    let pid_of = |id: &str| {
        let mut r = c.resolve(id).unwrap();
        c.observe(&mut r);
        r.state.pid
    };
    let pids: Vec<i32> = ids.iter().map(|id| pid_of(id)).collect();
    let rootfs = c.rootfs_of(&ids[0]).unwrap();
    // the state a remover leaves when it dies right after renaming the directory away
    let retired: Vec<PathBuf> = ids
        .iter()
        .map(|id| {
            let to = e
                .root
                .path()
                .join("containers")
                .join(format!(".removing-{id}"));
            std::fs::rename(c.container_dir(id), &to).unwrap();
            to
        })
        .collect();
    // the second still has a remover at work: it holds the lock on the directory
    let held = std::fs::File::open(&retired[1]).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    // SAFETY: flock on a descriptor this test owns.
    let locked = unsafe { libc::flock(fd, libc::LOCK_EX) };
    assert_eq!(locked, 0);
    assert_eq!(c.finish_interrupted_removals(), vec![ids[0].clone()]);
    assert!(
        !retired[0].exists(),
        "the interrupted removal left its directory"
    );
    assert!(
        !c.shim_dir(&ids[0]).exists(),
        "the shim's directory is left"
    );
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(rootfs.to_str().unwrap()),
        "the root filesystem is still mounted"
    );
    e.wait_for("the container's process to go", || {
        !Path::new(&format!("/proc/{}", pids[0])).exists()
    });
    assert!(retired[1].exists(), "a removal in progress was taken over");
    assert!(Path::new(&format!("/proc/{}", pids[1])).exists());
    // its remover "finishes": the lock is free, and the next sweep completes it
    drop(held);
    assert_eq!(c.finish_interrupted_removals(), vec![ids[1].clone()]);
    assert!(!retired[1].exists());
    e.wait_for("the second container's process to go", || {
        !Path::new(&format!("/proc/{}", pids[1])).exists()
    });
}
