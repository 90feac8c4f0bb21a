//! Resource limits are enforced by the real kernel: memory (OOM kill, reported through the
//! cgroup stats) and pids (a fork bomb stops at the limit).

mod support;

use serde_json::json;
use support::*;

#[test]
fn memory_limit_oom_kills_and_is_reported() {
    let limit: i64 = 32 << 20;
    // dd allocates a block of bs bytes and fills it from /dev/zero: 64 MiB > 32 MiB.
    let b = Bundle::new(
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        |spec| {
            spec["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
        },
    );
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("oom");
    let _c = rt.create(&id, &b, logs.path());
    let before = berth_runtime::ops::stats(rt.root.path(), &id).unwrap();
    assert_eq!(before.memory.limit_bytes, Some(limit as u64));
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "stopped");
    let after = berth_runtime::ops::stats(rt.root.path(), &id).unwrap();
    assert!(
        after.memory.oom_kills >= 1 || after.memory.failcnt >= 1,
        "{after:?}"
    );
    assert!(
        after.memory.oom_kills >= 1,
        "OOM kill must be reported: {after:?}"
    );

    // Below the limit the same program completes.
    let ok = Bundle::new(
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"],
        |spec| {
            spec["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
        },
    );
    let out = run(&rt, &format!("{id}-ok"), &ok);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "for i in $(seq 1 60); do sleep 30 & done; echo spawned; sleep 30",
        ],
        |spec| {
            spec["linux"]["resources"]["pids"] = json!({"limit": 12});
        },
    );
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("pids");
    let _c = rt.create(&id, &b, logs.path());
    rt.ok(&["start", &id]);
    wait_until(
        std::time::Duration::from_secs(10),
        || {
            std::fs::read_to_string(logs.path().join("stderr"))
                .unwrap_or_default()
                .contains("fork")
        },
        "the shell to report failed forks",
    );
    let s = berth_runtime::ops::stats(rt.root.path(), &id).unwrap();
    assert_eq!(s.pids.limit, Some(12));
    assert!(s.pids.current <= 12, "{s:?}");
    // The kernel counts the forks it refused because of the limit.
    let saved = berth_runtime::state::Saved::load(rt.root.path(), &id).unwrap();
    let cg = berth_runtime::ops::cgroup_of(&saved).unwrap();
    let events = std::fs::read_to_string(cg.dir("pids").unwrap().join("pids.events")).unwrap();
    let refused: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{events}");
}

#[test]
fn cpu_and_cpuset_settings_land_in_the_cgroup() {
    let b = Bundle::new(&["sleep", "1000"], |spec| {
        spec["linux"]["resources"]["cpu"] =
            json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"});
        spec["linux"]["resources"]["blockIO"] = json!({"weight": 500});
    });
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("cpu");
    let _c = rt.create(&id, &b, logs.path());
    let saved = berth_runtime::state::Saved::load(rt.root.path(), &id).unwrap();
    let cg = berth_runtime::ops::cgroup_of(&saved).unwrap();
    let read = |c: &str, f: &str| {
        std::fs::read_to_string(cg.dir(c).unwrap().join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    if cg.is_v2() {
        assert_eq!(read("cpu", "cpu.max"), "50000 100000");
        assert_eq!(read("cpu", "cpu.weight"), "20");
    } else {
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpuset", "cpuset.cpus"), "0");
    }
    let pid = rt.state(&id).unwrap()["pid"].as_i64().unwrap() as i32;
    let procs = cg.pids().unwrap();
    assert!(procs.contains(&pid), "{procs:?}");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let b = Bundle::new(&["sleep", "1000"], |spec| {
        spec["linux"]["resources"]["pids"] = json!({"limit": 50});
    });
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let id = id("update");
    let _c = rt.create(&id, &b, logs.path());
    rt.ok(&["start", &id]);
    let res = logs.path().join("res.json");
    std::fs::write(
        &res,
        json!({"pids": {"limit": 7}, "memory": {"limit": 64 << 20}}).to_string(),
    )
    .unwrap();
    rt.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    let s = berth_runtime::ops::stats(rt.root.path(), &id).unwrap();
    assert_eq!(s.pids.limit, Some(7));
    assert_eq!(s.memory.limit_bytes, Some(64 << 20));
    // From stdin, as containerd passes it.
    let mut child = rt
        .cmd()
        .args(["update", "--resources", "-", &id])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), br#"{"pids": {"limit": 9}}"#).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(
        berth_runtime::ops::stats(rt.root.path(), &id)
            .unwrap()
            .pids
            .limit,
        Some(9)
    );
}
