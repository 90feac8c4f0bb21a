//! The container process's own settings, applied last in the init (or exec) child before
//! execve: rlimits, OOM score, user and groups, capabilities (all five sets),
//! `no_new_privileges`, seccomp, umask, working directory, and closing leaked fds.
//!
//! Everything that can be checked is checked in [`Prepared::new`] (before the runtime reports
//! "created"), so `apply_and_exec` only fails on kernel refusals.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{LinuxSeccomp, PosixRlimit, Process};

use crate::seccomp::{self, CompiledSeccomp, SeccompError};
use crate::sys::{self, SysError, cstr};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("exec: {arg0}: executable file not found in $PATH")]
    NotFound { arg0: String },
    #[error("exec: {path}: permission denied")]
    NotExecutable { path: PathBuf },
    #[error("capability {name}: not known to this kernel interface")]
    UnknownCapability { name: String },
    #[error("rlimit {name}: unknown")]
    UnknownRlimit { name: String },
    #[error("cwd {cwd}: {detail}")]
    Cwd { cwd: String, detail: String },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error("capabilities: {0}")]
    Caps(String),
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// The five capability sets the process ends with.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// A process ready to be started: resolved executable, argv/envp, compiled filters.
pub struct Prepared {
    pub exe: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<(i32, u64, u64)>,
    pub oom_score_adj: Option<i32>,
    pub caps: Option<CapSets>,
    pub no_new_privs: bool,
    pub seccomp: Option<CompiledSeccomp>,
}

/// Converts an OCI capability to the `caps` crate's (both spell it `CAP_X`).
fn cap(c: &oci_spec::runtime::Capability) -> Result<Capability, ProcessError> {
    let name = serde_json::to_string(c)
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    name.parse()
        .map_err(|_| ProcessError::UnknownCapability { name })
}

fn cap_set(set: &Option<oci_spec::runtime::Capabilities>) -> Result<CapsHashSet, ProcessError> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        // Capabilities newer than the caps crate (or the kernel) are skipped, as runc warns and skips.
        if let Ok(c) = cap(c) {
            out.insert(c);
        }
    }
    Ok(out)
}

fn rlimit(r: &PosixRlimit) -> Result<(i32, u64, u64), ProcessError> {
    let name = serde_json::to_string(&r.typ())
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    let res = match name.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return Err(ProcessError::UnknownRlimit { name }),
    };
    Ok((res as i32, r.soft(), r.hard()))
}

/// Pure: the env var `key` from a `KEY=VALUE` list.
pub fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Finds `arg0` the way execvp would, in the (already pivoted) root.
pub fn resolve_exe(arg0: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    let check = |p: &Path| -> Result<Option<PathBuf>, ProcessError> {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                Ok(Some(p.to_path_buf()))
            }
            Ok(m) if m.is_file() => Err(ProcessError::NotExecutable {
                path: p.to_path_buf(),
            }),
            _ => Ok(None),
        }
    };
    if arg0.contains('/') {
        return check(Path::new(arg0))?.ok_or(ProcessError::NotFound { arg0: arg0.into() });
    }
    let path = env_get(env, "PATH")
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        if let Some(p) = check(&Path::new(dir).join(arg0))? {
            return Ok(p);
        }
    }
    Err(ProcessError::NotFound { arg0: arg0.into() })
}

impl Prepared {
    /// Validates and precomputes; call after pivot_root (the executable is looked up in the
    /// container's root).
    pub fn new(
        p: &Process,
        seccomp_profile: Option<&LinuxSeccomp>,
        oom: Option<i32>,
    ) -> Result<Prepared, ProcessError> {
        let args = p.args().clone().unwrap_or_default();
        let mut env = p.env().clone().unwrap_or_default();
        if env_get(&env, "HOME").is_none() {
            env.push("HOME=/".into());
        }
        let arg0 = args.first().cloned().unwrap_or_default();
        let exe = resolve_exe(&arg0, &env)?;
        let caps = match p.capabilities() {
            Some(c) => Some(CapSets {
                bounding: cap_set(c.bounding())?,
                effective: cap_set(c.effective())?,
                permitted: cap_set(c.permitted())?,
                inheritable: cap_set(c.inheritable())?,
                ambient: cap_set(c.ambient())?,
            }),
            None => None,
        };
        let rlimits = p
            .rlimits()
            .iter()
            .flatten()
            .map(rlimit)
            .collect::<Result<_, _>>()?;
        let user = p.user();
        Ok(Prepared {
            exe: cstr(&exe.to_string_lossy()),
            argv: args.iter().map(|a| cstr(a)).collect(),
            envp: env.iter().map(|e| cstr(e)).collect(),
            cwd: p.cwd().to_string_lossy().to_string(),
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask(),
            rlimits,
            oom_score_adj: oom.or(p.oom_score_adj()),
            caps,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            seccomp: seccomp_profile.map(seccomp::compile).transpose()?,
        })
    }

    /// Settings that need full privileges: rlimits (raising hard limits) and the OOM score.
    pub fn apply_privileged(&self) -> Result<(), ProcessError> {
        for (res, soft, hard) in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: *soft,
                rlim_max: *hard,
            };
            // SAFETY: lim is a valid rlimit.
            if unsafe { libc::setrlimit(*res as _, &lim) } != 0 {
                return Err(sys::err("setrlimit", res).into());
            }
        }
        if let Some(adj) = self.oom_score_adj {
            std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| SysError {
                syscall: "write",
                target: "/proc/self/oom_score_adj".into(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// Drops to the process's identity and privileges and execs. Never returns on success.
    pub fn apply_and_exec(&self) -> ProcessError {
        match self.finalize() {
            Ok(()) => {}
            Err(e) => return e,
        }
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .envp
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // SAFETY: argv/envp are NULL-terminated arrays of valid C strings.
        unsafe { libc::execve(self.exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        sys::err("execve", self.exe.to_string_lossy()).into()
    }

    fn finalize(&self) -> Result<(), ProcessError> {
        // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while we have it.
        if !self.no_new_privs {
            if let Some(s) = &self.seccomp {
                seccomp::install(s)?;
            }
        }
        if let Some(c) = &self.caps {
            for cap in caps::all() {
                if !c.bounding.contains(&cap) {
                    // A capability the running kernel does not know cannot be dropped; fine.
                    let _ = caps::drop(None, CapSet::Bounding, cap);
                }
            }
        }
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
        // SAFETY: plain syscalls on our own credentials.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
            {
                return Err(sys::err("setgroups", self.uid).into());
            }
            if libc::setresgid(self.gid, self.gid, self.gid) != 0 {
                return Err(sys::err("setresgid", self.gid).into());
            }
            if libc::setresuid(self.uid, self.uid, self.uid) != 0 {
                return Err(sys::err("setresuid", self.uid).into());
            }
        }
        if let Some(c) = &self.caps {
            // A set asking for a capability the runtime itself lacks fails here (EPERM).
            let err = |set: &'static str| {
                move |e: caps::errors::CapsError| ProcessError::Caps(format!("{set} set: {e}"))
            };
            caps::set(None, CapSet::Effective, &c.effective).map_err(err("effective"))?;
            caps::set(None, CapSet::Permitted, &c.permitted).map_err(err("permitted"))?;
            caps::set(None, CapSet::Inheritable, &c.inheritable).map_err(err("inheritable"))?;
            caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
            for a in &c.ambient {
                // Ambient needs the cap in permitted and inheritable; runc skips it otherwise.
                let _ = caps::raise(None, CapSet::Ambient, *a);
            }
        }
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
        if let Some(m) = self.umask {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(m as libc::mode_t) };
        }
        self.enter_cwd()?;
        if self.no_new_privs {
            // SAFETY: prctl with constant arguments.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(sys::err("prctl", "PR_SET_NO_NEW_PRIVS").into());
            }
            if let Some(s) = &self.seccomp {
                seccomp::install(s)?;
            }
        }
        // Nothing but stdio crosses into the container (CVE-2024-21626).
        sys::cloexec_from(3)?;
        reset_signals();
        Ok(())
    }

    /// chdir to the spec's cwd and check it really is inside the container's root
    /// (an inherited directory fd from the host would show as "(unreachable)").
    fn enter_cwd(&self) -> Result<(), ProcessError> {
        let fail = |d: String| ProcessError::Cwd {
            cwd: self.cwd.clone(),
            detail: d,
        };
        if !self.cwd.starts_with('/') {
            return Err(fail("must be absolute".into()));
        }
        nix::unistd::chdir(self.cwd.as_str()).map_err(|e| fail(e.to_string()))?;
        let now = nix::unistd::getcwd().map_err(|e| fail(e.to_string()))?;
        if !now.is_absolute() || now.to_string_lossy().starts_with("(unreachable)") {
            return Err(fail("outside the container root".into()));
        }
        Ok(())
    }
}

/// Default dispositions and an empty mask, so the container starts like a fresh process.
pub fn reset_signals() {
    // SAFETY: sigset manipulation on local storage, then resetting dispositions.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lookup_takes_last() {
        let env = vec!["A=1".to_string(), "PATH=/x".into(), "A=2".into()];
        assert_eq!(env_get(&env, "A"), Some("2"));
        assert_eq!(env_get(&env, "PAT"), None);
    }

    #[test]
    fn exe_resolution() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(resolve_exe("sh", &env).unwrap(), Path::new("/bin/sh"));
        assert!(matches!(
            resolve_exe("no-such-binary-x", &env),
            Err(ProcessError::NotFound { .. })
        ));
        assert!(matches!(
            resolve_exe("/etc/passwd", &env),
            Err(ProcessError::NotExecutable { .. })
        ));
    }

    #[test]
    fn oci_caps_convert() {
        let c: oci_spec::runtime::Capability = serde_json::from_str("\"CAP_NET_ADMIN\"").unwrap();
        assert_eq!(cap(&c).unwrap(), Capability::CAP_NET_ADMIN);
    }

    #[test]
    fn prepared_from_default_spec() {
        let spec = crate::spec::default_spec(false);
        let mut p = spec.process().clone().unwrap();
        p.set_args(Some(vec!["true".into()]));
        let prep = Prepared::new(&p, None, None).unwrap();
        assert_eq!(prep.caps.as_ref().unwrap().bounding.len(), 3);
        assert_eq!(prep.rlimits, vec![(libc::RLIMIT_NOFILE as i32, 1024, 1024)]);
        assert!(prep.no_new_privs);
    }
}
