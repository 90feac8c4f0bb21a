//! create → start → state → kill → delete; exit codes and signals; exec; pause/resume;
//! hooks (with the runtime running from its sealed memfd copy).

mod support;

use std::process::Stdio;

use serde_json::json;
use support::*;

const LOOP: &[&str] = &[
    "sh",
    "-c",
    "trap 'exit 42' TERM; while true; do sleep 0.05; done",
];

#[test]
fn create_start_state_kill_delete() {
    let b = Bundle::new(LOOP, |_| {});
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("life");
    let c = rt.create(&id, &b, logs.path());
    let st = rt.state(&id).unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], json!(id));
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(st["bundle"], json!(b.path()));
    for k in ["ociVersion", "rootfs", "created", "owner"] {
        assert!(st.get(k).is_some(), "{k} missing: {st}");
    }
    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
    // Starting twice is refused.
    assert!(
        !rt.cmd()
            .args(["start", &id])
            .output()
            .unwrap()
            .status
            .success()
    );
    // ps lists the init by host pid.
    let ps: Vec<i64> =
        serde_json::from_slice(&rt.ok(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&pid), "{ps:?}");
    // Deleting a running container needs --force.
    assert!(
        !rt.cmd()
            .args(["delete", &id])
            .output()
            .unwrap()
            .status
            .success()
    );
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    let again = rt.cmd().args(["kill", &id, "KILL"]).output().unwrap();
    assert!(
        stderr(&again).contains("container not running"),
        "{}",
        stderr(&again)
    );
    rt.ok(&["delete", &id]);
    assert!(rt.state(&id).is_none());
    assert!(!rt.root.path().join(&id).exists());
    drop(c);
}

#[test]
fn run_returns_the_exit_code() {
    let b = Bundle::new(&["sh", "-c", "echo out; echo err >&2; exit 7"], |_| {});
    let rt = Runtime::new();
    let out = run(&rt, &id("exit7"), &b);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "out\n");
    assert!(stderr(&out).contains("err"));
    // run deletes the container afterwards.
    assert!(rt.state(&id("exit7")).is_none());
}

#[test]
fn missing_executable_fails_create() {
    let b = Bundle::new(&["no-such-program"], |_| {});
    let rt = Runtime::new();
    let id = id("noexe");
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("executable file not found"),
        "{}",
        stderr(&out)
    );
    assert!(
        rt.state(&id).is_none(),
        "failed create leaves nothing behind"
    );
}

#[test]
fn sigterm_reaches_the_container_and_kill_propagates() {
    let b = Bundle::new(LOOP, |_| {});
    let rt = Runtime::new();
    let id = id("sigterm");
    let child = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Container {
        rt: &rt,
        id: id.clone(),
    };
    rt.wait_status(&id, "running");
    rt.ok(&["kill", &id, "TERM"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(42));

    // A signal forwarded by `run` itself, and death by signal as 128+N.
    let id2 = format!("{id}-b");
    let b2 = Bundle::new(&["sleep", "1000"], |_| {});
    let child = rt
        .cmd()
        .args(["run", "--bundle"])
        .arg(b2.path())
        .arg(&id2)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _g2 = Container {
        rt: &rt,
        id: id2.clone(),
    };
    rt.wait_status(&id2, "running");
    rt.ok(&["kill", &id2, "9"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn exec_runs_inside_the_container() {
    let b = Bundle::new(&["sleep", "1000"], |_| {});
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("exec");
    let _c = rt.create(&id, &b, logs.path());
    rt.ok(&["start", &id]);
    let out = rt.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'",
    ]);
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "berth-test");
    assert_eq!(lines[1].replace('\0', " ").trim(), "sleep 1000");
    // Exit codes come back through exec, too.
    let st = rt
        .cmd()
        .args(["exec", &id, "sh", "-c", "exit 5"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(5));
    // --env and --cwd apply; --user changes the identity.
    let out = rt.ok(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        &id,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u)",
    ]);
    assert_eq!(stdout(&out), "bar /tmp 1000\n");
    // A detached exec reports its pid in the pid file.
    let pidfile = logs.path().join("exec.pid");
    // (its stdio must not be our pipes: the process keeps them open)
    let st = rt
        .cmd()
        .args([
            "exec",
            "--detach",
            "--pid-file",
            pidfile.to_str().unwrap(),
            &id,
            "sleep",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ps: Vec<i32> =
        serde_json::from_slice(&rt.ok(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&pid), "{ps:?} lacks {pid}");
}

#[test]
fn pause_and_resume() {
    let b = Bundle::new(LOOP, |_| {});
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("pause");
    let _c = rt.create(&id, &b, logs.path());
    rt.ok(&["start", &id]);
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    let pid = rt.state(&id).unwrap()["pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(state == "D" || state == "S", "frozen task state {state}");
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    // delete --force works on a paused container as well.
    rt.ok(&["pause", &id]);
    rt.ok(&["delete", "--force", &id]);
    assert!(rt.state(&id).is_none());
}

#[test]
fn hooks_get_state_and_runtime_runs_from_sealed_memfd() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let hook = |name: &str, script: String| json!({"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 5, "env": [format!("HOOK={name}")]});
    let b = Bundle::new(&["true"], |spec| {
        spec["hooks"] = json!({
            "prestart": [hook("prestart", format!("readlink /proc/$PPID/exe > {o}/runtime-exe; cat > {o}/prestart"))],
            "createRuntime": [hook("createRuntime", format!("cat > {o}/createRuntime"))],
            "poststart": [hook("poststart", format!("cat > {o}/poststart; echo $HOOK > {o}/env"))],
            "poststop": [hook("poststop", format!("cat > {o}/poststop"))],
        });
    });
    let rt = Runtime::new();
    let id = id("hooks");
    let res = run(&rt, &id, &b);
    assert!(res.status.success(), "{}", stderr(&res));
    for stage in ["prestart", "createRuntime", "poststart", "poststop"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join(stage)).unwrap()).unwrap();
        assert_eq!(v["id"], json!(id), "{stage}: {v}");
        assert!(v["pid"].as_i64().unwrap() > 0, "{stage}: {v}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("poststop")).unwrap()).unwrap();
    assert_eq!(v["status"], "stopped");
    assert_eq!(
        std::fs::read_to_string(out.path().join("env")).unwrap(),
        "poststart\n"
    );
    let exe = std::fs::read_to_string(out.path().join("runtime-exe")).unwrap();
    assert!(
        exe.starts_with("/memfd:berth-runc"),
        "runtime ran from {exe}"
    );
}

#[test]
fn errors_are_logged_as_json_for_dockerd() {
    let rt = Runtime::new();
    let log = tempfile::NamedTempFile::new().unwrap();
    let out = rt
        .cmd()
        .args(["--log"])
        .arg(log.path())
        .args(["--log-format", "json", "start", "no-such-container"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"));
    let text = std::fs::read_to_string(log.path()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("no-such-container"));
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn exec_with_process_file_and_kill_all() {
    let b = Bundle::new(&["sleep", "1000"], |_| {});
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("procfile");
    let _c = rt.create(&id, &b, logs.path());
    rt.ok(&["start", &id]);
    let process = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo $GREETING from $(pwd)"],
        "env": ["PATH=/bin", "GREETING=hi"],
        "cwd": "/dev",
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
        "noNewPrivileges": true
    });
    let pf = logs.path().join("process.json");
    std::fs::write(&pf, process.to_string()).unwrap();
    let out = rt.ok(&["exec", "--process", pf.to_str().unwrap(), &id]);
    assert_eq!(stdout(&out), "hi from /dev\n");
    // A second process in the container, then kill --all takes both.
    let st = rt
        .cmd()
        .args(["exec", "--detach", &id, "sleep", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let ps: Vec<i32> =
        serde_json::from_slice(&rt.ok(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert_eq!(ps.len(), 2, "{ps:?}");
    rt.ok(&["kill", "--all", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    support::wait_until(
        std::time::Duration::from_secs(10),
        || {
            ps.iter()
                .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists() || is_zombie(*p))
        },
        "every container process to die",
    );
}

fn is_zombie(pid: i32) -> bool {
    berth_runtime::state::proc_stat(pid).is_none_or(|(s, _)| s == 'Z')
}

#[test]
fn features_and_spec_flags() {
    let rt = Runtime::new();
    let f: serde_json::Value = serde_json::from_slice(&rt.ok(&["features"]).stdout).unwrap();
    assert_eq!(f["linux"]["cgroup"]["v1"], true);
    assert_eq!(f["linux"]["cgroup"]["v2"], true);
    assert!(
        f["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!("user"))
    );
    let d = tempfile::tempdir().unwrap();
    rt.ok(&["spec", "--rootless", "--bundle", d.path().to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
    assert!(spec["linux"]["uidMappings"].is_array());
    // spec refuses to overwrite.
    assert!(
        !rt.cmd()
            .args(["spec", "--bundle", d.path().to_str().unwrap()])
            .output()
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn container_side_hooks_and_pid_file() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    let b = Bundle::new(&["true"], |spec| {
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/out", "type": "bind", "source": o, "options": ["rbind", "rw"]
        }));
        spec["hooks"] = json!({
            // Runs in the container's mount namespace before pivot_root: host paths resolve.
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {o}/createContainer")]}],
            // Runs inside the container after start, before the process: container paths.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /out/startContainer; hostname > /out/hostname"]}],
        });
    });
    let rt = Runtime::new();
    let id = id("ctrhooks");
    let pidfile = out.path().join("init.pid");
    let logs = tempfile::tempdir().unwrap();
    let st = rt
        .cmd()
        .args([
            "create",
            "--pid-file",
            pidfile.to_str().unwrap(),
            "--bundle",
        ])
        .arg(b.path())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(logs.path().join("o")).unwrap())
        .stderr(std::fs::File::create(logs.path().join("e")).unwrap())
        .status()
        .unwrap();
    let _c = Container {
        rt: &rt,
        id: id.clone(),
    };
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(logs.path().join("e")).unwrap()
    );
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rt.state(&id).unwrap()["pid"], json!(pid));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("createContainer")).unwrap())
            .unwrap();
    assert_eq!(v["id"], json!(id));
    assert_eq!(v["pid"], json!(pid));
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("startContainer")).unwrap()).unwrap();
    assert_eq!(v["id"], json!(id));
    assert_eq!(
        std::fs::read_to_string(out.path().join("hostname")).unwrap(),
        "berth-test\n"
    );
}

#[test]
fn library_create_refuses_a_multithreaded_caller() {
    // The test harness runs tests on threads: this process is multi-threaded.
    let b = Bundle::new(&["true"], |_| {});
    let rt = Runtime::new();
    let opts = berth_runtime::CreateOptions {
        root: rt.root.path().to_path_buf(),
        id: id("threads"),
        bundle: b.path().to_path_buf(),
        ..Default::default()
    };
    let err = berth_runtime::create(&opts).unwrap_err();
    assert!(err.to_string().contains("single-threaded"), "{err}");
    assert!(rt.state(&id("threads")).is_none());
}
