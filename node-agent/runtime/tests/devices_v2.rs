//! The cgroup v2 device filter (an eBPF program) on the real kernel: attached to a cgroup2
//! directory of its own, it lets a process in that cgroup open the allowed device and refuses
//! another with EPERM. Runs on hybrid machines too (the unified hierarchy takes the program).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use berth_runtime::cgroups::devices_bpf::{Rule, apply};

fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = left.split(' ').nth(4)?;
            right.starts_with("cgroup2 ").then(|| PathBuf::from(mp))
        })
        .expect("a cgroup2 mount")
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn bpf_device_filter_allows_and_denies() {
    let dir = Dir(cgroup2_mount().join(format!("berth-devtest-{}", std::process::id())));
    std::fs::create_dir(&dir.0).unwrap();
    let rules = [
        Rule {
            typ: None,
            major: None,
            minor: None,
            access: 7,
            allow: false,
        },
        Rule {
            typ: Some(2),
            major: Some(1),
            minor: Some(3),
            access: 6,
            allow: true,
        },
    ];
    apply(&dir.0, &rules).unwrap();
    let procs = CString::new(dir.0.join("cgroup.procs").to_str().unwrap()).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        "cat /dev/null && echo null-ok; head -c1 /dev/full >/dev/null && echo full-ok; true",
    ]);
    // SAFETY: only open/write/close (async-signal-safe) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(s.contains("null-ok"), "{s} {e}");
    assert!(!s.contains("full-ok"), "{s}");
    assert!(e.contains("Operation not permitted"), "{e}");
}
