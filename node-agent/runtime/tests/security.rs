//! Capabilities and seccomp: a dropped capability is really missing; a syscall the default
//! (Docker) profile denies fails with EPERM — each with a control run that differs only in
//! the setting under test.

mod support;

use serde_json::json;
use support::*;

#[test]
fn dropped_cap_net_admin_is_missing() {
    let cmd = ["ip", "link", "add", "br-test0", "type", "bridge"];
    let rt = Runtime::new();
    let without = Bundle::new(&cmd, |_| {});
    let out = run(&rt, &id("nocap"), &without);
    assert!(
        !out.status.success(),
        "ip link add must fail without CAP_NET_ADMIN"
    );
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    let with = Bundle::new(&cmd, |spec| {
        for set in ["bounding", "effective", "permitted"] {
            spec["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_NET_ADMIN"));
        }
    });
    let out = run(&rt, &id("withcap"), &with);
    assert!(
        out.status.success(),
        "control run with CAP_NET_ADMIN: {}",
        stderr(&out)
    );
}

#[test]
fn status_shows_only_the_granted_caps() {
    let b = Bundle::new(&["grep", "Cap", "/proc/self/status"], |_| {});
    let rt = Runtime::new();
    let out = run(&rt, &id("capstat"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    // AUDIT_WRITE(29) | KILL(5) | NET_BIND_SERVICE(10)
    let want = format!("{:016x}", (1u64 << 29) | (1 << 5) | (1 << 10));
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        let line = stdout(&out)
            .lines()
            .find(|l| l.starts_with(set))
            .unwrap()
            .to_string();
        assert!(line.ends_with(&want), "{line} != {want}");
    }
    // Ambient capabilities need the inheritable bit, which runc's default spec leaves empty:
    // both sets end up empty, as with runc.
    for set in ["CapInh", "CapAmb"] {
        assert!(
            stdout(&out)
                .lines()
                .any(|l| l.starts_with(set) && l.ends_with("0000000000000000")),
            "{set}"
        );
    }
}

#[test]
fn seccomp_default_profile_denies_unshare_with_eperm() {
    let cmd = ["unshare", "-U", "true"];
    let rt = Runtime::new();
    let denied = Bundle::new(&cmd, |_| {});
    let out = run(&rt, &id("seccomp"), &denied);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    let control = Bundle::new(&cmd, |spec| {
        spec["linux"].as_object_mut().unwrap().remove("seccomp");
    });
    let out = run(&rt, &id("noseccomp"), &control);
    assert!(
        out.status.success(),
        "control without seccomp: {}",
        stderr(&out)
    );
}

#[test]
fn seccomp_mode_is_filter_and_no_new_privs_set() {
    let b = Bundle::new(
        &["grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"],
        |_| {},
    );
    let rt = Runtime::new();
    let out = run(&rt, &id("seccompmode"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("Seccomp:\t2"), "{s}");
    assert!(s.contains("NoNewPrivs:\t1"), "{s}");
}

#[test]
fn rlimits_umask_and_user_apply() {
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "ulimit -n; umask; id -u; id -g; id -G; cat /proc/self/oom_score_adj",
        ],
        |spec| {
            spec["process"]["rlimits"] =
                json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 321}]);
            spec["process"]["user"] =
                json!({"uid": 1000, "gid": 1001, "additionalGids": [1002], "umask": 63});
            spec["process"]["oomScoreAdj"] = json!(500);
        },
    );
    let rt = Runtime::new();
    let out = run(&rt, &id("procset"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(|l| l.to_string()).collect();
    assert_eq!(lines[0], "321");
    assert_eq!(lines[1], "0077");
    assert_eq!(lines[2], "1000");
    assert_eq!(lines[3], "1001");
    assert!(
        lines[4].split_whitespace().any(|g| g == "1002"),
        "{lines:?}"
    );
    assert_eq!(lines[5], "500");
}

#[test]
fn sysctl_is_set_in_the_container() {
    let b = Bundle::new(&["cat", "/proc/sys/net/ipv4/ip_forward"], |spec| {
        spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        // /proc/sys is read-only by default; sysctls are applied before that.
    });
    let rt = Runtime::new();
    let out = run(&rt, &id("sysctl"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1\n");
}
