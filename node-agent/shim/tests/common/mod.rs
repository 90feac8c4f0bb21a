//! Shared fixtures for the shim's integration tests: a busybox OCI bundle made with the
//! runtime's own `spec`, a unique runtime root per test, and a guard that deletes the
//! container, kills the shim and removes every directory even when the test fails.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_shim::log::{LogRecord, read_records};
use berth_shim::{Shim, ShimArgs, ShimHandle, ShimOptions, state};

pub const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");
pub const INIT: &str = env!("CARGO_BIN_EXE_berth-init");

/// The runtime under test: `BERTH_TEST_RUNTIME`, else Debian's runc.
pub fn runtime() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_TEST_RUNTIME") {
        return PathBuf::from(p);
    }
    for p in ["/usr/sbin/runc", "/usr/bin/runc"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no runc found: install Debian's runc (listed in .ci/packages.txt)");
}

/// Polls `cond` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn pid_alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; only a running or sleeping process counts.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// One container under test, with everything it owns.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub bundle: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub runtime: PathBuf,
    pub extra_cleanup: Vec<i32>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Fixture {
    /// A bundle running `args` in busybox, without a terminal.
    pub fn new(name: &str, args: &[&str]) -> Self {
        Self::with(name, args, false, |_| {})
    }

    /// A bundle running `args`; `edit` may change the generated config.json further.
    pub fn with(
        name: &str,
        args: &[&str],
        terminal: bool,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("berth-shim-{name}-"))
            .tempdir()
            .expect("tempdir");
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("shimtest-{name}-{}-{n}", std::process::id());
        let bundle = dir.path().join("bundle");
        let runtime = runtime();
        make_busybox_rootfs(&bundle.join("rootfs"));
        let out = Command::new(&runtime)
            .arg("spec")
            .arg("--bundle")
            .arg(&bundle)
            .output()
            .expect("run runtime spec");
        assert!(out.status.success(), "runtime spec: {out:?}");
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = terminal.into();
        cfg["process"]["args"] = args.iter().map(|a| a.to_string()).collect();
        cfg["hostname"] = "shimtest".into();
        edit(&mut cfg);
        fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        let state_dir = dir.path().join("state").join(&id);
        let runtime_root = dir.path().join("runtime-root");
        Fixture {
            dir,
            id,
            bundle,
            state_dir,
            runtime_root,
            runtime,
            extra_cleanup: Vec::new(),
        }
    }

    pub fn state_root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn args(&self) -> ShimArgs {
        ShimArgs {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            state_dir: self.state_dir.clone(),
            runtime: self.runtime.clone(),
            runtime_root: self.runtime_root.clone(),
            log_max_size: 0,
            log_max_files: 1,
            tty: false,
            stdin: false,
            exit_with_container: false,
        }
    }

    pub fn spawn_with(&self, args: ShimArgs) -> ShimHandle {
        Shim::spawn(&ShimOptions {
            binary: SHIM.into(),
            args,
        })
        .expect("spawn shim")
    }

    pub fn spawn(&self) -> ShimHandle {
        self.spawn_with(self.args())
    }

    pub fn shim_pid(&self) -> Option<i32> {
        state::read_pid(&self.state_dir.join(state::SHIM_PID))
            .ok()
            .flatten()
    }

    pub fn records(&self) -> Vec<LogRecord> {
        read_records(&self.state_dir.join(state::LOG)).expect("read log")
    }

    /// Lines of one stream, in order.
    pub fn lines(&self, stream: &str) -> Vec<String> {
        self.records()
            .into_iter()
            .filter(|r| r.stream.as_str() == stream)
            .map(|r| r.log)
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.runtime_root)
            .args(["delete", "--force", &self.id])
            .output();
        let mut pids = self.extra_cleanup.clone();
        pids.extend(self.shim_pid());
        for pid in pids {
            // Only kill what is still ours: the pid could have been reused.
            let ours = fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&self.id))
                .unwrap_or(false);
            if ours {
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A root filesystem with Debian's static busybox and its applet links.
pub fn make_busybox_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc", "sbin"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", bin.join("busybox")).expect("copy /bin/busybox (busybox-static)");
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = symlink("busybox", bin.join(applet));
        }
    }
}
