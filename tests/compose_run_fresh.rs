//! `berth run` on a project that was never brought up: the daemon makes the service's
//! networks and named volumes as `up` would (same names, labels and project records), the
//! dependencies start unless `--no-deps`, and `down` then leaves no container, network or
//! volume behind. Root, real containers, own data root and daemon per test.

mod compose_support;

use std::path::PathBuf;
use std::time::Duration;

use compose_support::Env;

const APP: &str = r#"
services:
  db:
    image: busybox:latest
    command: ["sh", "-c", "exec sleep 3600"]
    networks: [back]
  tool:
    image: busybox:latest
    depends_on: [db]
    networks: [back]
    volumes: [data:/data]
    environment:
      FROM_FILE: file-value
    command: ["echo", "default command"]
networks:
  back:
    labels:
      made.by: the-file
volumes:
  data: {}
"#;

/// The berth networks of the data root (`network/networks.json`), as JSON text.
fn networks(env: &Env) -> String {
    std::fs::read_to_string(env.root.path().join("network").join("networks.json"))
        .unwrap_or_default()
}

/// What the worker recorded for the project (what `up` and `down` manage).
fn project_record(env: &Env) -> Option<serde_json::Value> {
    let path = env
        .root
        .path()
        .join("worker")
        .join("projects")
        .join(format!("{}.json", env.project));
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn volume_dir(env: &Env) -> PathBuf {
    env.root
        .path()
        .join("volumes")
        .join(format!("{}_data", env.project))
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_no_deps_on_a_fresh_project_makes_its_network_and_volume_and_down_takes_them() {
    let env = Env::with_daemon("cmp-fresh-nd", APP);
    let network = format!("{}_back", env.project);
    let out = env.run(&[
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "tool",
        "sh",
        "-c",
        "echo $FROM_FILE > /data/mark; cat /data/mark; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "file-value");
    // --no-deps: nothing else ran, and --rm took the one-off
    assert_eq!(env.container_dirs(), 0, "run --no-deps left a container");
    // the same objects `up` makes: Compose's names, the file's and Compose's labels,
    // recorded with the project
    let record = project_record(&env).expect("no project record after run");
    let net = &record["networks"][&network];
    assert_eq!(net["key"], "back", "{record}");
    assert_eq!(net["labels"]["com.docker.compose.project"], env.project);
    assert_eq!(net["labels"]["com.docker.compose.network"], "back");
    assert_eq!(net["labels"]["made.by"], "the-file");
    let vol = &record["volumes"][format!("{}_data", env.project)];
    assert_eq!(
        vol["labels"]["com.docker.compose.volume"], "data",
        "{record}"
    );
    assert!(networks(&env).contains(&network), "no network {network}");
    assert!(
        volume_dir(&env).is_dir(),
        "no volume {:?}",
        volume_dir(&env)
    );

    // a second run finds them; a detached one-off is still running when `down` comes
    let out = env.run(&["run", "-d", "--no-deps", "tool", "sleep", "600"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.container_dirs(), 1);
    // a later `up` of the project uses the same network and volume
    env.ok(&["up", "-d", "db"]);
    env.wait_for("db running", Duration::from_secs(60), || {
        env.count("db", "running") == 1
    });

    // down: the one-off and the service containers, then the network; -v: the volume
    let out = env.run(&["down", "-v", "-t", "1"]);
    assert!(
        out.status.success(),
        "{}\n--- berthd log ---\n{}",
        stderr(&out),
        compose_support::tail(&env.daemon_log(), 40)
    );
    assert_eq!(env.container_dirs(), 0, "down left a container");
    assert!(!networks(&env).contains(&network), "down left {network}");
    assert!(!volume_dir(&env).exists(), "down -v left the volume");
    assert!(
        project_record(&env).is_none(),
        "down left the project record"
    );
}

#[test]
fn run_with_a_dependency_on_a_fresh_project_starts_it_first() {
    let env = Env::with_daemon("cmp-fresh-dep", APP);
    let network = format!("{}_back", env.project);
    let out = env.run(&["run", "--rm", "-T", "tool"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "default command"
    );
    // the dependency came up through the daemon and stays up (as with `up -d db`)
    assert_eq!(env.count("db", "running"), 1, "run did not start db");
    assert_eq!(env.count("tool", "running"), 0, "run started the service");
    assert_eq!(env.container_dirs(), 1, "only db's container stays");
    assert!(networks(&env).contains(&network));

    // down without -v keeps the named volume (as Compose does); down -v then takes it
    env.ok(&["down", "-t", "1"]);
    assert_eq!(env.container_dirs(), 0, "down left a container");
    assert!(!networks(&env).contains(&network), "down left {network}");
    assert!(
        volume_dir(&env).is_dir(),
        "down without -v removed the volume"
    );
    env.ok(&["down", "-v"]);
    assert!(!volume_dir(&env).exists(), "down -v left the volume");
    assert!(
        project_record(&env).is_none(),
        "down left the project record"
    );
}
