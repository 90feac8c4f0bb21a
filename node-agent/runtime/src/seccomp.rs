//! Seccomp: compiles an OCI `linux.seccomp` profile to classic BPF and installs it.
//!
//! The compiler is `seccompiler` (one match action per filter), so a profile is split into one
//! allow-list filter plus one filter per other action; the kernel runs every installed filter
//! and keeps the most restrictive verdict, which gives exactly the profile's meaning.
//! Syscall names resolve through tables generated from the kernel UAPI headers
//! (`scripts/gen-syscalls.sh`); names unknown on the target arch are skipped, as runc does.
//! This module must not decide *when* to install (that is the init sequence's job).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::OnceLock;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Docker's default profile (allow-list, EPERM by default) in OCI form.
const DEFAULT_PROFILE: &str = include_str!("../data/seccomp-default.json");
const SYSCALLS_X86_64: &str = include_str!("../data/syscalls-x86_64.txt");
const SYSCALLS_AARCH64: &str = include_str!("../data/syscalls-aarch64.txt");

/// Errors while compiling or installing a profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: unsupported architecture {0}")]
    Arch(&'static str),
    #[error("seccomp: action {action} is not supported by berth-runc")]
    UnsupportedAction { action: String },
    #[error("seccomp: syscall {syscall}: {source}")]
    Compile {
        syscall: String,
        source: seccompiler::BackendError,
    },
    #[error("seccomp: building filter: {0}")]
    Filter(seccompiler::BackendError),
    #[error("seccomp: installing filter: {0}")]
    Install(std::io::Error),
}

/// A compiled profile: BPF programs to install in order, plus the `seccomp()` flags.
#[derive(Debug, Clone)]
pub struct CompiledSeccomp {
    pub programs: Vec<BpfProgram>,
    pub flags: u32,
}

/// Docker's default seccomp profile (what `docker run` applies with default capabilities).
pub fn default_seccomp() -> LinuxSeccomp {
    // The data file is part of the binary and checked by a unit test, so this cannot fail.
    serde_json::from_str(DEFAULT_PROFILE).expect("bundled seccomp profile is valid JSON")
}

fn native_arch() -> Result<(TargetArch, &'static str), SeccompError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, SYSCALLS_X86_64)),
        "aarch64" => Ok((TargetArch::aarch64, SYSCALLS_AARCH64)),
        other => Err(SeccompError::Arch(other)),
    }
}

fn syscall_table() -> Result<&'static HashMap<&'static str, i64>, SeccompError> {
    static TABLE: OnceLock<HashMap<&'static str, i64>> = OnceLock::new();
    let (_, text) = native_arch()?;
    Ok(TABLE.get_or_init(|| {
        text.lines()
            .filter_map(|l| {
                let (name, nr) = l.split_once(' ')?;
                Some((name, nr.trim().parse().ok()?))
            })
            .collect()
    }))
}

/// The syscall number of `name` on this machine's architecture, if it has one.
pub fn syscall_number(name: &str) -> Option<i64> {
    syscall_table().ok()?.get(name).copied()
}

fn action_of(
    action: LinuxSeccompAction,
    errno: Option<u32>,
) -> Result<SeccompAction, SeccompError> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction {
                action: "SCMP_ACT_NOTIFY".into(),
            });
        }
    })
}

/// The conditions of one OCI rule, as a seccompiler rule (`None` = unconditional).
fn rule_of(sc: &LinuxSyscall, name: &str) -> Result<Option<SeccompRule>, SeccompError> {
    let args = match sc.args() {
        Some(a) if !a.is_empty() => a,
        _ => return Ok(None),
    };
    let err = |source| SeccompError::Compile {
        syscall: name.to_string(),
        source,
    };
    let mut conds = Vec::with_capacity(args.len());
    for a in args {
        // OCI: for MASKED_EQ `value` is the mask and `valueTwo` the expected value.
        let (op, value) = match a.op() {
            LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, a.value()),
            LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, a.value()),
            LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, a.value()),
            LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, a.value()),
            LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, a.value()),
            LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, a.value()),
            LinuxSeccompOperator::ScmpCmpMaskedEq => (
                SeccompCmpOp::MaskedEq(a.value()),
                a.value_two().unwrap_or(0),
            ),
        };
        let index = u8::try_from(a.index())
            .map_err(|_| err(seccompiler::BackendError::InvalidArgumentNumber))?;
        conds.push(SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(err)?);
    }
    Ok(Some(SeccompRule::new(conds).map_err(err)?))
}

/// Rules per syscall number; an empty list means "always matches".
type RuleMap = BTreeMap<i64, Vec<SeccompRule>>;

/// Compiles `profile` for this machine's architecture.
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledSeccomp, SeccompError> {
    let (arch, _) = native_arch()?;
    let default = action_of(profile.default_action(), profile.default_errno_ret())?;
    // Matches for the allow-list filter, and for each other action its own filter.
    let mut listed: RuleMap = BTreeMap::new();
    let mut per_action: Vec<(SeccompAction, RuleMap)> = Vec::new();
    let mut unconditional: std::collections::HashSet<(usize, i64)> = Default::default();
    for sc in profile.syscalls().iter().flatten() {
        let action = action_of(sc.action(), sc.errno_ret())?;
        if action == default {
            continue;
        }
        for name in sc.names() {
            let Some(nr) = syscall_number(name) else {
                continue;
            };
            let rule = rule_of(sc, name)?;
            if default != SeccompAction::Allow {
                add_chain(
                    &mut listed,
                    &mut unconditional,
                    usize::MAX,
                    nr,
                    rule.clone(),
                );
            }
            if action != SeccompAction::Allow {
                let idx = match per_action.iter().position(|(a, _)| *a == action) {
                    Some(i) => i,
                    None => {
                        per_action.push((action.clone(), BTreeMap::new()));
                        per_action.len() - 1
                    }
                };
                add_chain(&mut per_action[idx].1, &mut unconditional, idx, nr, rule);
            }
        }
    }
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(build(listed, default.clone(), SeccompAction::Allow, arch)?);
    }
    for (action, rules) in per_action {
        if !rules.is_empty() {
            programs.push(build(rules, SeccompAction::Allow, action, arch)?);
        }
    }
    let mut flags = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            // Only meaningful with a notify listener, which berth-runc does not offer.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        };
    }
    Ok(CompiledSeccomp { programs, flags })
}

/// Adds one rule to a filter's map; an unconditional rule wins over conditional ones.
fn add_chain(
    map: &mut RuleMap,
    unconditional: &mut std::collections::HashSet<(usize, i64)>,
    filter: usize,
    nr: i64,
    rule: Option<SeccompRule>,
) {
    if unconditional.contains(&(filter, nr)) {
        return;
    }
    match rule {
        None => {
            unconditional.insert((filter, nr));
            map.insert(nr, Vec::new());
        }
        Some(r) => map.entry(nr).or_default().push(r),
    }
}

fn build(
    rules: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, SeccompError> {
    let filter =
        SeccompFilter::new(rules, mismatch, matched, arch).map_err(SeccompError::Filter)?;
    filter.try_into().map_err(SeccompError::Filter)
}

/// Installs the compiled filters on the calling thread. Needs `no_new_privs` or
/// CAP_SYS_ADMIN; does not set `no_new_privs` itself (the profile decides that).
pub fn install(compiled: &CompiledSeccomp) -> Result<(), SeccompError> {
    for prog in &compiled.programs {
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            // seccompiler's sock_filter is #[repr(C)] with the kernel's layout.
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: fprog points at a live program for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                compiled.flags,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(SeccompError::Install(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_parses_and_is_an_allow_list() {
        let p = default_seccomp();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        let names: Vec<&String> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names())
            .collect();
        assert!(names.iter().any(|n| *n == "read"));
        assert!(
            !names
                .iter()
                .any(|n| *n == "unshare" || *n == "keyctl" || *n == "mount")
        );
    }

    #[test]
    fn default_profile_compiles_to_two_filters() {
        let c = compile(&default_seccomp()).unwrap();
        // The allow-list filter and the ENOSYS filter for clone3.
        assert_eq!(c.programs.len(), 2);
        assert!(c.programs[0].len() > 300);
    }

    #[test]
    fn table_resolves_common_names() {
        assert!(syscall_number("openat").is_some());
        assert!(syscall_number("no_such_syscall").is_none());
    }

    #[test]
    fn notify_is_rejected() {
        let mut p = default_seccomp();
        p.set_default_action(LinuxSeccompAction::ScmpActNotify);
        assert!(matches!(
            compile(&p),
            Err(SeccompError::UnsupportedAction { .. })
        ));
    }

    #[test]
    fn deny_list_profile_has_no_allow_filter() {
        let p: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["keyctl"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let c = compile(&p).unwrap();
        assert_eq!(c.programs.len(), 1);
    }
}
