//! `down` survives a berthd restart: the stop timeout and the keep-volumes choice are in
//! the replicated state, so the agent of a berthd killed in the middle of a `down` and
//! started again stops the container with `-t` (or, without it, the service's own grace
//! period, though the app is gone from the state by then), and keeps its anonymous volume
//! (no `-v`). The takedown is replicated too: the restarted daemon then removes the
//! project's networks (and with `-v` its named volumes) without a second `down`, and a
//! second `down` still succeeds. Root, real containers, own data root and daemon per test.

mod compose_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use compose_support::{BERTH, Env};

/// A container that ignores SIGTERM on purpose and has a long grace period: only the
/// timeout given to `down` ends it quickly.
const STUBBORN: &str = r#"
services:
  stubborn:
    image: busybox:latest
    command: ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"]
    stop_grace_period: 120s
    volumes: ["/scratch"]
"#;

/// The same with a grace period of its own, longer than the 10 s default.
const PATIENT: &str = r#"
services:
  stubborn:
    image: busybox:latest
    command: ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"]
    stop_grace_period: 25s
    volumes: ["/scratch"]
"#;

/// With a network and a named volume of its own, for `down -v`.
const NAMED: &str = r#"
services:
  stubborn:
    image: busybox:latest
    command: ["sh", "-c", "trap '' TERM; echo up; while :; do sleep 1; done"]
    stop_grace_period: 120s
    networks: [back]
    volumes: ["data:/data"]
networks:
  back: {}
volumes:
  data: {}
"#;

/// The berth networks of the data root (`network/networks.json`), as JSON text.
fn networks(env: &Env) -> String {
    std::fs::read_to_string(env.root.path().join("network").join("networks.json"))
        .unwrap_or_default()
}

fn named_volume(env: &Env, name: &str) -> std::path::PathBuf {
    env.root
        .path()
        .join("volumes")
        .join(format!("{}_{name}", env.project))
}

fn anonymous_volumes(env: &Env) -> usize {
    std::fs::read_dir(env.root.path().join("volumes"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("anon-"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// The pid in the data root's `berthd.pid`.
fn daemon_pid(env: &Env) -> i32 {
    std::fs::read_to_string(env.root.path().join("berthd.pid"))
        .expect("berthd.pid")
        .trim()
        .parse()
        .expect("pid")
}

/// Gone, or a zombie not reaped yet (its locks and sockets are released either way).
fn dead(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Kills the bounded `berth down` on drop if it is still there.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Runs `down DOWN_ARGS…` (bounded), kills berthd (`kill -9`) once the app's removal is
/// committed, its container still being stopped, and starts berthd again.
fn kill_during_down(env: &mut Env, down_args: &[&str]) {
    let mut down = Command::new("timeout");
    down.args(["--kill-after=5", "90", BERTH])
        .args(env.command(&[]).get_args())
        .arg("down")
        .args(down_args)
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut down = Child(down.spawn().expect("berth down"));
    // the removal is committed (with -t and the keep-volumes choice before it) once the
    // project is no longer listed; its container is then being stopped
    env.wait_for("down to remove the app", Duration::from_secs(30), || {
        let ls = env.run(&["ls", "-q"]);
        ls.status.success() && !String::from_utf8_lossy(&ls.stdout).contains(&env.project)
    });
    assert_eq!(
        env.container_dirs(),
        1,
        "the container went before the restart"
    );

    let pid = daemon_pid(env);
    // SAFETY: kill(2) on the berthd of this test's own data root.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    env.wait_for("berthd to die", Duration::from_secs(10), || dead(pid));
    // the interrupted down fails (its daemon went away), within its bound
    let deadline = Instant::now() + Duration::from_secs(100);
    while down.0.try_wait().expect("wait down").is_none() {
        assert!(Instant::now() < deadline, "berth down outlived its timeout");
        std::thread::sleep(Duration::from_millis(50));
    }
    // a stale socket would make the CLI start a daemon of its own
    let _ = std::fs::remove_file(&env.socket);
    env.start_daemon();
}

/// `up -d` of `compose` (one service `stubborn` that ignores SIGTERM), then `down
/// DOWN_ARGS…` with berthd killed (`kill -9`) once the removal is committed and started
/// again: the restarted agent must take `expected` seconds to stop the container (it
/// signals again and waits that long). Then, with no second `down`, the project's
/// `network` must go. `anonymous`: the anonymous volumes the service has. Answers the environment, its daemon running.
fn interrupted_down(
    project: &str,
    compose: &str,
    down_args: &[&str],
    expected: u64,
    network: &str,
    anonymous: usize,
) -> Env {
    let mut env = Env::with_daemon(project, compose);
    env.ok(&["up", "-d"]);
    env.wait_for("stubborn running", Duration::from_secs(60), || {
        env.count("stubborn", "running") == 1
    });
    let network = format!("{}_{network}", env.project);
    assert!(networks(&env).contains(&network), "no network {network}");
    assert_eq!(anonymous_volumes(&env), anonymous, "the anonymous volumes");

    kill_during_down(&mut env, down_args);
    let restarted = Instant::now();
    env.wait_for(
        "the restarted agent to finish the down",
        Duration::from_secs(expected + 60),
        || env.container_dirs() == 0,
    );
    let took = restarted.elapsed();
    assert!(
        took >= Duration::from_secs(expected - 1) && took < Duration::from_secs(expected + 30),
        "after the restart the container took {took:?} to go ({expected} s expected)"
    );
    // the rest of the down, finished by the restarted daemon on its own
    env.wait_for(
        "the restarted daemon to remove the project's network",
        Duration::from_secs(30),
        || !networks(&env).contains(&network),
    );
    let ls = env.ok(&["ls", "-a", "-q"]);
    assert!(!ls.contains(&env.project), "ls still lists it: {ls}");
    env
}

/// [`interrupted_down`] of a service with an anonymous volume: without `-v` it stays,
/// for a later `down -v`.
fn down_across_a_restart(project: &str, compose: &str, down_args: &[&str], expected: u64) {
    let env = interrupted_down(project, compose, down_args, expected, "default", 1);
    // no -v: its anonymous volume stays, for a later down -v
    assert_eq!(anonymous_volumes(&env), 1, "down without -v removed it");
    env.ok(&["down", "-v"]);
    assert_eq!(
        anonymous_volumes(&env),
        0,
        "down -v left the anonymous volume"
    );
    assert_eq!(env.container_dirs(), 0);
}

#[test]
fn down_timeout_and_kept_volumes_survive_a_berthd_restart() {
    // -t 25 over a 120 s grace period: neither the grace period nor the 10 s an agent
    // falls back to when it knows none
    down_across_a_restart("cmp-downrs", STUBBORN, &["-t", "25"], 25);
}

#[test]
fn down_without_timeout_keeps_the_grace_period_across_a_berthd_restart() {
    // the app leaves the state before its tasks stop: the grace period (25 s, not the
    // 10 s default) must be pinned on the tasks to survive
    down_across_a_restart("cmp-downrg", PATIENT, &[], 25);
}

#[test]
fn an_interrupted_down_v_removes_the_network_and_named_volume_after_a_berthd_restart() {
    let env = interrupted_down("cmp-downrv", NAMED, &["-v", "-t", "10"], 10, "back", 0);
    env.wait_for(
        "the restarted daemon to remove the named volume (-v)",
        Duration::from_secs(30),
        || !named_volume(&env, "data").exists(),
    );
    // nothing is left to do, and a second down says so without failing
    let again = env.run(&["down", "-v"]);
    assert!(
        again.status.success(),
        "a second down failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(env.container_dirs(), 0);
}

#[test]
fn a_second_down_right_after_the_restart_waits_for_the_stop_and_finishes_the_first() {
    let mut env = Env::with_daemon("cmp-downr2", NAMED);
    env.ok(&["up", "-d"]);
    env.wait_for("stubborn running", Duration::from_secs(60), || {
        env.count("stubborn", "running") == 1
    });
    let network = format!("{}_back", env.project);
    assert!(networks(&env).contains(&network), "no network {network}");
    kill_during_down(&mut env, &["-v", "-t", "10"]);
    // the restarted agent still waits out the first down's -t: this one waits for it,
    // then removes what is left, the named volume included (the first one had -v)
    let again = Command::new("timeout")
        .args(["--kill-after=5", "90", BERTH])
        .args(env.command(&[]).get_args())
        .arg("down")
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .output()
        .expect("berth down");
    assert!(
        again.status.success(),
        "the second down failed: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        env.container_dirs(),
        0,
        "the second down left the container"
    );
    assert!(
        !networks(&env).contains(&network),
        "the second down left {network}"
    );
    assert!(
        !named_volume(&env, "data").exists(),
        "the first down's -v was not honoured"
    );
    let ls = env.ok(&["ls", "-a", "-q"]);
    assert!(!ls.contains(&env.project), "ls still lists it: {ls}");
}
