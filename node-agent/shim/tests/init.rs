//! `berth-init` as PID 1 of a real pid namespace (through util-linux `unshare`) and as a
//! subreaper on the host: it reaps orphaned grandchildren, forwards SIGTERM to the command's
//! process group, and exits with the command's status.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{INIT, pid_alive, wait_until};

const LIMIT: Duration = Duration::from_secs(30);

/// Kills the process (and, for unshare, its namespace) on the way out.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ppid(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn read_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

#[test]
fn orphans_are_reaped_and_sigterm_reaches_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("orphans");
    // Each subshell starts a sleep and exits at once, orphaning it.
    let script = format!(
        "for i in 1 2 3; do (sleep 1 & echo $! >> {p}); done; echo ready; exec sleep 600",
        p = pids.display()
    );
    let mut init = Reaped(
        Command::new(INIT)
            .args(["--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let init_pid = init.0.id() as i32;
    assert_eq!(read_line(&mut init.0), "ready\n");
    let orphans: Vec<i32> = fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(orphans.len(), 3);
    for &o in &orphans {
        // Reparented to berth-init (a subreaper when not PID 1), not to the host's init.
        wait_until(LIMIT, "orphan to be reparented", || {
            ppid(o).is_none_or(|p| p == init_pid)
        });
    }
    // Once they have exited nothing of them is left: no zombie in /proc.
    for &o in &orphans {
        wait_until(LIMIT, "orphan to be reaped", || {
            !fs::exists(format!("/proc/{o}")).unwrap()
        });
    }
    let kids = children(init_pid);
    assert_eq!(kids.len(), 1, "only the command is left: {kids:?}");
    assert!(pid_alive(kids[0]));

    // SAFETY: kill with plain integers, on our child.
    assert_eq!(unsafe { libc::kill(init_pid, libc::SIGTERM) }, 0);
    let status = init.0.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
}

#[test]
fn as_pid_1_it_reaps_every_zombie_and_forwards_sigterm() {
    // Five orphans; then poll /proc until they have been seen and are gone, counting
    // zombies. Without reaping they would stay as zombies and the loop would time out.
    let script = r#"
        for i in 1 2 3 4 5; do (sleep 0.2 &); done
        trap 'echo term; exit 9' TERM
        n=0; seen=0
        while [ $n -lt 500 ]; do
            sleeping=0; zombies=0
            for f in /proc/[0-9]*/stat; do
                read -r s < "$f" 2>/dev/null || continue
                case "$s" in
                    *"(sleep) Z"*) zombies=$((zombies+1)) ;;
                    *"(sleep) "*) sleeping=$((sleeping+1)) ;;
                esac
            done
            [ $sleeping -gt 0 ] && seen=1
            [ $seen -eq 1 ] && [ $sleeping -eq 0 ] && [ $zombies -eq 0 ] && break
            n=$((n+1)); /bin/busybox usleep 20000
        done
        echo "pid=$$ ppid=$PPID seen=$seen zombies=$zombies sleeping=$sleeping"
        while :; do /bin/busybox usleep 20000; done
    "#;
    let mut unshare = Reaped(
        Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount-proc",
                INIT,
                "--",
                "sh",
                "-c",
                script,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux)"),
    );
    let line = read_line(&mut unshare.0);
    // The command runs as PID 2 under berth-init as PID 1, and every orphan was reaped.
    assert_eq!(line, "pid=2 ppid=1 seen=1 zombies=0 sleeping=0\n");

    // berth-init's host pid is unshare's only child.
    let unshare_pid = unshare.0.id() as i32;
    let init_pid = children(unshare_pid)[0];
    // SAFETY: kill with plain integers, on our own descendant.
    assert_eq!(unsafe { libc::kill(init_pid, libc::SIGTERM) }, 0);
    assert_eq!(read_line(&mut unshare.0), "term\n");
    let status = unshare.0.wait().unwrap();
    assert_eq!(status.code(), Some(9));
}

#[test]
fn exit_status_follows_the_command() {
    let run = |script: &str| {
        Command::new(INIT)
            .args(["sh", "-c", script])
            .status()
            .unwrap()
            .code()
    };
    assert_eq!(run("exit 42"), Some(42));
    assert_eq!(run("kill -KILL $$"), Some(128 + libc::SIGKILL));
    let missing = Command::new(INIT)
        .arg("/no/such/command")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(missing.code(), Some(127));
    let usage = Command::new(INIT).stderr(Stdio::null()).status().unwrap();
    assert_eq!(usage.code(), Some(2));
}
