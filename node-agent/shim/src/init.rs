//! `berth-init`: the minimal init that runs as PID 1 of a container whose service says
//! `init: true`. It forks the real command into its own process group, forwards every
//! catchable signal to that group, reaps every zombie that gets reparented to it, and exits
//! with the command's status (128 + signal if a signal killed it). Plain libc, no
//! allocation after the fork, so the binary is small and links statically.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

/// Signals that are never forwarded: SIGCHLD is ours, and the fault signals only make sense
/// for the process that raised them.
const NOT_FORWARDED: [libc::c_int; 8] = [
    libc::SIGCHLD,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// Where the agent bind-mounts the host's `berth-init` (read-only) inside a container whose
/// service says `init: true`.
pub const CONTAINER_PATH: &str = "/sbin/berth-init";

/// The container's process args with `berth-init` in front, so that it runs as PID 1 and
/// the service's command as its child.
pub fn wrap_args(args: &[String]) -> Vec<String> {
    let mut v = Vec::with_capacity(args.len() + 2);
    v.push(CONTAINER_PATH.to_string());
    v.push("--".to_string());
    v.extend(args.iter().cloned());
    v
}

pub const USAGE: &str = "usage: berth-init [--] COMMAND [ARG...]";

/// Runs `args` (the command line after `berth-init`) and returns the exit code to exit with.
pub fn run(args: Vec<OsString>) -> i32 {
    let args: Vec<OsString> = match args.first() {
        Some(a) if a == "--" => args[1..].to_vec(),
        _ => args,
    };
    if args.is_empty() {
        eprintln!("berth-init: {USAGE}");
        return 2;
    }
    let argv: Vec<CString> = match args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
    {
        Ok(v) => v,
        Err(_) => {
            eprintln!("berth-init: an argument contains a NUL byte");
            return 2;
        }
    };
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());

    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        // Outside a pid namespace orphans would go to the host's init; as a subreaper they
        // come to us, so the reaping guarantee holds either way.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }

    // SAFETY: sigset_t is plain data; sigfillset initializes it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to local sigsets.
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
    }

    // SAFETY: this process is single-threaded; the child only calls async-signal-safe
    // functions before exec.
    let child = unsafe { libc::fork() };
    if child < 0 {
        eprintln!("berth-init: fork: {}", std::io::Error::last_os_error());
        return 1;
    }
    if child == 0 {
        // SAFETY: async-signal-safe calls on data prepared before the fork.
        unsafe {
            libc::setpgid(0, 0);
            if libc::isatty(0) == 1 {
                // Take the terminal's foreground so the command gets ^C and can read it;
                // SIGTTOU is still blocked here, so tcsetpgrp does not stop us.
                libc::tcsetpgrp(0, libc::getpid());
            }
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr());
            let code = if *libc::__errno_location() == libc::ENOENT {
                127
            } else {
                126
            };
            let msg = b"berth-init: cannot execute the command\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(code);
        }
    }
    supervise(child, &all)
}

/// Waits for signals until the command exits; returns its exit code.
fn supervise(child: libc::pid_t, all: &libc::sigset_t) -> i32 {
    loop {
        // SAFETY: siginfo_t is plain data filled in by sigwaitinfo.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers; every signal is blocked, so they queue for us here.
        let sig = unsafe { libc::sigwaitinfo(all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            if let Some(code) = reap(child) {
                return code;
            }
        } else if !NOT_FORWARDED.contains(&sig) {
            // SAFETY: kill with plain integers.
            unsafe {
                if libc::kill(-child, sig) < 0 {
                    // The command left its process group: signal it alone.
                    libc::kill(child, sig);
                }
            }
        }
    }
}

/// Reaps every zombie; returns the command's exit code once it is among them.
fn reap(child: libc::pid_t) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return result;
        }
        if pid == child {
            result = Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_prefixed_with_the_mounted_init() {
        let a = wrap_args(&["sh".into(), "-c".into(), "--".into()]);
        assert_eq!(a, ["/sbin/berth-init", "--", "sh", "-c", "--"]);
    }
}
