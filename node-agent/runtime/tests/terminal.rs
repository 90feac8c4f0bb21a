//! `--console-socket`: the pty master arrives over the socket with SCM_RIGHTS (payload: the
//! pty's name), and the container's stdio is the pty slave (a real terminal).

mod support;

use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde_json::json;
use support::*;

/// Accepts one connection and receives the fd sent on it.
fn receive_master(listener: &UnixListener) -> (OwnedFd, String) {
    use std::os::fd::AsRawFd;
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            fd = fds.first().copied();
        }
    }
    let n = msg.bytes;
    let name = String::from_utf8_lossy(&buf[..n]).into_owned();
    // SAFETY: the kernel installed this descriptor for us.
    (
        unsafe { OwnedFd::from_raw_fd(fd.expect("no fd received")) },
        name,
    )
}

#[test]
fn console_socket_receives_the_pty_master() {
    let b = Bundle::new(
        &["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo IS-A-TTY; tty"],
        |spec| {
            spec["process"]["terminal"] = json!(true);
        },
    );
    let rt = Runtime::new();
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = id("tty");
    let receiver = std::thread::spawn(move || receive_master(&listener));
    let out = rt
        .cmd()
        .args(["create", "--console-socket"])
        .arg(&sock)
        .arg("--bundle")
        .arg(b.path())
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _c = Container {
        rt: &rt,
        id: id.clone(),
    };
    assert!(out.status.success(), "{}", stderr(&out));
    let (master, name) = receiver.join().unwrap();
    assert!(name.starts_with("/dev/pts/"), "{name}");
    rt.ok(&["start", &id]);
    let mut f = std::fs::File::from(master);
    let mut text = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    // Reading the master ends with EIO once the slave side is closed by the exiting process.
    while Instant::now() < deadline {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("IS-A-TTY"), "{text:?}");
    assert!(text.contains("/dev/pts/0"), "{text:?}");
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let b = Bundle::new(&["true"], |spec| {
        spec["process"]["terminal"] = json!(true);
    });
    let rt = Runtime::new();
    let id = id("notty");
    let out = rt
        .cmd()
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("console-socket"), "{}", stderr(&out));
    assert!(rt.state(&id).is_none());
}

#[test]
fn run_and_exec_with_a_terminal_proxy_it_themselves() {
    let b = Bundle::new(
        &["sh", "-c", "[ -t 1 ] && echo IS-A-TTY; tty; exit 4"],
        |spec| {
            spec["process"]["terminal"] = json!(true);
        },
    );
    let rt = Runtime::new();
    let out = run(&rt, &id("ttyproxy"), &b);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("IS-A-TTY"), "{s:?}");
    assert!(s.contains("/dev/pts/0"), "{s:?}");

    let b = Bundle::new(&["sleep", "1000"], |_| {});
    let logs = tempfile::tempdir().unwrap();
    let id = id("ttyexec");
    let _c = rt.create(&id, &b, logs.path());
    rt.ok(&["start", &id]);
    let out = rt
        .cmd()
        .args(["exec", "--tty", &id, "sh", "-c", "tty; exit 6"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stdout(&out).contains("/dev/pts/"), "{:?}", stdout(&out));
}
