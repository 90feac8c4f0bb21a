//! The container options of `docker run` that change what a container may do or how it is
//! watched, through the docker CLI against berth's Docker API: healthchecks (`State.Health`,
//! `docker ps` status and `health=` filter, `health_status` events), `--stop-signal`,
//! `--ulimit`, `--security-opt` (a seccomp profile file included), `--cpu-shares`/`--cpuset-cpus`, `--privileged`,
//! `--device`, `--domainname`, `--pid`/`--ipc`/`--network` sharing, `--volumes-from` and
//! `--link` — each checked from inside the container (or in its cgroup) — and options
//! berth cannot honour, refused with an error that names them. Each test has its own
//! server, data root and socket; the server's drop removes every container.

mod support;

use support::{Server, wait_for};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn inspect(s: &Server, name: &str, format: &str) -> String {
    s.ok(&["inspect", "--format", format, name])
        .trim()
        .to_string()
}

#[test]
fn healthchecks_reach_healthy_and_unhealthy_in_inspect_ps_filters_and_events() {
    let s = Server::start();
    let start = now();
    let good = s
        .ok(&[
            "run",
            "-d",
            "--name",
            "good",
            "--health-cmd",
            "echo fine",
            "--health-interval",
            "1s",
            "--health-timeout",
            "5s",
            "busybox",
            "sleep",
            "300",
        ])
        .trim()
        .to_string();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo nope; exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "300",
    ]);
    // before the first probe (one interval in) it is starting
    let early = inspect(&s, "good", "{{.State.Health.Status}}");
    assert!(
        early == "starting" || early == "healthy",
        "health right after start: {early}"
    );

    wait_for("good to be healthy", 30, || {
        inspect(&s, "good", "{{.State.Health.Status}}") == "healthy"
    });
    wait_for("bad to be unhealthy", 30, || {
        inspect(&s, "bad", "{{.State.Health.Status}}") == "unhealthy"
    });
    assert_eq!(inspect(&s, "good", "{{.State.Health.FailingStreak}}"), "0");
    let streak: u64 = inspect(&s, "bad", "{{.State.Health.FailingStreak}}")
        .parse()
        .unwrap();
    assert!(streak >= 2, "failing streak {streak}");
    let log = inspect(&s, "bad", "{{json .State.Health.Log}}");
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    let last = log.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ExitCode"], 1, "{log}");
    assert_eq!(last["Output"], "nope\n", "{log}");
    assert_eq!(
        inspect(&s, "good", "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD-SHELL","echo fine"]"#
    );

    // docker ps: the status text and the health filter
    let ps = s.ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("good Up") && l.ends_with("(healthy)")),
        "{ps}"
    );
    assert!(
        ps.lines()
            .any(|l| l.starts_with("bad Up") && l.ends_with("(unhealthy)")),
        "{ps}"
    );
    let healthy = s.ok(&["ps", "-q", "--no-trunc", "--filter", "health=healthy"]);
    assert_eq!(healthy.trim(), good);
    let unhealthy = s.ok(&[
        "ps",
        "--format",
        "{{.Names}}",
        "--filter",
        "health=unhealthy",
    ]);
    assert_eq!(unhealthy.trim(), "bad");

    let events = s.ok(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &(now() + 1).to_string(),
        "--filter",
        "event=health_status",
        "--format",
        "{{.Actor.Attributes.name}} {{.Action}}",
    ]);
    assert!(
        events.lines().any(|l| l == "good health_status: healthy"),
        "{events}"
    );
    assert!(
        events.lines().any(|l| l == "bad health_status: unhealthy"),
        "{events}"
    );

    // a container without a healthcheck has no State.Health
    s.ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "300"]);
    assert_eq!(inspect(&s, "plain", "{{.State.Health}}"), "<nil>");
    let none = s.ok(&["ps", "--format", "{{.Names}}", "--filter", "health=none"]);
    assert_eq!(none.trim(), "plain");
}

#[test]
fn stop_signal_ulimits_security_opts_and_cpu_settings_reach_the_process() {
    let s = Server::start();

    // --stop-signal: docker stop sends it, and the program's handler runs
    s.ok(&[
        "run",
        "-d",
        "--name",
        "sig",
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got usr1; exit 7' USR1; echo ready; while true; do sleep 0.1; done",
    ]);
    assert_eq!(inspect(&s, "sig", "{{.Config.StopSignal}}"), "SIGUSR1");
    wait_for("sig to be ready", 20, || {
        s.ok(&["logs", "sig"]).contains("ready")
    });
    s.ok(&["stop", "-t", "30", "sig"]);
    assert_eq!(inspect(&s, "sig", "{{.State.ExitCode}}"), "7");
    assert!(s.ok(&["logs", "sig"]).contains("got usr1"));

    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=1024:2048",
            "busybox",
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn",
        ]),
        "1024\n2048\n"
    );

    let status_field = |args: &[&str], field: &str| -> String {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "grep", field, "/proc/self/status"]);
        s.ok(&a)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        status_field(&["--security-opt", "no-new-privileges"], "NoNewPrivs"),
        "1"
    );
    assert_eq!(
        status_field(&["--security-opt", "no-new-privileges=false"], "NoNewPrivs"),
        "0"
    );
    // 2: a seccomp filter is on (Docker's default profile); unconfined: none
    assert_eq!(status_field(&[], "Seccomp:"), "2");
    assert_eq!(
        status_field(&["--security-opt", "seccomp=unconfined"], "Seccomp:"),
        "0"
    );
    // what berth does anyway is accepted
    assert_eq!(
        status_field(
            &[
                "--security-opt",
                "label=disable",
                "--security-opt",
                "apparmor=unconfined"
            ],
            "Seccomp:"
        ),
        "2"
    );

    // a seccomp profile file: the CLI sends its JSON; this one allows everything but mkdir
    let profile = s.root.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let mkdir = "if mkdir /tmp/d 2>/dev/null; then echo made; else echo refused; fi";
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--security-opt",
            &format!("seccomp={}", profile.display()),
            "busybox",
            "sh",
            "-c",
            mkdir,
        ]),
        "refused\n"
    );
    assert_eq!(
        s.ok(&["run", "--rm", "busybox", "sh", "-c", mkdir]),
        "made\n"
    );

    // --cpuset-cpus is what the kernel lets the process run on; --cpu-shares is the
    // container cgroup's weight
    assert_eq!(
        status_field(&["--cpuset-cpus", "0"], "Cpus_allowed_list"),
        "0"
    );
    s.ok(&[
        "run",
        "-d",
        "--name",
        "cpu",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(inspect(&s, "cpu", "{{.HostConfig.CpuShares}}"), "512");
    let pid = inspect(&s, "cpu", "{{.State.Pid}}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path_of = |controller: &str| -> Option<String> {
        cgroups.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            (ctrls.split(',').any(|c| c == controller)
                || (ctrls.is_empty() && controller.is_empty()))
            .then(|| path.to_string())
        })
    };
    let read = |p: String| std::fs::read_to_string(&p).map(|s| s.trim().to_string());
    if let Some(p) = path_of("cpu") {
        // cgroup v1
        let shares = read(format!("/sys/fs/cgroup/cpu{p}/cpu.shares"))
            .or_else(|_| read(format!("/sys/fs/cgroup/cpu,cpuacct{p}/cpu.shares")))
            .unwrap();
        assert_eq!(shares, "512");
        let cpus = read(format!(
            "/sys/fs/cgroup/cpuset{}/cpuset.cpus",
            path_of("cpuset").unwrap()
        ))
        .unwrap();
        assert_eq!(cpus, "0");
    } else {
        let p = path_of("").expect("a cgroup v2 path");
        // runc's mapping of 512 shares
        assert_eq!(read(format!("/sys/fs/cgroup{p}/cpu.weight")).unwrap(), "20");
        assert_eq!(read(format!("/sys/fs/cgroup{p}/cpuset.cpus")).unwrap(), "0");
    }
}

#[test]
fn privileged_devices_namespaces_volumes_from_and_links() {
    let s = Server::start();

    // --privileged: every capability and no seccomp filter
    let caps = s.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep -E '^(CapEff|Seccomp):' /proc/self/status",
    ]);
    let field = |name: &str| {
        caps.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_string()
    };
    let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    // CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12): not in the default set
    assert!(eff & (1 << 21) != 0 && eff & (1 << 12) != 0, "{caps}");
    assert_eq!(field("Seccomp:"), "0", "{caps}");
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "grep CapEff /proc/self/status",
        ])
        .split_whitespace()
        .nth(1)
        .map(|h| u64::from_str_radix(h, 16).unwrap() & (1 << 21)),
        Some(0)
    );

    // --device: the host's null under another name, usable
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/berthnull",
            "busybox",
            "sh",
            "-c",
            "test -c /dev/berthnull && echo data > /dev/berthnull && echo usable",
        ]),
        "usable\n"
    );

    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--domainname",
            "example.org",
            "busybox",
            "cat",
            "/proc/sys/kernel/domainname",
        ]),
        "example.org\n"
    );

    // --pid host: the host's processes; --ipc host: the host's IPC namespace
    let host_pid1 = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--pid",
            "host",
            "busybox",
            "cat",
            "/proc/1/comm"
        ]),
        host_pid1
    );
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--ipc",
            "host",
            "busybox",
            "readlink",
            "/proc/self/ns/ipc"
        ])
        .trim(),
        host_ipc.to_str().unwrap()
    );

    // another container's PID and network namespaces
    s.ok(&[
        "run",
        "-d",
        "--name",
        "target",
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "echo shared > /data/file; exec sleep 271",
    ]);
    wait_for("target to write its volume", 20, || {
        s.docker(&["exec", "target", "cat", "/data/file"])
            .stdout
            .starts_with(b"shared")
    });
    let ps = s.ok(&[
        "run",
        "--rm",
        "--pid",
        "container:target",
        "busybox",
        "ps",
        "-o",
        "args",
    ]);
    assert!(ps.lines().any(|l| l.trim() == "sleep 271"), "{ps}");
    let net_of_target = s.ok(&["exec", "target", "readlink", "/proc/self/ns/net"]);
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--network",
            "container:target",
            "busybox",
            "readlink",
            "/proc/self/ns/net",
        ]),
        net_of_target
    );

    // --volumes-from: the target's anonymous volume, read-only when asked
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "target",
            "busybox",
            "cat",
            "/data/file"
        ]),
        "shared\n"
    );
    assert_eq!(
        s.ok(&[
            "run",
            "--rm",
            "--volumes-from",
            "target:ro",
            "busybox",
            "sh",
            "-c",
            "cat /data/file; if echo x 2>/dev/null > /data/other; then echo writable; else echo read-only; fi",
        ]),
        "shared\nread-only\n"
    );

    // --link: the target's address under its name and the alias
    let ip = inspect(&s, "target", "{{.NetworkSettings.IPAddress}}");
    assert!(!ip.is_empty());
    let hosts = s.ok(&[
        "run",
        "--rm",
        "--link",
        "target:db",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    for name in ["db", "target"] {
        assert!(
            hosts
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ip.as_str())
                    && l.split_whitespace().any(|w| w == name)),
            "no {ip} {name} in {hosts}"
        );
    }
    assert_eq!(inspect(&s, "target", "{{.State.Status}}"), "running");
}

#[test]
fn options_berth_cannot_honour_are_refused_by_name() {
    let s = Server::start();
    for (args, named) in [
        (
            &["--security-opt", "apparmor=docker-default"][..],
            "apparmor",
        ),
        (&["--mac-address", "02:42:ac:11:00:02"][..], "MacAddress"),
        (&["--uts", "host"][..], "UTSMode"),
        (&["--ipc", "container:nothing"][..], "IpcMode"),
        (&["--memory-reservation", "16m"][..], "MemoryReservation"),
        (&["--blkio-weight", "300"][..], "BlkioWeight"),
        (&["--cgroup-parent", "elsewhere"][..], "CgroupParent"),
        (&["-m", "32m", "--memory-swap", "64m"][..], "MemorySwap"),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "true"]);
        let o = s.docker(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} was accepted");
        let first = err.lines().next().unwrap_or_default();
        assert!(
            first.contains("Error response from daemon") && first.contains(named),
            "{args:?}: {err}"
        );
    }
    // nothing was left behind by the refusals
    assert_eq!(s.ok(&["ps", "-aq"]).trim(), "");
}
