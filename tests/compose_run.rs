//! `berth run`: a one-off container of a service, with `--rm`, `-e`, `--entrypoint` and
//! `--no-deps`, its exit code propagated; and `logs -f` following containers that appear
//! after it started. Root, real containers, own data root and daemon per test.

mod compose_support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use compose_support::Env;

const APP: &str = r#"
services:
  db:
    image: busybox:latest
    command: ["sh", "-c", "echo db up; exec sleep 3600"]
  tool:
    image: busybox:latest
    depends_on: [db]
    environment:
      FROM_FILE: file-value
    command: ["echo", "default command"]
"#;

#[test]
fn run_one_off_with_rm_env_entrypoint_no_deps_and_exit_code() {
    let env = Env::with_daemon("cmp-run", APP);
    // --no-deps: the dependency is not started (here on a project created without
    // starting anything; tests/compose_run_fresh.rs runs on one never brought up)
    env.ok(&["up", "--no-start"]);
    let created = env.container_dirs();
    let out = env.run(&["run", "--rm", "--no-deps", "-T", "tool"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "default command"
    );
    assert_eq!(env.count("db", "running"), 0, "run --no-deps started db");
    assert_eq!(env.container_dirs(), created, "--rm left the container");

    // with dependencies: db comes up first; -e adds to the file's environment; the exit
    // code of the command is run's
    let out = env.run(&[
        "run",
        "--rm",
        "-T",
        "-e",
        "EXTRA=given",
        "tool",
        "sh",
        "-c",
        "echo $FROM_FILE $EXTRA; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "file-value given"
    );
    env.wait_for("db started for run", Duration::from_secs(30), || {
        env.count("db", "running") == 1
    });
    assert_eq!(env.container_dirs(), created, "--rm left the container");

    // --entrypoint replaces the image's; the command follows it; without --rm the
    // container stays (as a one-off, not a service replica)
    let out = env.run(&[
        "run",
        "-T",
        "--entrypoint",
        "echo",
        "tool",
        "from",
        "entrypoint",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from entrypoint"
    );
    assert_eq!(
        env.container_dirs(),
        created + 1,
        "run without --rm removed its container"
    );
    let missing = env.run(&["run", "--rm", "-T", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such service: nope"));
}

const TICKER: &str = r#"
services:
  tick:
    image: busybox:latest
    command: ["sh", "-c", "echo tick from $$(hostname); exec sleep 3600"]
  crash:
    image: busybox:latest
    restart: always
    command: ["sh", "-c", "echo crash run; sleep 2; exit 1"]
"#;

#[test]
fn logs_follow_picks_up_new_containers() {
    let env = Env::with_daemon("cmp-follow", TICKER);
    env.ok(&["up", "-d"]);
    let mut follower = std::process::Command::new("timeout");
    follower
        .args(["--kill-after=5", "120"])
        .arg(compose_support::BERTH)
        .args(env.command(&[]).get_args())
        .args(["logs", "-f", "--no-log-prefix"])
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = follower.spawn().expect("logs -f");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    /// SIGTERM to `timeout`, which passes it on to berth (a SIGKILL would orphan berth,
    /// and the reader thread with it).
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(child);
    let mut seen = String::new();
    let mut wait_text = |what: &str, count: usize, limit: Duration| {
        let deadline = Instant::now() + limit;
        while seen.matches(what).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "logs -f never printed {count}× {what:?}: {seen}"
            );
            if let Ok(chunk) = rx.recv_timeout(left.min(Duration::from_millis(500))) {
                seen.push_str(&chunk);
            }
        }
    };
    wait_text("tick from", 1, Duration::from_secs(30));
    // a restart by policy is a new container: its output follows
    wait_text("crash run", 3, Duration::from_secs(60));
    // scale up: the new replica's first line arrives on the same stream
    env.ok(&["scale", "tick=2"]);
    wait_text("tick from", 2, Duration::from_secs(60));
    drop(guard);
    // the pipe closes with berth; the reader is not joined (an orphan would hold it)
    drop(reader);
}
