//! `stop` keeps containers, `start` starts the same ones, `rm` and `down` remove them;
//! `pause`/`unpause` freeze and thaw; `kill -s TERM` reports the real exit status; `up
//! --no-start` creates without starting; orphans are kept (with Compose's warning) unless
//! `--remove-orphans`. Root, real containers; each test has its own data root and daemon.

mod compose_support;

use std::collections::BTreeMap;
use std::time::Duration;

use compose_support::Env;

const APP: &str = r#"
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo web up $$(date +%s%N); exec httpd -f -p 8080 -h /etc"]
  db:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 143' TERM; echo db up; while :; do sleep 1; done"]
"#;

/// Service → (container id, state) from `ps -a`.
fn containers(env: &Env) -> BTreeMap<String, (String, String)> {
    env.ps(&["-a"])
        .into_iter()
        .filter(|c| !c["ID"].as_str().unwrap_or_default().is_empty())
        .map(|c| {
            (
                c["Service"].as_str().unwrap_or_default().to_owned(),
                (
                    c["ID"].as_str().unwrap_or_default().to_owned(),
                    c["State"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect()
}

fn state_of(env: &Env, service: &str) -> String {
    containers(env)
        .get(service)
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}

#[test]
fn stop_keeps_containers_and_start_rm_down_act_on_them() {
    let env = Env::with_daemon("cmp-stop", APP);
    env.ok(&["up", "-d"]);
    let before = containers(&env);
    assert_eq!(before.len(), 2, "{before:?}");
    env.wait_for("web's first line", Duration::from_secs(20), || {
        env.ok(&["logs", "web"]).contains("web up")
    });

    env.ok(&["stop", "-t", "1"]);
    let stopped = containers(&env);
    assert_eq!(
        stopped.keys().collect::<Vec<_>>(),
        ["db", "web"],
        "stop removed containers: {stopped:?}"
    );
    for (service, (id, state)) in &stopped {
        assert_eq!(state, "exited", "{service} after stop: {stopped:?}");
        assert_eq!(id, &before[service].0, "{service} got a new container");
    }
    // plain `ps` lists running containers only; `ps -a` the stopped ones
    assert!(env.ps(&[]).is_empty(), "{:?}", env.ps(&[]));
    let logs = env.ok(&["logs", "--no-log-prefix", "web"]);
    assert_eq!(logs.matches("web up").count(), 1, "{logs}");
    assert!(env.ok(&["logs", "db"]).contains("db up"));

    // start: the same containers run again, and their earlier output is kept
    env.ok(&["start"]);
    env.wait_for("both running again", Duration::from_secs(30), || {
        let now = containers(&env);
        now.len() == 2 && now.values().all(|(_, s)| s == "running")
    });
    let started = containers(&env);
    for (service, (id, _)) in &started {
        assert_eq!(
            id, &before[service].0,
            "start made a new {service} container"
        );
    }
    env.wait_for(
        "web's second start in logs",
        Duration::from_secs(20),
        || {
            env.ok(&["logs", "--no-log-prefix", "web"])
                .matches("web up")
                .count()
                == 2
        },
    );

    // one service stopped, then removed with rm; the other is untouched
    env.ok(&["stop", "-t", "1", "web"]);
    assert_eq!(state_of(&env, "web"), "exited");
    let refused = env.run(&["rm", "-f", "db"]);
    assert!(!refused.status.success(), "rm of a running container");
    let out = env.run(&["rm", "-f", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = containers(&env);
    assert!(!after.contains_key("web"), "rm left web: {after:?}");
    assert_eq!(after["db"].0, before["db"].0);
    assert_eq!(after["db"].1, "running");

    // `up` makes web again; stop then `down` removes stopped containers too
    env.ok(&["up", "-d"]);
    assert_eq!(state_of(&env, "web"), "running");
    env.ok(&["stop", "-t", "1"]);
    env.ok(&["down"]);
    assert!(env.ps(&["-a"]).is_empty());
    let left = env.root.path().join("containers");
    let stay: Vec<String> = std::fs::read_dir(&left)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    // what each one is, so a failure says which container outlived `down` and in what state
    let detail: Vec<String> = stay
        .iter()
        .map(|id| {
            let record = std::fs::read_to_string(left.join(id).join("container.json"))
                .unwrap_or_else(|e| format!("(no record: {e})"));
            format!("{id}: {}", record.chars().take(600).collect::<String>())
        })
        .collect();
    assert!(
        stay.is_empty(),
        "down left container directories in {left:?}:\n{}\ndaemon log:\n{}",
        detail.join("\n"),
        env.daemon_log()
    );
}

#[test]
fn pause_unpause_and_kill_with_term_reports_143() {
    let env = Env::with_daemon("cmp-pause", APP);
    env.ok(&["up", "-d"]);
    env.ok(&["pause", "web"]);
    assert_eq!(state_of(&env, "web"), "paused");
    assert_eq!(state_of(&env, "db"), "running");
    // a frozen web server does not answer; thawed, it does
    let frozen = env.run(&[
        "exec",
        "-T",
        "db",
        "timeout",
        "2",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web:8080/hostname",
    ]);
    assert!(!frozen.status.success(), "a paused web answered");
    env.ok(&["unpause", "web"]);
    assert_eq!(state_of(&env, "web"), "running");
    let page = env.ok(&[
        "exec",
        "-T",
        "db",
        "timeout",
        "5",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web:8080/hostname",
    ]);
    assert!(!page.trim().is_empty());

    // db ends on SIGTERM with 128 + 15, as a program that handles it does
    env.ok(&["kill", "-s", "TERM", "db"]);
    env.wait_for("db to exit", Duration::from_secs(20), || {
        state_of(&env, "db") == "exited"
    });
    let db: Vec<_> = env
        .ps(&["-a"])
        .into_iter()
        .filter(|c| c["Service"] == "db")
        .collect();
    assert!(db.iter().any(|c| c["ExitCode"] == 143), "{db:?}");
    env.ok(&["kill", "web"]);
    env.wait_for("web to exit", Duration::from_secs(20), || {
        state_of(&env, "web") == "exited"
    });
    let web: Vec<_> = env
        .ps(&["-a"])
        .into_iter()
        .filter(|c| c["Service"] == "web")
        .collect();
    assert!(web.iter().any(|c| c["ExitCode"] == 137), "{web:?}");
}

#[test]
fn up_no_start_creates_and_start_starts_the_same_containers() {
    let env = Env::with_daemon("cmp-nostart", APP);
    env.ok(&["up", "--no-start"]);
    env.wait_for("both containers created", Duration::from_secs(30), || {
        let c = containers(&env);
        c.len() == 2 && c.values().all(|(_, s)| s == "created")
    });
    let created = containers(&env);
    let net = env.root.path().join("network");
    assert!(net.is_dir(), "no network state after up --no-start");
    assert!(
        env.ps(&[]).is_empty(),
        "created containers listed as running"
    );
    env.ok(&["start"]);
    env.wait_for("both running", Duration::from_secs(30), || {
        let c = containers(&env);
        c.len() == 2 && c.values().all(|(_, s)| s == "running")
    });
    for (service, (id, _)) in containers(&env) {
        assert_eq!(
            id, created[&service].0,
            "start made a new {service} container"
        );
    }
    env.wait_for("web's output", Duration::from_secs(20), || {
        env.ok(&["logs", "web"]).contains("web up")
    });
}

#[test]
fn orphans_are_kept_with_a_warning_unless_remove_orphans() {
    let env = Env::with_daemon("cmp-orphan", APP);
    env.ok(&["up", "-d"]);
    let db = containers(&env)["db"].0.clone();
    let web_only = r#"
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo web up $$(date +%s%N); exec httpd -f -p 8080 -h /etc"]
"#;
    env.write_compose(web_only);
    let out = env.run(&["up", "-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Found orphan containers ([cmp-orphan-db-1]) for this project. If you removed or \
             renamed this service in your compose file, you can run this command with the \
             --remove-orphans flag to clean it up."
        ),
        "{stderr}"
    );
    let now = containers(&env);
    assert_eq!(now["db"], (db.clone(), "running".to_owned()), "{now:?}");

    // down without the flag keeps the orphan too
    let out = env.run(&["down", "-t", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Found orphan containers ([cmp-orphan-db-1])")
    );
    let now = containers(&env);
    assert_eq!(now.keys().collect::<Vec<_>>(), ["db"], "{now:?}");
    assert_eq!(now["db"].0, db);

    env.ok(&["up", "-d", "--remove-orphans"]);
    env.wait_for("the orphan removed", Duration::from_secs(30), || {
        !containers(&env).contains_key("db")
    });
    assert_eq!(state_of(&env, "web"), "running");
    env.ok(&["down", "--remove-orphans", "-t", "1"]);
    assert!(env.ps(&["-a"]).is_empty());
}

/// `a` ← `b` ignore SIGTERM on purpose (so they keep their grace period); `deaf` is a
/// PID 1 without a handler (the kernel drops the signal).
const STUBBORN: &str = r#"
services:
  a:
    image: busybox:latest
    command: ["sh", "-c", "trap '' TERM; echo a up; while :; do sleep 1; done"]
    stop_grace_period: 60s
  b:
    image: busybox:latest
    command: ["sh", "-c", "trap '' TERM; echo b up; while :; do sleep 1; done"]
    stop_grace_period: 60s
    depends_on: [a]
  deaf:
    image: busybox:latest
    command: ["httpd", "-f", "-p", "8080", "-h", "/etc"]
    stop_grace_period: 60s
    depends_on: [b]
"#;

fn all_running(env: &Env, n: usize) -> bool {
    let c = containers(env);
    c.len() == n && c.values().all(|(_, s)| s == "running")
}

#[test]
fn timeout_reaches_the_containers_and_a_deaf_init_is_not_waited_for() {
    let env = Env::with_daemon("cmp-stopt", STUBBORN);
    env.ok(&["up", "-d"]);
    env.wait_for("all three running", Duration::from_secs(60), || {
        all_running(&env, 3)
    });
    // each grace period is 60 s: only `-t 1` reaching the agent makes this quick
    let t0 = std::time::Instant::now();
    env.ok(&["stop", "-t", "1", "a", "b"]);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(30), "stop -t 1 took {took:?}");
    assert_eq!(state_of(&env, "a"), "exited");
    assert_eq!(state_of(&env, "b"), "exited");

    env.ok(&["start"]);
    env.wait_for("all three running again", Duration::from_secs(60), || {
        all_running(&env, 3)
    });
    // no -t: httpd as PID 1 never receives SIGTERM, so it is killed without waiting
    let t0 = std::time::Instant::now();
    env.ok(&["stop", "deaf"]);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "stop of a deaf init took {took:?}"
    );
    assert_eq!(state_of(&env, "deaf"), "exited");
    assert_eq!(state_of(&env, "b"), "running");

    let t0 = std::time::Instant::now();
    env.ok(&["down", "-t", "1"]);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(30), "down -t 1 took {took:?}");
    assert!(env.ps(&["-a"]).is_empty());
}

const ANON: &str = r#"
services:
  keep:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; date > /data/f; while :; do sleep 1; done"]
    volumes: ["/data"]
"#;

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

#[test]
fn start_returns_once_running_and_rm_keeps_anonymous_volumes_unless_v() {
    let env = Env::with_daemon("cmp-anon", ANON);
    env.ok(&["up", "-d"]);
    assert_eq!(anonymous_volumes(&env), 1);
    env.ok(&["stop", "-t", "1"]);
    assert_eq!(state_of(&env, "keep"), "exited");
    // `start` answers once the container runs again, not when the daemon accepted it
    env.ok(&["start"]);
    assert_eq!(state_of(&env, "keep"), "running");
    env.ok(&["restart", "-t", "1"]);
    assert_eq!(state_of(&env, "keep"), "running");

    // rm without -v keeps the anonymous volume (as Compose does)
    env.ok(&["stop", "-t", "1"]);
    env.ok(&["rm", "-f"]);
    assert!(containers(&env).is_empty());
    assert_eq!(anonymous_volumes(&env), 1, "rm without -v removed it");
    // a new container gets a volume of its own; rm -v takes that one with it
    env.ok(&["up", "-d"]);
    assert_eq!(anonymous_volumes(&env), 2);
    env.ok(&["stop", "-t", "1"]);
    env.ok(&["rm", "-f", "-v"]);
    assert_eq!(anonymous_volumes(&env), 1, "rm -v kept it");
    // down -v takes what earlier removals kept
    env.ok(&["up", "-d"]);
    env.ok(&["down", "-t", "1"]);
    assert_eq!(anonymous_volumes(&env), 2, "down without -v removed it");
    env.ok(&["down", "-v"]);
    assert_eq!(anonymous_volumes(&env), 0, "down -v left anonymous volumes");
}
