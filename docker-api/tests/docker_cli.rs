//! The docker CLI (28.x, as installed) against berth's Docker API: version negotiation,
//! `run --rm`, exit codes, stdin, `run -d -p`, `ps`, `logs -f`, `exec` (with a pty for
//! `-it`), `top`, `stats`, `pause`, `stop`, `rm`, `images`, `pull`/`push` against a local
//! `docker-registry`, networks, volumes and `cp`. Every container is also checked to be an
//! ordinary berth container. Each test has its own server, data root and socket.

mod support;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Registry, Server, free_port, wait_for};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn cli_version_info_run_rm_exit_codes_stdin_and_events() {
    let s = Server::start();
    let start = now();
    assert_eq!(
        s.ok(&[
            "version",
            "--format",
            "{{.Server.Platform.Name}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}}"
        ])
        .trim(),
        "berth 1.51 1.24"
    );
    assert_eq!(
        s.ok(&["info", "--format", "{{.Images}} {{.Driver}} {{.OSType}}"])
            .trim(),
        "1 overlay2 linux"
    );
    assert_eq!(
        s.ok(&["run", "--rm", "busybox", "echo", "hello from berth"]),
        "hello from berth\n"
    );
    let o = s.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));

    // stdin through the attach connection
    let mut child = s
        .bounded("docker")
        .args(["run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped through berth\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "docker run -i: {} {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED THROUGH BERTH\n");

    let df = s.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.lines().any(|l| l == "Images 1"), "{df}");

    // --rm containers are gone when run returns, in Docker's and in berth's view
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(s.containers().ids().unwrap().is_empty());
    // (never pulled: no test traffic leaves the machine)
    let o = s.docker(&["run", "--pull", "never", "--rm", "nosuchimage:1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such image"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let events = s.ok(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &(now() + 1).to_string(),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    for action in ["create", "start", "die", "destroy"] {
        assert!(
            events.lines().any(|l| l == action),
            "no {action} event in {events}"
        );
    }
}

/// Runs `docker ARGS` on a new pty, sends `input` once `ready` shows up, and returns the
/// terminal's output and the exit code.
fn docker_in_pty(s: &Server, args: &[&str], ready: &str, input: &[&[u8]]) -> (String, i32) {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors we then own; the winsize is a valid local.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(r, 0, "openpty");
    // SAFETY: both descriptors were just returned by openpty and are owned once each.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = s.client("docker");
    cmd.args(args)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and TIOCSCTTY are async-signal-safe; fd 0 is the pty's slave here.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("docker in a pty");
    drop(cmd);
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut reader = std::fs::File::from(master);
    let mut writer = reader.try_clone().unwrap();
    let out2 = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = |o: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&o.lock().unwrap()).into_owned();
    wait_for("the pty's prompt", 30, || text(&out).contains(ready));
    for i in input {
        writer.write_all(i).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("docker {args:?} in a pty did not finish: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    (text(&out), status.code().unwrap_or(-1))
}

fn http_get(port: u16) -> Option<String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut s = String::new();
    c.read_to_string(&mut s).ok()?;
    Some(s)
}

#[test]
fn cli_detached_container_ports_logs_exec_tty_pause_stop_rm() {
    let s = Server::start();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    let id = s
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            &publish,
            "busybox",
            "sh",
            "-c",
            "mkdir /www; echo hello-from-berth > /www/index.html; echo ready; exec httpd -f -p 80 -h /www",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    // an ordinary berth container
    let rec = s.containers().resolve("web").unwrap();
    assert_eq!(rec.id, id);

    let ps = s.ok(&["ps", "--format", "{{.Names}} {{.Status}} {{.Ports}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    wait_for("httpd behind the published port", 20, || {
        http_get(port).is_some_and(|r| r.contains("hello-from-berth"))
    });

    // logs -f follows until the container stops
    let follower = s
        .client("timeout")
        .args(["60", "docker", "logs", "-f", "web"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(s.ok(&["logs", "web"]), "ready\n");
    assert_eq!(
        s.ok(&["exec", "web", "cat", "/www/index.html"]),
        "hello-from-berth\n"
    );
    let o = s.docker(&["exec", "web", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5));

    let (out, code) = docker_in_pty(
        &s,
        &["exec", "-it", "web", "sh"],
        "# ",
        &[b"echo $((6*7)); tty; stty size\r", b"exit 7\r"],
    );
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("42"), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(
        out.contains("40 120"),
        "the pty has the client's size: {out}"
    );

    let top = s.ok(&["top", "web"]);
    assert!(top.contains("httpd"), "{top}");
    let stats = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "web",
    ]);
    assert_eq!(stats.trim(), "web 1");

    s.ok(&["pause", "web"]);
    assert!(
        s.ok(&["ps", "--format", "{{.Status}}"])
            .contains("(Paused)")
    );
    s.ok(&["unpause", "web"]);

    s.ok(&["stop", "-t", "1", "web"]);
    let o = follower.wait_with_output().unwrap();
    assert!(o.status.success(), "logs -f ends with the container");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ready\n");
    assert_eq!(s.ok(&["ps", "-q"]), "");
    let all = s.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(all.starts_with("web Exited ("), "{all}");
    let o = s.docker(&["stop", "web"]);
    assert!(o.status.success(), "stopping a stopped container is fine");

    s.ok(&["start", "web"]);
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.State.Running}}", "web"]).trim(),
        "true"
    );
    let o = s.docker(&["rm", "web"]);
    assert!(!o.status.success(), "a running container is not removed");
    s.ok(&["rm", "-f", "web"]);
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(s.containers().ids().unwrap().is_empty());
    let o = s.docker(&["inspect", "web"]);
    assert!(!o.status.success());
}

#[test]
fn cli_images_push_rmi_pull_against_a_local_registry() {
    let s = Server::start();
    let reg = Registry::start();
    let images = s.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images.trim(), "busybox:latest");
    let name = format!("{}/berth-test/bb:v1", reg.addr);
    s.ok(&["tag", "busybox", &name]);
    let push = s.ok(&["push", &name]);
    assert!(push.contains("v1: digest: sha256:"), "{push}");
    let untag = s.ok(&["rmi", &name]);
    assert!(untag.contains("Untagged"), "{untag}");
    assert!(!s.ok(&["images"]).contains("berth-test/bb"));
    let pull = s.ok(&["pull", &name]);
    assert!(pull.contains("Digest: sha256:"), "{pull}");
    assert!(s.ok(&["images"]).contains("berth-test/bb"));
    assert_eq!(s.ok(&["run", "--rm", &name, "echo", "pulled"]), "pulled\n");
    let o = s.docker(&["pull", &format!("{}/berth-test/missing:v1", reg.addr)]);
    assert!(!o.status.success(), "pulling a missing image fails");
    // save, remove, load
    let tar = s.root.path().join("bb.tar");
    s.ok(&["save", "-o", tar.to_str().unwrap(), &name]);
    s.ok(&["rmi", &name]);
    let loaded = s.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image"), "{loaded}");
    let hist = s.ok(&["history", "--format", "{{.CreatedBy}}", "busybox"]);
    assert_eq!(hist.trim(), "berth image import", "{hist}");
}

#[test]
fn cli_networks_volumes_and_cp() {
    let s = Server::start();
    let net = "berthtestnet";
    s.ok(&["network", "create", "--label", "purpose=test", net]);
    let ls = s.ok(&["network", "ls", "--format", "{{.Name}}"]);
    for n in ["bridge", "host", "none", net] {
        assert!(ls.lines().any(|l| l == n), "{n} missing from {ls}");
    }
    let subnet = s.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        net,
    ]);
    assert!(subnet.trim().ends_with("/16"), "{subnet}");
    s.ok(&["volume", "create", "berthtestvol"]);
    assert!(
        s.ok(&["volume", "ls", "-q"])
            .lines()
            .any(|l| l == "berthtestvol")
    );

    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        net,
        "-v",
        "berthtestvol:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f; ip -4 -o addr show eth0",
    ]);
    let prefix = subnet
        .trim()
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    assert!(out.contains(&prefix), "{out} not in {subnet}");
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "-v",
            "berthtestvol:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );

    s.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "600"]);
    let o = s.docker(&["volume", "rm", "berthtestvol"]);
    assert!(o.status.success(), "no container uses it now");
    let local = s.root.path().join("to-container.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    s.ok(&["cp", local.to_str().unwrap(), "box:/tmp/in.txt"]);
    assert_eq!(s.ok(&["exec", "box", "cat", "/tmp/in.txt"]), "copied in\n");
    s.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "mkdir /out; echo a > /out/a; echo b > /out/b",
    ]);
    let dest = s.root.path().join("from-container");
    s.ok(&["cp", "box:/out", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(dest.join("b")).unwrap(), "b\n");
    let o = s.docker(&["cp", "box:/nope", dest.to_str().unwrap()]);
    assert!(!o.status.success());
    s.ok(&["rm", "-f", "box"]);

    s.ok(&["network", "rm", net]);
    assert!(!s.ok(&["network", "ls"]).contains(net));
    assert!(!s.ok(&["volume", "ls", "-q"]).contains("berthtestvol"));
    let o = s.docker(&["network", "rm", "bridge"]);
    assert!(!o.status.success(), "the default network stays");
}

#[test]
fn cli_run_it_restart_policy_wait_rename_and_prune() {
    let s = Server::start();
    // attach with a TTY and stdin before the start, resize after it
    let (out, code) = docker_in_pty(
        &s,
        &["run", "--rm", "-it", "busybox", "sh"],
        "# ",
        &[b"echo $((6*7)); stty size\r", b"exit 3\r"],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("42"), "{out}");
    assert!(out.contains("40 120"), "{out}");

    // on-failure:2 restarts twice, then stays exited
    s.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo attempt; exit 1",
    ]);
    wait_for("two restarts", 30, || {
        s.ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ])
        .trim()
            == "2 exited"
    });
    assert_eq!(s.ok(&["logs", "flaky"]), "attempt\nattempt\nattempt\n");
    assert_eq!(s.ok(&["wait", "flaky"]).trim(), "1");

    s.ok(&["rename", "flaky", "steady"]);
    assert_eq!(
        s.ok(&["ps", "-a", "--format", "{{.Names}}"]).trim(),
        "steady"
    );
    assert_eq!(s.containers().resolve("steady").unwrap().name, "steady");

    // run -d --rm: removed by the server once it exits
    s.ok(&["run", "-d", "--rm", "--name", "brief", "busybox", "true"]);
    wait_for("the --rm container to go", 20, || {
        !s.ok(&["ps", "-a", "--format", "{{.Names}}"])
            .contains("brief")
    });

    let pruned = s.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Deleted Containers"), "{pruned}");
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(s.containers().ids().unwrap().is_empty());
}
