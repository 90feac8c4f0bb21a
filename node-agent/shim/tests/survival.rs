//! Containers outlive whoever launched their shim, and the agent finds them again: a shim
//! spawned by a process that is then killed with SIGKILL (process group and all) keeps
//! supervising, and `recover` sorts state directories into live, stopped and lost.

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_shim::{Recovered, Shim, ShimArgs, ShimHandle, ShimOptions, Status, recover};
use common::{Fixture, SHIM, pid_alive, wait_until};

const LIMIT: Duration = Duration::from_secs(30);
const HELPER_ENV: &str = "BERTH_SHIM_TEST_SPAWN_ARGS";

/// Run only as the "agent" of `a_shim_survives_kill_9_of_the_process_that_spawned_it`:
/// spawns a shim from the arguments in the environment, says so, and hangs.
#[test]
#[ignore = "helper process, run by a_shim_survives_kill_9_of_the_process_that_spawned_it"]
fn helper_agent_spawns_a_shim_and_hangs() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let args = ShimArgs::parse(spec.split('\u{1f}').map(OsString::from)).unwrap();
    Shim::spawn(&ShimOptions {
        binary: SHIM.into(),
        args,
    })
    .unwrap();
    println!("helper: shim spawned");
    loop {
        std::thread::park();
    }
}

#[test]
fn a_shim_survives_kill_9_of_the_process_that_spawned_it() {
    let fx = Fixture::new(
        "survive",
        &["sh", "-c", "echo before; read x; echo after:$x; exit 17"],
    );
    let mut args = fx.args();
    args.stdin = true;
    let spec: Vec<String> = args
        .to_args()
        .into_iter()
        .map(|a| a.into_string().unwrap())
        .collect();
    let mut agent = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_agent_spawns_a_shim_and_hangs",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, spec.join("\u{1f}"))
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent_pid = agent.id() as i32;
    let mut lines = BufReader::new(agent.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("helper ended before spawning").unwrap();
        if line.contains("helper: shim spawned") {
            break;
        }
    }
    let shim = ShimHandle::connect(&fx.state_dir).unwrap();
    shim.start().unwrap();
    wait_until(LIMIT, "output before the agent dies", || {
        fx.lines("stdout") == vec!["before\n".to_string()]
    });

    // The agent and its whole process group die without a chance to clean up.
    // SAFETY: kill with plain integers, on the group we created.
    assert_eq!(unsafe { libc::kill(-agent_pid, libc::SIGKILL) }, 0);
    let _ = agent.wait();

    // A new "agent" finds the container running and everything still works.
    let shim = ShimHandle::connect(&fx.state_dir).unwrap();
    let st = shim.state().unwrap();
    assert_eq!(st.status, Status::Running);
    assert!(pid_alive(st.pid) && pid_alive(st.shim_pid));
    let mut att = shim.attach(true, false).unwrap();
    att.write_stdin(b"still-here\n").unwrap();
    let exit = shim.wait().unwrap();
    assert_eq!(exit.code, 17);
    assert_eq!(fx.lines("stdout"), vec!["before\n", "after:still-here\n"]);
    shim.delete(false).unwrap();
}

#[test]
fn recovery_reports_live_stopped_and_lost_containers() {
    // Three containers sharing one state root, as under one agent.
    let live = Fixture::new("reclive", &["sleep", "1000"]);
    let root = live.state_root();
    let mut stopped = Fixture::new("recstop", &["sh", "-c", "echo done; exit 5"]);
    stopped.state_dir = root.join(&stopped.id);
    let mut lost = Fixture::new("reclost", &["sleep", "1000"]);
    lost.state_dir = root.join(&lost.id);

    let h_live = live.spawn();
    h_live.start().unwrap();
    let h_stopped = stopped.spawn();
    h_stopped.start().unwrap();
    assert_eq!(h_stopped.wait().unwrap().code, 5);
    let h_lost = lost.spawn();
    h_lost.start().unwrap();
    let lost_init = h_lost.state().unwrap().pid;

    // The shims of two of them die hard.
    for fx in [&stopped, &lost] {
        let pid = fx.shim_pid().unwrap();
        // SAFETY: kill with plain integers, on our own shim.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until(LIMIT, "shim to die", || !pid_alive(pid));
    }

    let found = recover(&root).unwrap();
    assert_eq!(found.len(), 3, "{found:?}");
    for c in &found {
        match &c.outcome {
            Recovered::Live { state, handle } => {
                assert_eq!(c.id, live.id);
                assert_eq!(state.status, Status::Running);
                assert_eq!(handle.state().unwrap().pid, state.pid);
            }
            Recovered::Stopped { exit } => {
                assert_eq!(c.id, stopped.id);
                assert_eq!(exit.code, 5);
            }
            Recovered::Lost { reason } => {
                assert_eq!(c.id, lost.id);
                assert!(reason.contains("still running unsupervised"), "{reason}");
                assert!(reason.contains(&lost_init.to_string()), "{reason}");
            }
        }
    }
    let kinds: Vec<&str> = found
        .iter()
        .map(|c| match c.outcome {
            Recovered::Live { .. } => "live",
            Recovered::Stopped { .. } => "stopped",
            Recovered::Lost { .. } => "lost",
        })
        .collect();
    assert!(kinds.contains(&"live") && kinds.contains(&"stopped") && kinds.contains(&"lost"));
    // The stopped container's log survived its shim.
    assert_eq!(stopped.lines("stdout"), vec!["done\n"]);
    h_live.kill(libc::SIGKILL, false).unwrap();
    assert_eq!(h_live.wait().unwrap().code, 137);
    h_live.delete(false).unwrap();
}

#[test]
fn recovery_of_an_empty_or_missing_root_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(recover(&dir.path().join("absent")).unwrap().is_empty());
    std::fs::create_dir(dir.path().join("junk")).unwrap();
    let found = recover(dir.path()).unwrap();
    assert_eq!(found.len(), 1);
    match &found[0].outcome {
        Recovered::Lost { reason } => {
            assert!(reason.contains("not a shim state directory"), "{reason}")
        }
        other => panic!("junk directory recovered as {other:?}"),
    }
}
