//! The shim against a real runtime (Debian's runc unless `BERTH_TEST_RUNTIME` says
//! otherwise) and real busybox containers: logs, exit codes, signals, wait, attach,
//! rotation, terminals, and errors of the runtime reaching the caller.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use berth_shim::log::{Stream, log_files};
use berth_shim::{Shim, ShimError, ShimOptions, Status, state};
use common::{Fixture, INIT, SHIM, pid_alive, wait_until};

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn logs_are_complete_and_ordered_per_stream_for_a_fast_exiting_container() {
    let script = "seq 1 2000; i=1; while [ $i -le 2000 ]; do echo out$i; echo err$i >&2; \
                  i=$((i+1)); done";
    let fx = Fixture::new("fastlogs", &["sh", "-c", script]);
    let shim = fx.spawn();
    assert_eq!(shim.state().unwrap().status, Status::Created);
    shim.start().unwrap();
    let exit = shim.wait().unwrap();
    assert_eq!((exit.code, exit.signal), (0, None));

    // The log is complete the moment wait answers.
    let out = fx.lines("stdout");
    let err = fx.lines("stderr");
    let mut want_out: Vec<String> = (1..=2000).map(|i| format!("{i}\n")).collect();
    want_out.extend((1..=2000).map(|i| format!("out{i}\n")));
    let want_err: Vec<String> = (1..=2000).map(|i| format!("err{i}\n")).collect();
    assert_eq!(out.len(), want_out.len());
    assert_eq!(out, want_out);
    assert_eq!(err, want_err);
    for r in fx.records() {
        assert!(r.time.ends_with('Z') && r.time.contains('T'), "{}", r.time);
    }
    shim.delete(false).unwrap();
}

#[test]
fn exit_code_propagates_to_wait_state_and_exit_record() {
    let fx = Fixture::new("exit42", &["sh", "-c", "echo bye; exit 42"]);
    let shim = fx.spawn();
    shim.start().unwrap();
    let exit = shim.wait().unwrap();
    assert_eq!((exit.code, exit.signal), (42, None));
    let st = shim.state().unwrap();
    assert_eq!(st.status, Status::Stopped);
    assert_eq!(st.exit.as_ref().map(|e| e.code), Some(42));
    let recorded = state::read_exit(&fx.state_dir).unwrap().unwrap();
    assert_eq!(recorded, exit);
    assert_eq!(fx.lines("stdout"), vec!["bye\n".to_string()]);
    // A second start or a kill of an exited container is refused with a reason.
    assert!(matches!(shim.start(), Err(ShimError::Refused { .. })));
    assert!(matches!(
        shim.kill(9, false),
        Err(ShimError::Refused { .. })
    ));
    shim.delete(false).unwrap();
    let shim_pid = st.shim_pid;
    wait_until(LIMIT, "shim to exit after delete", || !pid_alive(shim_pid));
    assert!(!fx.state_dir.join(state::SOCKET).exists());
}

#[test]
fn a_signal_death_is_recorded_as_128_plus_signal() {
    let fx = Fixture::new("sigkill", &["sleep", "1000"]);
    let shim = fx.spawn();
    shim.start().unwrap();
    let st = shim.state().unwrap();
    assert_eq!(st.status, Status::Running);
    assert!(pid_alive(st.pid));
    shim.kill(libc::SIGKILL, false).unwrap();
    let exit = shim.wait().unwrap();
    assert_eq!((exit.code, exit.signal), (137, Some(libc::SIGKILL)));
    assert_eq!(exit.pid, st.pid);
    shim.delete(false).unwrap();
}

#[test]
fn wait_blocks_until_exit_and_signals_to_the_shim_reach_the_container() {
    let script = "trap 'echo term; exit 3' TERM; echo ready; while :; do sleep 0.05; done";
    let fx = Fixture::new("waitterm", &["sh", "-c", script]);
    let shim = fx.spawn();
    shim.start().unwrap();
    wait_until(LIMIT, "container to be ready", || {
        fx.lines("stdout").contains(&"ready\n".to_string())
    });

    let (tx, rx) = mpsc::channel();
    let waiter = shim.clone();
    std::thread::spawn(move || {
        let _ = tx.send(waiter.wait());
    });
    // Still running: wait has not answered.
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(300)),
        Err(mpsc::RecvTimeoutError::Timeout)
    ));
    assert_eq!(shim.state().unwrap().status, Status::Running);

    // SIGTERM to the shim process itself is forwarded to the container's init.
    let shim_pid = fx.shim_pid().unwrap();
    // SAFETY: kill with plain integers, on our own shim.
    assert_eq!(unsafe { libc::kill(shim_pid, libc::SIGTERM) }, 0);
    let exit = rx.recv_timeout(LIMIT).unwrap().unwrap();
    assert_eq!((exit.code, exit.signal), (3, None));
    assert_eq!(
        fx.lines("stdout"),
        vec!["ready\n".to_string(), "term\n".to_string()]
    );
    assert!(
        pid_alive(shim_pid),
        "the shim forwards SIGTERM, it does not die of it"
    );
    shim.delete(false).unwrap();
}

#[test]
fn attach_streams_live_output_and_forwards_stdin() {
    let script = "echo start; read line; echo got:$line; echo bye >&2";
    let fx = Fixture::new("attach", &["sh", "-c", script]);
    let mut args = fx.args();
    args.stdin = true;
    let shim = fx.spawn_with(args);
    let mut att = shim.attach(true, true).unwrap();
    att.set_timeout(Some(LIMIT)).unwrap();
    shim.start().unwrap();

    let mut out = Vec::new();
    let mut err = Vec::new();
    while !out.ends_with(b"start\n") {
        let (s, data) = att.next_chunk().unwrap().expect("output before end");
        assert_eq!(s, Stream::Stdout);
        out.extend(data);
    }
    att.write_stdin(b"hello\n").unwrap();
    while let Some((s, data)) = att.next_chunk().unwrap() {
        match s {
            Stream::Stdout => out.extend(data),
            Stream::Stderr => err.extend(data),
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), "start\ngot:hello\n");
    assert_eq!(String::from_utf8_lossy(&err), "bye\n");
    assert_eq!(shim.wait().unwrap().code, 0);
    shim.delete(false).unwrap();
}

#[test]
fn stdin_once_closes_the_containers_stdin() {
    let fx = Fixture::new("stdinonce", &["sh", "-c", "cat; echo eof-seen"]);
    let mut args = fx.args();
    args.stdin = true;
    let shim = fx.spawn_with(args);
    let mut att = shim.attach(true, true).unwrap();
    shim.start().unwrap();
    att.write_stdin(b"a\nb\n").unwrap();
    att.close_stdin().unwrap();
    let exit = shim.wait().unwrap();
    assert_eq!(exit.code, 0);
    assert_eq!(fx.lines("stdout"), vec!["a\n", "b\n", "eof-seen\n"]);
    shim.delete(false).unwrap();
}

/// A client that only feeds stdin never reads the output the shim also sends it; closing
/// such a socket with data unread makes the shim's next read fail with ECONNRESET instead
/// of seeing EOF. That is still the end of the client's input, and with `stdin_once` the
/// container's stdin must close (the hang of `docker run -i` under load).
#[test]
fn a_stdin_client_that_goes_away_with_output_unread_still_closes_stdin() {
    let fx = Fixture::new("stdinreset", &["sh", "-c", "cat; echo eof-seen"]);
    let mut args = fx.args();
    args.stdin = true;
    let shim = fx.spawn_with(args);
    // the output reader the API keeps (it never writes), and a stdin-only client
    let _output = shim.attach(true, true).unwrap();
    shim.start().unwrap();
    let mut input = shim.attach(true, true).unwrap();
    input.write_stdin(b"echoed\n").unwrap();
    // the echo reaches the log, so its frame sits unread in `input`'s socket
    let deadline = std::time::Instant::now() + LIMIT;
    while fx.lines("stdout").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no echo");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // closed without a shutdown first: the shim's read fails with ECONNRESET, no EOF
    drop(input);
    let (tx, rx) = mpsc::channel();
    let waiter = shim.clone();
    std::thread::spawn(move || {
        let _ = tx.send(waiter.wait());
    });
    let exit = rx
        .recv_timeout(LIMIT)
        .expect("the container's stdin was never closed")
        .unwrap();
    assert_eq!(exit.code, 0);
    assert_eq!(fx.lines("stdout"), vec!["echoed\n", "eof-seen\n"]);
    shim.delete(false).unwrap();
}

#[test]
fn log_rotation_keeps_at_most_n_files_of_at_most_the_max_size() {
    let fx = Fixture::new("rotate", &["seq", "1", "3000"]);
    let mut args = fx.args();
    args.log_max_size = 4000;
    args.log_max_files = 3;
    let shim = fx.spawn_with(args);
    shim.start().unwrap();
    assert_eq!(shim.wait().unwrap().code, 0);
    let files = log_files(&fx.state_dir.join(state::LOG));
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 4000, "{} is {len} bytes", f.display());
    }
    assert!(!fx.state_dir.join("container.log.3").exists());
    // What is kept is the newest output, whole and in order.
    let lines: Vec<u32> = fx
        .lines("stdout")
        .iter()
        .map(|l| l.trim_end().parse().unwrap())
        .collect();
    assert_eq!(*lines.last().unwrap(), 3000);
    assert!(lines.len() > 100 && lines.len() < 3000);
    assert!(lines.windows(2).all(|w| w[1] == w[0] + 1));
    shim.delete(false).unwrap();
}

#[test]
fn a_terminal_container_gets_a_pty_that_resizes() {
    let fx = Fixture::with(
        "tty",
        &["sh", "-c", "read x; stty size; tty; exit 7"],
        true,
        |_| {},
    );
    let mut args = fx.args();
    args.tty = true;
    let shim = fx.spawn_with(args);
    let mut att = shim.attach(true, false).unwrap();
    shim.start().unwrap();
    shim.resize(33, 101).unwrap();
    att.write_stdin(b"go\n").unwrap();
    let mut out = Vec::new();
    att.set_timeout(Some(LIMIT)).unwrap();
    while let Some((_, data)) = att.next_chunk().unwrap() {
        out.extend(data);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("33 101"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert_eq!(shim.wait().unwrap().code, 7);
    let logged: String = fx.lines("stdout").concat();
    assert!(logged.contains("33 101"), "{logged:?}");
    shim.delete(false).unwrap();
}

#[test]
fn resize_without_a_terminal_is_refused() {
    let fx = Fixture::new("notty", &["true"]);
    let shim = fx.spawn();
    let e = shim.resize(10, 10).unwrap_err();
    assert!(e.to_string().contains("has no terminal"), "{e}");
    shim.delete(false).unwrap();
}

#[test]
fn a_runtime_failure_reaches_the_launcher_as_one_line() {
    let fx = Fixture::new("badcmd", &["/no/such/program"]);
    let err = Shim::spawn(&ShimOptions {
        binary: SHIM.into(),
        args: fx.args(),
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ShimError::Launch { .. }), "{msg}");
    assert!(msg.contains("/no/such/program"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    // The failed shim leaves no socket behind.
    assert!(!fx.state_dir.join(state::SOCKET).exists());
}

#[test]
fn exit_with_container_makes_the_shim_leave_on_its_own() {
    let fx = Fixture::new("exitwith", &["sh", "-c", "exit 9"]);
    let mut args = fx.args();
    args.exit_with_container = true;
    let shim = fx.spawn_with(args);
    let shim_pid = shim.state().unwrap().shim_pid;
    shim.start().unwrap();
    wait_until(LIMIT, "shim to exit", || !pid_alive(shim_pid));
    assert_eq!(state::read_exit(&fx.state_dir).unwrap().unwrap().code, 9);
}

#[test]
fn init_true_runs_berth_init_as_pid_1_of_the_container() {
    let script = r#"
        for i in 1 2 3; do (sleep 0.1 &); done
        trap 'echo term; exit 4' TERM
        echo "ppid=$PPID init=$(cat /proc/1/comm)"
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
            n=$((n+1)); usleep 20000
        done
        echo "seen=$seen zombies=$zombies"
        while :; do usleep 20000; done
    "#;
    let cmd: Vec<String> = ["sh", "-c", script].map(String::from).to_vec();
    let args = berth_shim::init::wrap_args(&cmd);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let fx = Fixture::with("init", &args, false, |cfg| {
        let mounts = cfg["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({
            "destination": berth_shim::init::CONTAINER_PATH,
            "type": "bind",
            "source": INIT,
            "options": ["bind", "ro"],
        }));
        // A test build of berth-init links glibc dynamically; the agent ships a static one.
        for lib in ["/lib/x86_64-linux-gnu", "/lib64"] {
            mounts.push(serde_json::json!({
                "destination": lib, "type": "bind", "source": lib, "options": ["rbind", "ro"],
            }));
        }
    });
    let shim = fx.spawn();
    shim.start().unwrap();
    wait_until(LIMIT, "orphans to be reaped inside the container", || {
        fx.lines("stdout").len() >= 2
    });
    assert_eq!(
        fx.lines("stdout"),
        vec!["ppid=1 init=berth-init\n", "seen=1 zombies=0\n"]
    );
    // The runtime signals PID 1, berth-init, which passes it on to the command.
    shim.kill(libc::SIGTERM, false).unwrap();
    let exit = shim.wait().unwrap();
    assert_eq!((exit.code, exit.signal), (4, None));
    assert_eq!(fx.lines("stdout").last().unwrap(), "term\n");
    shim.delete(false).unwrap();
}

#[test]
fn force_delete_of_a_running_container_records_the_kill_and_ends_the_shim() {
    let fx = Fixture::new("forcedel", &["sleep", "1000"]);
    let shim = fx.spawn();
    shim.start().unwrap();
    let st = shim.state().unwrap();
    // Without force the runtime refuses, and says why.
    let e = shim.delete(false).unwrap_err();
    assert!(matches!(e, ShimError::Refused { .. }), "{e}");
    shim.delete(true).unwrap();
    wait_until(LIMIT, "shim to exit after delete --force", || {
        !pid_alive(st.shim_pid)
    });
    let exit = state::read_exit(&fx.state_dir).unwrap().unwrap();
    assert_eq!((exit.code, exit.signal), (137, Some(libc::SIGKILL)));
    assert!(!pid_alive(st.pid));
}

#[test]
fn shutdown_is_refused_while_running_and_ends_the_shim_after_exit() {
    let fx = Fixture::new("shutdown", &["sh", "-c", "read x; exit 2"]);
    let mut args = fx.args();
    args.stdin = true;
    let shim = fx.spawn_with(args);
    shim.start().unwrap();
    let e = shim.shutdown().unwrap_err();
    assert!(e.to_string().contains("has not exited"), "{e}");
    let mut att = shim.attach(true, false).unwrap();
    att.write_stdin(b"x\n").unwrap();
    assert_eq!(shim.wait().unwrap().code, 2);
    let shim_pid = shim.state().unwrap().shim_pid;
    shim.shutdown().unwrap();
    wait_until(LIMIT, "shim to exit after shutdown", || {
        !pid_alive(shim_pid)
    });
    // The exit record outlives the shim.
    assert_eq!(state::read_exit(&fx.state_dir).unwrap().unwrap().code, 2);
}

#[test]
fn the_container_sees_only_its_stdio_and_no_shim_descriptor() {
    // `ls` lists its own directory handle too, as 3.
    let fx = Fixture::new("fds", &["ls", "/proc/self/fd"]);
    let mut args = fx.args();
    args.stdin = true;
    let shim = fx.spawn_with(args);
    shim.start().unwrap();
    assert_eq!(shim.wait().unwrap().code, 0);
    assert_eq!(fx.lines("stdout"), vec!["0\n", "1\n", "2\n", "3\n"]);
    shim.delete(false).unwrap();
}

#[test]
fn kill_all_reaches_every_process_of_the_container() {
    // Init ignores SIGTERM; only its child can be ended by it, and only with `all`.
    let script = "sleep 1000 & trap '' TERM; echo ready; wait; echo child-gone; exit 5";
    let fx = Fixture::new("killall", &["sh", "-c", script]);
    let shim = fx.spawn();
    shim.start().unwrap();
    wait_until(LIMIT, "container to be ready", || {
        fx.lines("stdout") == vec!["ready\n".to_string()]
    });
    shim.kill(libc::SIGTERM, true).unwrap();
    let exit = shim.wait().unwrap();
    assert_eq!((exit.code, exit.signal), (5, None));
    assert_eq!(fx.lines("stdout"), vec!["ready\n", "child-gone\n"]);
    shim.delete(false).unwrap();
}

#[test]
fn a_second_shim_for_the_same_state_dir_is_refused_and_leaves_the_first_alone() {
    let fx = Fixture::new("twice", &["sh", "-c", "echo one; exit 1"]);
    let shim = fx.spawn();
    let mut second = fx.args();
    second.id = format!("{}-b", fx.id);
    let err = Shim::spawn(&ShimOptions {
        binary: SHIM.into(),
        args: second,
    })
    .unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    assert!(fx.state_dir.join(state::SOCKET).exists());
    shim.start().unwrap();
    assert_eq!(shim.wait().unwrap().code, 1);
    assert_eq!(fx.lines("stdout"), vec!["one\n"]);
    shim.delete(false).unwrap();
}

#[test]
fn a_long_unterminated_last_line_is_logged_whole_in_16k_records() {
    let fx = Fixture::new(
        "longline",
        &["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; exit 0"],
    );
    let shim = fx.spawn();
    shim.start().unwrap();
    assert_eq!(shim.wait().unwrap().code, 0);
    let lens: Vec<usize> = fx.lines("stdout").iter().map(String::len).collect();
    assert_eq!(lens, vec![16384, 16384, 40000 - 2 * 16384]);
    assert!(
        fx.lines("stdout")
            .iter()
            .all(|l| l.bytes().all(|b| b == b'x'))
    );
    shim.delete(false).unwrap();
}
