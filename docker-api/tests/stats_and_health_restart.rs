//! `docker stats` with real network and block I/O counters (a container fetching a file
//! over a real bridge from another container and writing with O_DIRECT), and a
//! container's health surviving a restart of the server on the same data root.

mod support;

use serde_json::Value;
use support::{Server, wait_for};

/// The API's one-shot stats answer for `name`, over the server's socket.
fn stats_json(s: &Server, name: &str) -> Value {
    let o = berth_testkit::bounded(30, "curl")
        .args(["-sf", "--unix-socket"])
        .arg(&s.socket)
        .arg(format!(
            "http://docker/containers/{name}/stats?stream=false"
        ))
        .output()
        .expect("run curl");
    assert!(o.status.success(), "curl stats: {o:?}");
    serde_json::from_slice(&o.stdout).expect("stats JSON")
}

/// `12.3kB` / `1.05MB` / `0B` as the docker CLI prints them, in bytes.
fn cli_bytes(v: &str) -> f64 {
    let v = v.trim();
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("a size: {v}"));
    let k = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => panic!("unit {other} in {v}"),
    };
    n * k
}

/// Whether the kernel will count the container's block I/O. cgroup v2's `io.stat` always
/// does. cgroup v1's `blkio.throttle.io_service_bytes` is only kept for a cgroup with a
/// throttle rule on the device (measured on this kernel: an O_DIRECT write in a bare blkio
/// cgroup leaves `Total 0`, Docker shows 0 B there too), so the test gives the
/// container's own blkio cgroup a 1 TiB/s write limit on the data root's disk — real
/// accounting, no throttling. `false` when that disk refuses the rule (then only the
/// field's shape is checked).
fn enable_v1_blkio_accounting(pid: i32, data_root: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let Some(rel) = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        ctl.split(',')
            .any(|c| c == "blkio")
            .then(|| path.to_string())
    }) else {
        return true; // v2: io.stat
    };
    let dev = std::fs::metadata(data_root).unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    // a partition's rules belong to its disk
    let sys = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let disk = if sys.join("partition").exists() {
        std::fs::read_to_string(sys.join("../dev")).unwrap_or_default()
    } else {
        format!("{major}:{minor}")
    };
    let file = format!(
        "/sys/fs/cgroup/blkio{}/blkio.throttle.write_bps_device",
        rel.trim_end_matches('/')
    );
    std::fs::write(&file, format!("{} 1099511627776", disk.trim())).is_ok()
}

#[test]
fn stats_count_network_and_block_io() {
    let s = Server::start();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "origin",
        "busybox",
        "sh",
        "-c",
        "mkdir /www; dd if=/dev/zero of=/www/big bs=1024 count=2048 2>/dev/null; exec httpd -f -p 80 -h /www",
    ]);
    let ip = s
        .ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            "origin",
        ])
        .trim()
        .to_string();
    assert!(!ip.is_empty(), "origin has an address");
    let script = format!(
        "until wget -q -O /dev/null http://{ip}/big; do sleep 0.2; done; \
         echo fetched; until [ -e /go ]; do sleep 0.1; done; \
         dd if=/dev/zero of=/written bs=65536 count=64 oflag=direct 2>/dev/null; sync; \
         echo written; exec sleep 300"
    );
    s.ok(&[
        "run", "-d", "--name", "fetcher", "busybox", "sh", "-c", &script,
    ]);
    wait_for("the fetch", 60, || {
        s.ok(&["logs", "fetcher"]).contains("fetched")
    });
    let pid: i32 = s
        .ok(&["inspect", "-f", "{{.State.Pid}}", "fetcher"])
        .trim()
        .parse()
        .unwrap();
    let accounted = enable_v1_blkio_accounting(pid, s.root.path());
    s.ok(&["exec", "fetcher", "touch", "/go"]);
    wait_for("the write", 60, || {
        s.ok(&["logs", "fetcher"]).contains("written")
    });

    let v = stats_json(&s, "fetcher");
    let nets = v["networks"].as_object().expect("networks");
    assert!(
        !nets.contains_key("lo"),
        "loopback is not counted: {nets:?}"
    );
    let rx: u64 = nets.values().map(|n| n["rx_bytes"].as_u64().unwrap()).sum();
    let tx: u64 = nets.values().map(|n| n["tx_bytes"].as_u64().unwrap()).sum();
    assert!(rx >= 2 * 1024 * 1024, "the 2 MiB fetched arrived: {nets:?}");
    assert!(tx > 0, "the request went out: {nets:?}");
    for n in nets.values() {
        for k in [
            "rx_packets",
            "rx_errors",
            "rx_dropped",
            "tx_packets",
            "tx_errors",
            "tx_dropped",
        ] {
            assert!(n[k].is_u64(), "{k} in {n}");
        }
    }
    let blk = v["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .expect("io_service_bytes_recursive is a list");
    for e in blk {
        assert!(
            e["major"].is_u64() && e["minor"].is_u64() && e["value"].is_u64(),
            "{e}"
        );
        assert!(e["op"].is_string(), "{e}");
    }
    let written: u64 = blk
        .iter()
        .filter(|e| {
            e["op"]
                .as_str()
                .is_some_and(|o| o.eq_ignore_ascii_case("write"))
        })
        .map(|e| e["value"].as_u64().unwrap())
        .sum();
    eprintln!("block I/O accounted: {accounted}, entries: {blk:?}");
    if accounted {
        assert!(
            written >= 4 * 1024 * 1024,
            "the 4 MiB O_DIRECT write is counted: {blk:?}"
        );
    }

    // the docker CLI draws the same figures
    let line = s.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.NetIO}}|{{.BlockIO}}",
        "fetcher",
    ]);
    let (net, block) = line.trim().split_once('|').expect("two columns");
    let (cli_rx, _) = net.split_once(" / ").expect("rx / tx");
    let (_, cli_written) = block.split_once(" / ").expect("read / written");
    assert!(cli_bytes(cli_rx) >= 2e6, "NET I/O {net}");
    if accounted {
        assert!(cli_bytes(cli_written) >= 4e6, "BLOCK I/O {block}");
    }

    // the streaming answer carries them too
    let o = berth_testkit::bounded(30, "curl")
        .args(["-s", "--max-time", "3", "--unix-socket"])
        .arg(&s.socket)
        .arg("http://docker/containers/fetcher/stats")
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&o.stdout);
    let first: Value = serde_json::from_str(text.lines().next().expect("a sample")).unwrap();
    assert!(
        first["networks"].as_object().is_some_and(|n| n
            .values()
            .any(|i| i["rx_bytes"].as_u64() >= Some(2 * 1024 * 1024))),
        "{first}"
    );
    assert!(first["blkio_stats"]["io_service_bytes_recursive"].is_array());
}

fn health(s: &Server, name: &str) -> Value {
    let out = s.ok(&["inspect", "-f", "{{json .State.Health}}", name]);
    serde_json::from_str(out.trim()).expect("State.Health JSON")
}

fn streak(h: &Value) -> u64 {
    h["FailingStreak"].as_u64().expect("FailingStreak")
}

#[test]
fn health_survives_a_server_restart_and_probing_goes_on_from_it() {
    let mut s = Server::start();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "checked",
        "--health-cmd",
        "test -e /ok && echo probe-ok || { echo probe-fail; exit 1; }",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "touch /ok; exec sleep 300",
    ]);
    wait_for("healthy", 30, || {
        health(&s, "checked")["Status"] == "healthy"
    });
    s.ok(&["exec", "checked", "rm", "/ok"]);
    wait_for("unhealthy with 3 failures in a row", 30, || {
        let h = health(&s, "checked");
        h["Status"] == "unhealthy" && streak(&h) >= 3
    });
    let before = health(&s, "checked");
    let last_before = before["Log"].as_array().unwrap().last().unwrap().clone();

    s.restart();
    // the same health at once, not `starting` with an empty log
    let after = health(&s, "checked");
    assert_eq!(after["Status"], "unhealthy", "{after}");
    assert!(streak(&after) >= streak(&before), "{before} then {after}");
    let log = after["Log"].as_array().unwrap();
    assert!(log.len() <= 5, "{after}");
    assert!(
        log.iter().any(|e| e["Start"] == last_before["Start"]),
        "the log before the restart is kept: {before} then {after}"
    );
    // probing goes on from the saved streak: a fresh start would read `starting`, 1
    let last_seen = log.last().unwrap()["Start"].clone();
    wait_for("a probe by the new server", 30, || {
        health(&s, "checked")["Log"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["Start"]
            != last_seen
    });
    let h = health(&s, "checked");
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert!(streak(&h) > streak(&before), "{before} then {h}");
    assert!(
        h["Log"].as_array().unwrap().last().unwrap()["Output"]
            .as_str()
            .unwrap()
            .contains("probe-fail"),
        "{h}"
    );
    // and a passing probe turns it healthy
    s.ok(&["exec", "checked", "touch", "/ok"]);
    wait_for("healthy again", 30, || {
        let h = health(&s, "checked");
        h["Status"] == "healthy" && streak(&h) == 0
    });

    // a stopped container keeps its last verdict across a restart too (made while
    // unhealthy, so a probe still finishing as it stops cannot change the status)
    s.ok(&["exec", "checked", "rm", "/ok"]);
    wait_for("unhealthy again", 30, || {
        health(&s, "checked")["Status"] == "unhealthy"
    });
    s.ok(&["stop", "-t", "1", "checked"]);
    let stopped = health(&s, "checked");
    s.restart();
    let h = health(&s, "checked");
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert!(streak(&h) >= streak(&stopped), "{stopped} then {h}");
    let last = stopped["Log"].as_array().unwrap().last().unwrap();
    assert!(
        h["Log"].as_array().unwrap().iter().any(|e| e == last),
        "{stopped} then {h}"
    );
    s.ok(&["rm", "checked"]);
    assert!(
        !s.root
            .path()
            .join("docker-api/health")
            .read_dir()
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".json")),
        "removing the container removes its saved health"
    );
}
