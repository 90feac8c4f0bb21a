//! Debian's dockerd drives berth-runc: `dockerd --add-runtime berth=…`, then
//! `docker run --runtime berth` for run (exit code), logs, exec, -p, --memory (OOM), kill, stop.
//!
//! The daemon is private to the test: its own data root, exec root, socket, pid file and a
//! bridge of its own; no iptables and no masquerading (published ports go through
//! docker-proxy on 127.0.0.1). Everything is torn down by a guard, even on failure.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::*;

struct Dockerd {
    child: Child,
    dir: tempfile::TempDir,
    exec_root: PathBuf,
    bridge: String,
}

impl Dockerd {
    fn start() -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-dockerd")
            .tempdir()
            .unwrap();
        // Unix socket paths are short: keep the exec root near /tmp.
        let exec_root = PathBuf::from(format!("/tmp/brtx-{}", std::process::id()));
        let bridge = format!("brt{}", std::process::id() % 100_000);
        let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
        assert!(ip(&["link", "add", &bridge, "type", "bridge"]));
        let subnet = format!("172.31.{}.1/24", 100 + std::process::id() % 100);
        assert!(ip(&["addr", "add", &subnet, "dev", &bridge]));
        assert!(ip(&["link", "set", &bridge, "up"]));
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--host")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .args(["--bridge", &bridge, "--iptables=false", "--ip-masq=false"])
            .arg(format!("--add-runtime=berth={BIN}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian's docker.io) must be installed");
        let d = Dockerd {
            child,
            dir,
            exec_root,
            bridge,
        };
        wait_until(
            Duration::from_secs(60),
            || d.docker(&["version"]).status.success(),
            "dockerd to answer",
        );
        d
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("--host")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("docker.sock").display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?}: {}\n{}",
            stderr(&o),
            self.log()
        );
        stdout(&o)
    }

    fn log(&self) -> String {
        let l = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        l.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        for id in stdout(&ids).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SAFETY: signalling the daemon we spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever the daemon left mounted under its roots.
        for root in [self.dir.path(), self.exec_root.as_path()] {
            unmount_below(root);
        }
        let _ = std::fs::remove_dir_all(&self.exec_root);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

fn unmount_below(root: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).status();
    }
}

#[test]
fn dockerd_runs_containers_with_berth_runc() {
    let d = Dockerd::start();
    // The image: the busybox rootfs of the test bundles, imported as a tar.
    let b = Bundle::new(&["true"], |_| {});
    let tar = Command::new("tar")
        .arg("-C")
        .arg(b.rootfs())
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut import = Command::new("docker")
        .arg("--host")
        .arg(format!(
            "unix://{}",
            d.dir.path().join("docker.sock").display()
        ))
        .args(["import", "-", "berth-busybox:test"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(import.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(import.stdin.take());
    assert!(import.wait().unwrap().success());
    let img = "berth-busybox:test";

    // run: output and exit code.
    let o = d.docker(&[
        "run",
        "--runtime",
        "berth",
        "--rm",
        img,
        "sh",
        "-c",
        "echo hello; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stderr(&o), d.log());
    assert_eq!(stdout(&o), "hello\n");

    // -p, logs, exec.
    let port = 20000 + std::process::id() % 20000;
    d.ok(&[
        "run", "--runtime", "berth", "-d", "--name", "web", "-p", &format!("127.0.0.1:{port}:8080"), img,
        "sh", "-c", "echo started; mkdir /www; echo served-by-berth > /www/index.html; exec httpd -f -p 8080 -h /www",
    ]);
    let mut body = String::new();
    wait_until(
        Duration::from_secs(20),
        || {
            body = Command::new("busybox")
                .args([
                    "timeout",
                    "3",
                    "wget",
                    "-qO-",
                    &format!("http://127.0.0.1:{port}/"),
                ])
                .output()
                .map(|o| stdout(&o))
                .unwrap_or_default();
            body.contains("served-by-berth")
        },
        "the published port to answer",
    );
    assert_eq!(
        d.ok(&["exec", "web", "sh", "-c", "echo in-$(cat /proc/1/comm)"]),
        "in-httpd\n"
    );
    assert!(d.ok(&["logs", "web"]).contains("started"));
    // stop: httpd as PID 1 ignores SIGTERM, so docker escalates to SIGKILL.
    d.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(
        d.ok(&["inspect", "web", "--format", "{{.State.ExitCode}}"])
            .trim(),
        "137"
    );

    // kill.
    d.ok(&[
        "run",
        "--runtime",
        "berth",
        "-d",
        "--name",
        "sleeper",
        img,
        "sleep",
        "1000",
    ]);
    d.ok(&["kill", "sleeper"]);
    wait_until(
        Duration::from_secs(10),
        || {
            d.ok(&["inspect", "sleeper", "--format", "{{.State.Status}}"])
                .trim()
                == "exited"
        },
        "the killed container to exit",
    );

    // --memory: the limit is set and an allocation past it is OOM-killed and reported.
    let o = d.docker(&[
        "run",
        "--runtime",
        "berth",
        "--name",
        "oom",
        "--memory",
        "32m",
        img,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_eq!(
        d.ok(&["inspect", "oom", "--format", "{{.State.OOMKilled}}"])
            .trim(),
        "true"
    );
}
