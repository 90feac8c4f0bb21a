//! `berth-dns --state-dir DIR [--foreground]`: the DNS server of one data root's networks
//! (see `berth_network::dns::service`). Without `--foreground` it detaches (fork, setsid,
//! output to `DIR/dns.log`) and its first process exits 0 once the daemon serves, so the
//! caller knows the gateways answer when it returns. A second server for the same state dir
//! finds the lock taken and exits 0 at once.

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use berth_network::dns::service::{self, LOCK_FILE, LOG_FILE};

fn usage() -> ExitCode {
    eprintln!("usage: berth-dns --state-dir DIR [--foreground]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut dir: Option<PathBuf> = None;
    let mut foreground = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--state-dir") => dir = args.next().map(PathBuf::from),
            Some("--foreground") => foreground = true,
            _ => return usage(),
        }
    }
    let Some(dir) = dir else {
        return usage();
    };
    if foreground {
        return match daemon(&dir, None) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth-dns: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        eprintln!("berth-dns: pipe: {}", std::io::Error::last_os_error());
        return ExitCode::FAILURE;
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no thread has been started yet, so the child may run arbitrary code.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("berth-dns: fork: {}", std::io::Error::last_os_error());
            ExitCode::FAILURE
        }
        0 => {
            drop(rd);
            let mut report = File::from(wr);
            if let Err(e) = detach(&dir) {
                let _ = write!(report, "{e}");
                return ExitCode::FAILURE;
            }
            let report = RefCell::new(Some(report));
            match daemon(&dir, Some(&report)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    if let Some(mut r) = report.take() {
                        let _ = write!(r, "{e}");
                    }
                    eprintln!("berth-dns: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            drop(wr);
            // "ok" once serving, or an error; EOF without either means it died
            let mut msg = String::new();
            let _ = File::from(rd).read_to_string(&mut msg);
            if msg == "ok" {
                ExitCode::SUCCESS
            } else if msg.is_empty() {
                eprintln!("berth-dns: the server exited before serving; see {LOG_FILE}");
                ExitCode::FAILURE
            } else {
                eprintln!("berth-dns: {msg}");
                ExitCode::FAILURE
            }
        }
    }
}

/// New session, `/` as working directory, stdin from /dev/null, output to the log.
fn detach(dir: &std::path::Path) -> std::io::Result<()> {
    // SAFETY: setsid has no memory effects; failure only means we already lead a group.
    unsafe { libc::setsid() };
    std::env::set_current_dir("/")?;
    let null = File::open("/dev/null")?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join(LOG_FILE))?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 onto the standard descriptors, from descriptors we hold open.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Takes the state dir's lock (or returns at once when another server holds it) and serves.
/// `report` gets "ok" once serving and is closed then (the waiting parent reads to its end).
fn daemon(dir: &std::path::Path, report: Option<&RefCell<Option<File>>>) -> Result<(), String> {
    let ok = || {
        if let Some(mut r) = report.and_then(RefCell::take) {
            let _ = write!(r, "ok");
        }
    };
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
    // SAFETY: flock on a descriptor we own; it stays open (and locked) until we exit.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        ok();
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = rt.block_on(service::serve(dir, ok));
    drop(lock);
    result.map_err(|e| e.to_string())
}
