//! Bundle specs: loading `config.json` and generating the default one (`berth-runc spec`).
//!
//! The default is runc's (busybox-friendly: `sh`, three capabilities, read-only root) plus
//! Docker's default seccomp profile, so a bare bundle gets the isolation `docker run` gives.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceType, Spec};

use crate::seccomp::default_seccomp;

const DEFAULT_SPEC: &str = include_str!("../data/spec-default.json");

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{path}: {source}")]
    Load {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("{path}: {source}")]
    Save {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error("config.json: {0}")]
    Invalid(String),
}

/// runc's default spec with Docker's seccomp profile; `rootless` maps the caller's ids
/// into a user namespace and drops what an unprivileged user cannot set up.
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec: Spec = serde_json::from_str(DEFAULT_SPEC).expect("bundled default spec is valid");
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(Some(default_seccomp()));
    }
    if rootless {
        make_rootless(&mut spec);
    }
    spec
}

fn make_rootless(spec: &mut Spec) {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let map = |host: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(1u32)
            .build()
            .expect("complete id mapping")
    };
    if let Some(linux) = spec.linux_mut() {
        let mut ns: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                n.typ() != LinuxNamespaceType::Network && n.typ() != LinuxNamespaceType::Cgroup
            })
            .collect();
        ns.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .expect("namespace"),
        );
        linux.set_namespaces(Some(ns));
        linux.set_uid_mappings(Some(vec![map(uid)]));
        linux.set_gid_mappings(Some(vec![map(gid)]));
        linux.set_resources(None);
    }
    if let Some(mounts) = spec.mounts_mut() {
        mounts.retain(|m| m.typ().as_deref() != Some("cgroup"));
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/dev/pts") {
                if let Some(o) = m.options_mut() {
                    o.retain(|x| x != "gid=5");
                }
            }
            if m.destination() == Path::new("/sys") {
                // sysfs cannot be mounted without a network namespace of our own.
                m.set_typ(Some("none".into()));
                m.set_source(Some("/sys".into()));
                m.set_options(Some(vec![
                    "rbind".into(),
                    "nosuid".into(),
                    "noexec".into(),
                    "nodev".into(),
                    "ro".into(),
                ]));
            }
        }
    }
}

/// Loads `bundle/config.json` and checks what the runtime relies on.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let spec = Spec::load(&path).map_err(|e| SpecError::Load {
        path: path.clone(),
        source: e,
    })?;
    validate(&spec)?;
    Ok(spec)
}

/// Pure checks: a process with args, a root path.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let args = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default();
    if args.is_empty() {
        return Err(SpecError::Invalid("process.args must not be empty".into()));
    }
    if spec.root().is_none() {
        return Err(SpecError::Invalid("root.path is required".into()));
    }
    Ok(())
}

/// Writes the default spec to `bundle/config.json`, refusing to overwrite one.
pub fn write_default(bundle: &Path, rootless: bool) -> Result<PathBuf, SpecError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(SpecError::Exists { path });
    }
    let text = serde_json::to_string_pretty(&default_spec(rootless))
        .map_err(|e| SpecError::Invalid(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(|e| SpecError::Save {
        path: path.clone(),
        source: e.into(),
    })?;
    Ok(path)
}

/// The rootfs path: relative ones are relative to the bundle.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| "rootfs".into());
    if p.is_absolute() { p } else { bundle.join(p) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_has_seccomp() {
        let s = default_spec(false);
        validate(&s).unwrap();
        assert!(s.linux().as_ref().unwrap().seccomp().is_some());
        let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
    }

    #[test]
    fn rootless_maps_ids_and_drops_netns() {
        let s = default_spec(true);
        let l = s.linux().as_ref().unwrap();
        let ns = l.namespaces().clone().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert_eq!(l.uid_mappings().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn empty_args_rejected() {
        let mut s = default_spec(false);
        s.process_mut().as_mut().unwrap().set_args(Some(vec![]));
        assert!(validate(&s).is_err());
    }
}
