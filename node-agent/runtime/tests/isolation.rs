//! The container sees itself as PID 1, its own hostname, its own mounts, no host processes,
//! a read-only root, masked paths and no host file descriptors.

mod support;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use serde_json::json;
use support::*;

#[test]
fn sees_itself_as_pid1_with_own_hostname_and_no_host_processes() {
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]')",
        ],
        |_| {},
    );
    let rt = Runtime::new();
    let out = run(&rt, &id("pid1"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("pid=1\n"), "{s}");
    assert!(s.contains("host=berth-test\n"), "{s}");
    // sh, and the ls/grep of the pipeline: nothing from the host.
    let procs: u32 = s
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "{s}");
}

#[test]
fn has_its_own_mounts_and_readonly_root() {
    let marker = HostMount::new();
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "cat /proc/self/mountinfo; touch /rootfile && echo WROTE; true",
        ],
        |_| {},
    );
    let rt = Runtime::new();
    let out = run(&rt, &id("mounts"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(
        !s.contains(&*marker.dir.path().to_string_lossy()),
        "host mount visible:\n{s}"
    );
    assert!(s.contains(" / "), "{s}");
    assert!(s.contains(" /proc "), "{s}");
    assert!(s.contains(" /dev/pts "), "{s}");
    assert!(!s.contains("WROTE"), "root is read-only");
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn standard_dev_nodes_and_masked_paths() {
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "stat -c '%n %t:%T' /dev/null /dev/zero /dev/urandom /dev/tty /proc/timer_list; \
             ls -l /dev/ptmx; echo acpi=$(ls /proc/acpi | wc -l); \
             echo x > /proc/sys/kernel/hostname && echo SYSCTL-WRITABLE; \
             echo hello > /dev/shm/f && cat /dev/shm/f",
        ],
        |_| {},
    );
    let rt = Runtime::new();
    let out = run(&rt, &id("devs"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("/dev/null 1:3"), "{s}");
    assert!(s.contains("/dev/zero 1:5"), "{s}");
    assert!(s.contains("/dev/urandom 1:9"), "{s}");
    assert!(s.contains("/dev/tty 5:0"), "{s}");
    // Masked: a file becomes /dev/null, a directory an empty tmpfs.
    assert!(s.contains("/proc/timer_list 1:3"), "{s}");
    assert!(s.contains("acpi=0"), "{s}");
    assert!(s.contains("-> pts/ptmx"), "{s}");
    assert!(
        !s.contains("SYSCTL-WRITABLE"),
        "/proc/sys must be read-only: {s}"
    );
    assert!(s.contains("hello"), "{s}");
}

#[test]
fn no_host_fd_reaches_the_container() {
    // `; true` keeps sh as PID 1 (otherwise it execs ls, whose own dir fd would show).
    let b = Bundle::new(&["sh", "-c", "ls -l /proc/1/fd; true"], |_| {});
    let rt = Runtime::new();
    let secret = tempfile::NamedTempFile::new().unwrap();
    let f = std::fs::File::open(secret.path()).unwrap();
    let raw = f.as_raw_fd();
    let mut cmd = rt.cmd();
    cmd.args(["run", "--bundle"])
        .arg(b.path())
        .arg(id("fds"))
        .stdin(Stdio::null());
    // SAFETY: dup2 in the forked child before exec, only async-signal-safe calls.
    unsafe {
        cmd.pre_exec(move || {
            // A descriptor without CLOEXEC, as a careless caller would leak it.
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let _ = rt.cmd().args(["delete", "--force", &id("fds")]).output();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(
        !s.contains(&*secret.path().to_string_lossy()),
        "leaked: {s}"
    );
    let fds: Vec<&str> = s
        .lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
        .collect();
    assert_eq!(fds, vec!["0", "1", "2"], "{s}");
}

#[test]
fn user_namespace_maps_ids() {
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
        ],
        |spec| {
            spec["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}));
            spec["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
            spec["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        },
    );
    let st = std::process::Command::new("chown")
        .args(["-R", "200000:200000"])
        .arg(b.rootfs())
        .status()
        .unwrap();
    assert!(st.success());
    let rt = Runtime::new();
    let out = run(&rt, &id("userns"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    let lines: Vec<Vec<&str>> = s.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], vec!["0", "200000", "65536"], "{s}");
    assert_eq!(lines[1], vec!["0", "200000", "65536"], "{s}");
    assert_eq!(lines[2], vec!["0"], "{s}");
}

#[test]
fn joins_namespaces_by_path_and_sets_domainname() {
    let rt = Runtime::new();
    let logs = tempfile::tempdir().unwrap();
    let a = Bundle::new(&["sleep", "1000"], |spec| {
        spec["hostname"] = json!("alpha");
    });
    let ida = id("nsjoin-a");
    let _ca = rt.create(&ida, &a, logs.path());
    let pid = rt.state(&ida).unwrap()["pid"].as_i64().unwrap();
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "hostname; readlink /proc/self/ns/net; cat /proc/sys/kernel/domainname",
        ],
        |spec| {
            spec["hostname"] = json!("beta");
            spec["domainname"] = json!("example.test");
            let ns = spec["linux"]["namespaces"].as_array_mut().unwrap();
            for n in ns.iter_mut() {
                if n["type"] == "network" || n["type"] == "uts" {
                    n["path"] = json!(format!(
                        "/proc/{pid}/ns/{}",
                        if n["type"] == "network" { "net" } else { "uts" }
                    ));
                }
            }
        },
    );
    let out = run(&rt, &id("nsjoin-b"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    // The joined UTS namespace keeps A's name; B's own hostname/domainname are not applied to it.
    assert_eq!(lines[0], "alpha", "{s}");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(lines[1], theirs.to_str().unwrap(), "{s}");
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(lines[1], ours.to_str().unwrap());
    // In a UTS namespace of its own, the domainname is set.
    let c = Bundle::new(&["cat", "/proc/sys/kernel/domainname"], |spec| {
        spec["domainname"] = json!("example.test");
    });
    let out = run(&rt, &id("domain"), &c);
    assert_eq!(stdout(&out), "example.test\n", "{}", stderr(&out));
}

#[test]
fn rootfs_on_ramfs_runs_with_move_and_chroot() {
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "echo pid=$$; cat /proc/self/mountinfo | grep -c ' / '",
        ],
        |_| {},
    );
    // Put the rootfs on a ramfs (pivot_root refuses those) and copy busybox onto it.
    let rootfs = b.rootfs();
    let stash = b.path().join("stash");
    std::fs::rename(&rootfs, &stash).unwrap();
    std::fs::create_dir(&rootfs).unwrap();
    let m = std::process::Command::new("mount")
        .args(["-t", "ramfs", "berth-test-ramfs"])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(m.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _u = Unmount(rootfs.clone());
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", stash.display()))
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(cp.success());
    let rt = Runtime::new();
    let out = run(&rt, &id("ramfs"), &b);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("pid=1\n"), "{}", stdout(&out));
}

#[test]
fn no_pivot_runs_in_the_rootfs() {
    let b = Bundle::new(&["sh", "-c", "echo pid=$$; ls /"], |_| {});
    std::fs::write(b.rootfs().join("etc/marker"), "x").unwrap();
    let rt = Runtime::new();
    let id = id("nopivot");
    let out = rt
        .cmd()
        .args(["run", "--no-pivot", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = rt.cmd().args(["delete", "--force", &id]).output();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.starts_with("pid=1\n"), "{s}");
    let entries: Vec<&str> = s.lines().skip(1).collect();
    assert_eq!(
        entries,
        vec!["bin", "dev", "etc", "proc", "sys", "tmp"],
        "{s}"
    );
}

#[test]
fn bad_id_mapping_fails_create_cleanly() {
    // Overlapping container ranges: the kernel refuses the uid_map write.
    let b = Bundle::new(&["true"], |spec| {
        spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        spec["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": 300000, "size": 10},
            {"containerID": 5, "hostID": 400000, "size": 10}
        ]);
        spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 10}]);
    });
    let rt = Runtime::new();
    let id = id("badmap");
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = rt.cmd().args(["delete", "--force", &id]).output();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("uid_map"), "{}", stderr(&out));
    assert!(rt.state(&id).is_none());
    assert!(!rt.root.path().join(&id).exists());
}
