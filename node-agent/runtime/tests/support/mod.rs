//! Test support: busybox bundles, a per-test runtime root, and guards that remove the
//! container (cgroup, mounts, state) even when a test fails.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_berth-runc");

/// Where Debian's busybox-static lives.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("busybox not found: install Debian's busybox-static");
}

/// A bundle dir with a busybox rootfs and the default spec.
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

impl Bundle {
    /// `args` is the container's process; `tweak` edits the spec JSON.
    pub fn new(args: &[&str], tweak: impl FnOnce(&mut Value)) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-bundle")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        let bin = rootfs.join("bin");
        fs::create_dir_all(&bin).unwrap();
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        fs::copy(busybox(), bin.join("busybox")).unwrap();
        let list = Command::new(busybox()).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        let out = Command::new(BIN)
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join("config.json");
        let mut spec: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        spec["hostname"] = json!("berth-test");
        tweak(&mut spec);
        fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        Bundle { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

/// A runtime root of its own, so parallel tests never share state.
pub struct Runtime {
    pub root: tempfile::TempDir,
}

impl Runtime {
    pub fn new() -> Runtime {
        Runtime {
            root: tempfile::Builder::new()
                .prefix("berth-rt-root")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Runs a command that does not leave a container holding its stdio.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "berth-runc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `create` with the container's stdout/stderr going to files in `logs`.
    pub fn create(&self, id: &str, bundle: &Bundle, logs: &Path) -> Container<'_> {
        let out = fs::File::create(logs.join("stdout")).unwrap();
        let err = fs::File::create(logs.join("stderr")).unwrap();
        let st = self
            .cmd()
            .args(["create", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .unwrap();
        let c = Container {
            rt: self,
            id: id.to_string(),
        };
        assert!(
            st.success(),
            "create failed: {}",
            fs::read_to_string(logs.join("stderr")).unwrap_or_default()
        );
        c
    }

    pub fn state(&self, id: &str) -> Option<Value> {
        let out = self.cmd().args(["state", id]).output().unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)
            .map(|s| s["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    }

    /// Waits (with a deadline) until the container has `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        wait_until(
            Duration::from_secs(10),
            || self.status(id) == status,
            &format!("{id} to be {status}"),
        );
    }
}

/// Deletes the container on drop (`delete --force`), whatever the test's outcome.
pub struct Container<'a> {
    pub rt: &'a Runtime,
    pub id: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .rt
            .cmd()
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .output();
    }
}

/// A unique container id per test (tests run in parallel threads of one process, and
/// possibly several processes).
pub fn id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `berth-runc run` with captured output (the container exits before we read).
pub fn run(rt: &Runtime, id: &str, bundle: &Bundle) -> Output {
    let out = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // The container is gone after run; make sure of it even when run failed half-way.
    let _ = rt.cmd().args(["delete", "--force", id]).output();
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A tmpfs mounted on the host for the duration of a test (unmounted on drop).
pub struct HostMount {
    pub dir: tempfile::TempDir,
}

impl HostMount {
    pub fn new() -> HostMount {
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-hostmnt")
            .tempdir()
            .unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "berth-test-marker"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        HostMount { dir }
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
