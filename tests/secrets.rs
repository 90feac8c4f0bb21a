//! `berth secret create|ls|inspect|rm` and Compose `external: true` secrets, against real
//! berthds in the rig (`tests/cluster_rig`: each node a network namespace with its own data
//! root and socket, torn down by `Drop`). Root only. Every `berth` call is bounded by
//! `timeout`.

mod cluster_rig;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cluster_rig::{BERTH, Rig};

/// A value no other test (nor run) uses, so finding it anywhere means this test leaked it.
fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// `berth secret ARGS…` on node `i` with `stdin` piped in, bounded to 60 s.
fn secret_with_stdin(rig: &Rig, i: usize, args: &[&str], stdin: &[u8]) -> Output {
    let node = &rig.nodes[i];
    let mut child = Command::new("timeout")
        .args(["--kill-after=5", "60", BERTH])
        .arg("--data-root")
        .arg(node.data_root())
        .arg("secret")
        .arg("-H")
        .arg(node.host())
        .args(args)
        .current_dir(&node.root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth");
    // The child is bounded by its timeout; dropping stdin ends its input.
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait berth")
}

/// `berth ARGS…` on node `i` that must fail; its stderr.
fn fails(rig: &Rig, i: usize, args: &[&str]) -> String {
    let out = rig.berth(i, args);
    assert!(
        !out.status.success(),
        "berth {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A service that records what it finds of its two external secrets into `out`.
fn app(out: &Path, placement: &str) -> String {
    format!(
        r#"services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "stat -c '%a %u %g' /run/secrets/pw > /out/mode; cat /run/secrets/pw > /out/pw; cat /run/secrets/api_key > /out/api_key; grep ' /run/secrets/pw ' /proc/mounts > /out/mount; touch /out/done; sleep 3600"]
    volumes:
      - {out}:/out
    secrets:
      - source: pw
        uid: "1000"
        gid: "1001"
        mode: 0400
      - api_key
{placement}
secrets:
  pw:
    external: true
    name: db_pw
  api_key:
    external: true
"#,
        out = out.display()
    )
}

/// Deploys [`app`] through node `via` as project `sec` and checks what its container read.
fn deploy_and_check(rig: &Rig, via: usize, placement: &str, pw: &str, api_key: &str) -> String {
    let out = rig.nodes[via].root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let compose = rig.compose(via, &app(&out, placement));
    let compose = compose.to_str().unwrap().to_owned();
    rig.ok(via, &["-f", &compose, "-p", "sec", "up", "-d"]);
    rig.wait_for("the container's report", Duration::from_secs(90), |_| {
        out.join("done").exists()
    });
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("pw"), pw);
    assert_eq!(read("api_key"), api_key);
    assert_eq!(read("mode").trim(), "400 1000 1001");
    let mount = read("mount");
    assert!(mount.contains(" tmpfs ") && mount.contains("ro"), "{mount}");
    compose
}

fn ls_json(rig: &Rig, i: usize) -> Vec<serde_json::Value> {
    serde_json::from_str(&rig.ok(i, &["secret", "ls", "--format", "json"])).unwrap()
}

#[test]
fn stored_secrets_are_created_listed_used_as_external_and_removed_once_unused() {
    let rig = Rig::new(1);
    let pw = unique("pw");
    let api_key = unique("key");
    let file = rig.nodes[0].root.join("pw.txt");
    std::fs::write(&file, &pw).unwrap();

    // From a file, with a label; from stdin.
    let id = rig.ok(
        0,
        &[
            "secret",
            "create",
            "--label",
            "team=db",
            "db_pw",
            file.to_str().unwrap(),
        ],
    );
    let id = id.trim().to_owned();
    assert!(!id.is_empty());
    let out = secret_with_stdin(&rig, 0, &["create", "api_key", "-"], api_key.as_bytes());
    assert!(
        out.status.success(),
        "create from stdin: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Refusals: a taken name, a name Docker would refuse, an empty value.
    let err = fails(
        &rig,
        0,
        &["secret", "create", "db_pw", file.to_str().unwrap()],
    );
    assert!(err.contains("already exists"), "{err}");
    let err = fails(
        &rig,
        0,
        &["secret", "create", "bad/name", file.to_str().unwrap()],
    );
    assert!(err.contains("bad/name"), "{err}");
    let out = secret_with_stdin(&rig, 0, &["create", "empty", "-"], b"");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ls and inspect show metadata, never a value.
    let listed = ls_json(&rig, 0);
    let names: Vec<&str> = listed.iter().map(|s| s["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api_key", "db_pw"]);
    assert_eq!(listed[1]["ID"], id.as_str());
    assert_eq!(listed[1]["Labels"]["team"], "db");
    let quiet = rig.ok(0, &["secret", "ls", "-q"]);
    assert!(quiet.lines().any(|l| l == id), "{quiet}");
    let table = rig.ok(0, &["secret", "ls"]);
    let inspected = rig.ok(0, &["secret", "inspect", "db_pw", "api_key"]);
    let docs: Vec<serde_json::Value> = serde_json::from_str(&inspected).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["Name"], "db_pw");
    let by_id = rig.ok(0, &["secret", "inspect", &id]);
    assert!(by_id.contains("\"db_pw\""), "{by_id}");
    for text in [&table, &quiet, &inspected, &by_id] {
        assert!(!text.contains(&pw) && !text.contains(&api_key), "{text}");
    }
    let err = fails(&rig, 0, &["secret", "inspect", "nope"]);
    assert!(err.contains("nope"), "{err}");

    // A service reads them from a tmpfs with its owner and mode.
    let compose = deploy_and_check(&rig, 0, "", &pw, &api_key);

    // In use: removal is refused, naming the service.
    let err = fails(&rig, 0, &["secret", "rm", "db_pw"]);
    assert!(err.contains("in use") && err.contains("sec_web"), "{err}");
    assert_eq!(ls_json(&rig, 0)[1]["UsedBy"][0], "sec_web");

    // Nowhere under the data root in clear: not the Raft log, its snapshots, nor the state.
    for value in [&pw, &api_key] {
        let leaks = berth_testkit::files_containing(&rig.nodes[0].data_root(), value.as_bytes());
        assert!(leaks.is_empty(), "a secret is stored in clear: {leaks:?}");
        assert!(
            !rig.nodes[0].log().contains(value.as_str()),
            "berthd logged it"
        );
    }

    // After `down`, both go; then they are gone.
    rig.ok(0, &["-f", &compose, "-p", "sec", "down", "-t", "1"]);
    let removed = rig.ok(0, &["secret", "rm", "db_pw", "api_key"]);
    assert_eq!(removed.lines().collect::<Vec<_>>(), ["db_pw", "api_key"]);
    assert!(ls_json(&rig, 0).is_empty());
    let err = fails(&rig, 0, &["secret", "rm", "db_pw"]);
    assert!(err.contains("no secret \"db_pw\""), "{err}");
}

#[test]
fn a_missing_external_secret_fails_up_naming_it_and_the_file() {
    let rig = Rig::new(1);
    let out = rig.nodes[0].root.join("out");
    let compose = rig.compose(0, &app(&out, ""));
    let compose = compose.to_str().unwrap().to_owned();
    // `db_pw` exists, `api_key` does not.
    let file = rig.nodes[0].root.join("pw.txt");
    std::fs::write(&file, unique("pw")).unwrap();
    rig.ok(0, &["secret", "create", "db_pw", file.to_str().unwrap()]);

    let err = fails(&rig, 0, &["-f", &compose, "-p", "miss", "up", "-d"]);
    assert!(
        err.contains("\"api_key\"") && err.contains(&compose) && err.contains("does not exist"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("berth:")).count(),
        1,
        "one error line: {err}"
    );
    // Nothing was deployed.
    let services = rig.ok(0, &["service", "ls", "--format", "json"]);
    assert_eq!(services.trim(), "[]");

    // External configs have no store: refused, clearly.
    let configs = rig.compose(
        0,
        "services:\n  web:\n    image: busybox:latest\n    configs: [conf]\nconfigs:\n  conf:\n    external: true\n",
    );
    let err = fails(
        &rig,
        0,
        &["-f", configs.to_str().unwrap(), "-p", "cfg", "up", "-d"],
    );
    assert!(
        err.contains("\"conf\"") && err.contains("external configs are not supported"),
        "{err}"
    );
}

#[test]
fn in_a_cluster_a_stored_secret_reaches_a_worker_and_only_managers_create_them() {
    let rig = Rig::new(2);
    rig.form_cluster(1);
    let pw = unique("pw");
    let api_key = unique("key");
    let file = rig.nodes[0].root.join("pw.txt");
    std::fs::write(&file, &pw).unwrap();
    rig.ok(0, &["secret", "create", "db_pw", file.to_str().unwrap()]);
    let out = secret_with_stdin(&rig, 0, &["create", "api_key", "-"], api_key.as_bytes());
    assert!(out.status.success());

    // The worker replicates the metadata, holds no key, and so cannot create one.
    rig.wait_for("the worker to list both", Duration::from_secs(20), |r| {
        r.berth(1, &["secret", "ls", "--format", "json"])
            .status
            .success()
            && ls_json(r, 1).len() == 2
    });
    let worker_file = rig.nodes[1].root.join("x.txt");
    std::fs::write(&worker_file, "x").unwrap();
    let err = fails(
        &rig,
        1,
        &["secret", "create", "other", worker_file.to_str().unwrap()],
    );
    assert!(err.contains("managers' key"), "{err}");

    // Placed on the worker: its agent asks the manager for the task's files.
    let placement = "    deploy:\n      placement:\n        constraints: [\"node.role == worker\"]";
    let out = rig.nodes[0].root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    deploy_and_check(&rig, 0, placement, &pw, &api_key);
    assert!(
        !cluster_rig::mounts_under(&rig.nodes[1].root.join("files")).is_empty(),
        "the task's tmpfs is on the worker"
    );
    for i in 0..2 {
        for value in [&pw, &api_key] {
            let leaks =
                berth_testkit::files_containing(&rig.nodes[i].data_root(), value.as_bytes());
            assert!(
                leaks.is_empty(),
                "node {i} stores a secret in clear: {leaks:?}"
            );
        }
    }
    // Writes need a manager; a manager refuses to remove it while the service runs.
    let err = fails(&rig, 1, &["secret", "rm", "db_pw"]);
    assert!(err.contains("needs a manager"), "{err}");
    let err = fails(&rig, 0, &["secret", "rm", "db_pw"]);
    assert!(err.contains("in use") && err.contains("sec_web"), "{err}");
}
