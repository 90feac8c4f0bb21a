//! Namespaces: which ones a spec asks for, joining by path and unsharing the rest, and
//! writing user-namespace id maps. Called only from forked children (and the parent for
//! the id maps), never from a multi-threaded process.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::sys::{self, SysError, SysResult};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("namespace {typ}: {detail}")]
    Invalid { typ: String, detail: String },
}

/// Pure: the clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The `/proc/PID/ns/` file name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// What a spec asks for: namespaces to create and ones to join (opened up front, so
/// joining the mount namespace first cannot hide the others' paths).
#[derive(Debug)]
pub struct Plan {
    pub new: CloneFlags,
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan, NamespaceError> {
        let mut plan = Plan {
            new: CloneFlags::empty(),
            join: Vec::new(),
        };
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut seen = Vec::new();
        for n in list {
            if seen.contains(&n.typ()) {
                return Err(NamespaceError::Invalid {
                    typ: proc_name(n.typ()).into(),
                    detail: "listed twice".into(),
                });
            }
            seen.push(n.typ());
            match n.path() {
                Some(p) if !p.as_os_str().is_empty() => plan.join.push((n.typ(), p.clone())),
                _ => plan.new |= flag(n.typ()),
            }
        }
        Ok(plan)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(flag(t)) || self.join.iter().any(|(x, _)| *x == t)
    }

    pub fn new_userns(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }
}

/// Opened namespace files, user first and mount last (the order setns must follow).
pub fn open_ordered(
    join: &[(LinuxNamespaceType, PathBuf)],
) -> SysResult<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let rank = |t: LinuxNamespaceType| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    };
    let mut v = join.to_vec();
    v.sort_by_key(|(t, _)| rank(*t));
    v.into_iter()
        .map(|(t, p)| {
            fs::File::open(&p)
                .map(|f| (t, OwnedFd::from(f)))
                .map_err(|e| SysError {
                    syscall: "open",
                    target: p.display().to_string(),
                    source: e,
                })
        })
        .collect()
}

pub fn setns(t: LinuxNamespaceType, fd: &OwnedFd) -> SysResult<()> {
    nix::sched::setns(fd, flag(t)).map_err(|e| sys::errno_err("setns", proc_name(t), e))
}

pub fn unshare(flags: CloneFlags) -> SysResult<()> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags).map_err(|e| sys::errno_err("unshare", format!("{flags:?}"), e))
}

/// Pure: the text of a uid_map/gid_map file.
pub fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes the id maps of `pid`'s user namespace (done by the parent, which is privileged
/// in the outer namespace).
pub fn write_id_maps(pid: i32, spec: &Spec) -> SysResult<()> {
    let linux = spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
        if maps.is_empty() {
            continue;
        }
        let p = format!("/proc/{pid}/{file}");
        fs::write(&p, map_text(&maps)).map_err(|e| SysError {
            syscall: "write",
            target: p,
            source: e,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_from_default_spec() {
        let spec = crate::spec::default_spec(false);
        let plan = Plan::from_spec(&spec).unwrap();
        assert!(plan.new.contains(
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET
        ));
        assert!(!plan.new_userns());
        assert!(plan.join.is_empty());
    }

    #[test]
    fn map_lines() {
        let m = oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(1000u32)
            .size(1u32)
            .build()
            .unwrap();
        assert_eq!(map_text(&[m]), "0 1000 1\n");
    }
}
