//! The Compose lifecycle through `berth` and a real `berthd` (root, real containers): `up`,
//! `ps`, `logs`, `exec`, `down` with and without `-v`, convergence by configuration hash, and
//! the daemon's auto-start. Each test has its own data root, socket and project.

mod compose_support;

use std::time::Duration;

use compose_support::Env;

const TWO: &str = r#"
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo web says hello; exec httpd -f -p 8080 -h /etc"]
    volumes:
      - data:/data
  db:
    image: busybox:latest
    command: ["sh", "-c", "echo db-v1 ready; exec sleep 3600"]
volumes:
  data: {}
"#;

#[test]
fn up_ps_logs_exec_and_down_keeps_volumes_until_v() {
    let env = Env::with_daemon("cmp-life", TWO);
    env.ok(&["up", "-d"]);
    let ps = env.ps(&[]);
    let mut names: Vec<&str> = ps.iter().filter_map(|c| c["Name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["cmp-life-db-1", "cmp-life-web-1"], "{ps:?}");
    assert!(ps.iter().all(|c| c["State"] == "running"), "{ps:?}");
    let table = env.ok(&["ps"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("cmp-life-web-1"), "{table}");
    assert_eq!(env.ok(&["ps", "--services"]).lines().count(), 2);
    assert_eq!(env.ok(&["ps", "-q"]).lines().count(), 2);

    env.wait_for("web's output in logs", Duration::from_secs(20), || {
        env.ok(&["logs", "web"]).contains("web says hello")
    });
    let logs = env.ok(&["logs"]);
    assert!(
        logs.lines()
            .any(|l| l.starts_with("cmp-life-web-1") && l.ends_with("| web says hello")),
        "{logs}"
    );
    assert!(logs.contains("db-v1 ready"), "{logs}");
    let bare = env.ok(&["logs", "--no-log-prefix", "db"]);
    assert_eq!(bare.trim(), "db-v1 ready");

    // exec runs in the service's container: it sees the named volume and the web server
    let out = env.ok(&[
        "exec",
        "-T",
        "web",
        "sh",
        "-c",
        "echo kept > /data/mark; cat /data/mark",
    ]);
    assert_eq!(out.trim(), "kept");
    let page = env.ok(&["exec", "-T", "db", "hostname"]);
    assert!(!page.trim().is_empty());
    let failed = env.run(&["exec", "-T", "web", "sh", "-c", "exit 7"]);
    assert_eq!(failed.status.code(), Some(7));

    // down removes the containers and keeps the named volume
    env.ok(&["down"]);
    assert!(env.ps(&["-a"]).is_empty());
    let volume = env.root.path().join("volumes").join("cmp-life_data");
    assert!(volume.is_dir(), "named volume gone after down");
    env.ok(&["up", "-d"]);
    let out = env.ok(&["exec", "-T", "web", "cat", "/data/mark"]);
    assert_eq!(
        out.trim(),
        "kept",
        "the volume's data did not survive down/up"
    );
    env.ok(&["down", "-v"]);
    assert!(!volume.exists(), "down -v left the named volume");
}

#[test]
fn a_second_up_recreates_only_the_edited_service() {
    let env = Env::with_daemon("cmp-conv", TWO);
    env.ok(&["up", "-d"]);
    let ids = |env: &Env| {
        env.ps(&[])
            .into_iter()
            .map(|c| {
                (
                    c["Service"].as_str().unwrap_or_default().to_owned(),
                    c["ID"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = ids(&env);
    assert_eq!(before.len(), 2, "{before:?}");
    // the same file again changes nothing
    env.ok(&["up", "-d"]);
    assert_eq!(ids(&env), before);
    env.write_compose(&TWO.replace("db-v1", "db-v2"));
    env.ok(&["up", "-d"]);
    let after = ids(&env);
    assert_eq!(
        after["web"], before["web"],
        "web was recreated though unchanged"
    );
    assert_ne!(
        after["db"], before["db"],
        "db was not recreated after its change"
    );
    env.wait_for("the new db's output", Duration::from_secs(20), || {
        env.ok(&["logs", "--no-log-prefix", "db"])
            .contains("db-v2 ready")
    });
}

#[test]
fn up_starts_a_daemon_when_none_answers() {
    let env = Env::new(
        "cmp-auto",
        "services:\n  one:\n    image: busybox:latest\n    command: [\"sleep\", \"3600\"]\n",
    );
    let o = env.run(&["up", "-d"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}\n{}", env.daemon_log());
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("started") && l.contains("berthd"))
        .collect();
    assert_eq!(said.len(), 1, "one line about the started daemon: {stderr}");
    assert!(said[0].contains(&env.host()), "{stderr}");
    assert_eq!(env.count("one", "running"), 1);
    // the next command finds the daemon and says nothing about starting one
    let o = env.run(&["ps"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("started"));
}

#[test]
fn attached_up_streams_prefixed_output_and_ctrl_c_stops_the_app() {
    let env = Env::with_daemon("cmp-attach", TWO);
    let mut up = env
        .command(&["up"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("berth up");
    let stdout = up.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(seen.iter().any(|l: &String| l.contains("web says hello"))
        && seen.iter().any(|l| l.contains("db-v1 ready")))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = up.kill();
                panic!("attached up did not stream both services' output: {seen:?}");
            }
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("cmp-attach-web-1") && l.contains("| web says hello")),
        "{seen:?}"
    );
    // Ctrl-C: the app is stopped and up exits 130
    // SAFETY: SIGINT to the berth process this test spawned.
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    let status = up.wait().expect("wait up");
    assert_eq!(status.code(), Some(130));
    assert!(
        env.ps(&[]).is_empty(),
        "containers still running after Ctrl-C"
    );
}

#[test]
fn exit_code_from_returns_that_services_code() {
    let env = Env::with_daemon(
        "cmp-abort",
        r#"
services:
  job:
    image: busybox:latest
    command: ["sh", "-c", "echo working; exit 4"]
  server:
    image: busybox:latest
    command: ["sleep", "3600"]
"#,
    );
    let o = env.run(&["up", "--exit-code-from", "job"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("working"));
    assert!(env.ps(&[]).is_empty(), "the app was not stopped");
}

#[test]
fn up_builds_a_missing_image_and_build_rebuilds_it() {
    // examples/built-app, on a port of its own
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/built-app");
    let compose = std::fs::read_to_string(example.join("compose.yaml")).expect("example");
    let env = Env::with_daemon("cmp-build", &compose.replace("8082}", "18082}"));
    copy_dir(&example.join("app"), &env.dir.join("app"));
    // the image `cmp-build-web` (`-p` names the project) does not exist: plain `up` builds
    // it, as Compose does
    env.ok(&["up", "-d", "--wait", "--wait-timeout", "60"]);
    let ps = env.ps(&[]);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(
        ps[0]["Image"]
            .as_str()
            .unwrap_or("")
            .contains("cmp-build-web"),
        "{ps:?}"
    );
    let page = env.ok(&[
        "exec",
        "-T",
        "web",
        "wget",
        "-q",
        "-O-",
        "http://127.0.0.1:8080/",
    ]);
    assert!(page.contains("<h1>built-app</h1>"), "COPY: {page}");
    assert!(page.contains("<p>built by berth</p>"), "ARG + RUN: {page}");

    let first_id = ps[0]["ID"].clone();

    // `--no-build` with the image present changes nothing; `--build` rebuilds from the cache,
    // the same image, so the container stays
    env.ok(&["up", "-d", "--no-build"]);
    let out = env.run(&["up", "-d", "--build"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CACHED"),
        "a rebuild of an unchanged step hits the cache: {err}"
    );
    assert_eq!(
        env.ps(&[])[0]["ID"],
        first_id,
        "an unchanged image keeps its container"
    );

    // a changed source file: `up --build` makes a new image and recreates the service on it
    std::fs::write(env.dir.join("app/index.html"), "<h1>edited</h1>\n").expect("edit");
    env.ok(&["up", "-d", "--build", "--wait", "--wait-timeout", "60"]);
    // the replaced container may still be stopping for a moment
    env.wait_for("the rebuilt image serving", Duration::from_secs(30), || {
        let out = env.run(&[
            "exec",
            "-T",
            "web",
            "wget",
            "-q",
            "-O-",
            "http://127.0.0.1:8080/",
        ]);
        String::from_utf8_lossy(&out.stdout).contains("<h1>edited</h1>")
    });
    let ps = env.ps(&[]);
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_ne!(
        ps[0]["ID"], first_id,
        "a rebuilt image recreates the container"
    );
    env.ok(&["down"]);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}
