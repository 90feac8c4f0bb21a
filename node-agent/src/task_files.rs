//! Compose secrets and configs in a task's container: the files a service asks for
//! (`secrets:` at `/run/secrets/<name>`, `configs:` at their target or `/<name>`) are written,
//! with the requested owner and mode, into a tmpfs mounted for the task alone under
//! `<files-root>/<task id>`, and bind-mounted read-only from there into the container. The
//! contents never touch a disk on this node.
//!
//! Where the contents come from is the caller's ([`FileSource`]: the daemon opens them from
//! the replicated store or asks a manager for the tasks placed here). This module decides
//! the layout ([`wanted`], pure), makes and removes the tmpfs ([`materialize`], [`release`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use berth_spec::App;
use berth_spec::model::{FileRef, Service};

use crate::container::options::{MountKind, MountSpec};

/// The contents of an app's secrets and configs a task needs, by their top-level key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFiles {
    pub secrets: BTreeMap<String, Vec<u8>>,
    pub configs: BTreeMap<String, Vec<u8>>,
}

/// Fetches the contents for a task (by id, in `project`). Errors are one line for the
/// task's status.
pub trait FileSource: Send + Sync + std::fmt::Debug {
    fn fetch<'a>(
        &'a self,
        task_id: &'a str,
        project: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<TaskFiles, String>> + Send + 'a>>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Config,
}

/// One file a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub kind: Kind,
    /// The top-level key.
    pub name: String,
    /// The absolute path in the container.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// The files `svc` asks for, with Compose's defaults: secrets at `/run/secrets/<name>` (a
/// relative target is under `/run/secrets`), configs at `/<name>`; owner 0:0, mode 0444.
pub fn wanted(app: &App, svc: &Service) -> Result<Vec<FileMount>, String> {
    let mut out = Vec::new();
    for (kind, refs) in [(Kind::Secret, &svc.secrets), (Kind::Config, &svc.configs)] {
        for r in refs {
            out.push(file_mount(app, kind, r)?);
        }
    }
    Ok(out)
}

fn file_mount(app: &App, kind: Kind, r: &FileRef) -> Result<FileMount, String> {
    let (word, defined) = match kind {
        Kind::Secret => ("secret", app.secrets.contains_key(&r.source)),
        Kind::Config => ("config", app.configs.contains_key(&r.source)),
    };
    if !defined {
        return Err(format!("{word} {:?} is not defined in the app", r.source));
    }
    let target = match (kind, r.target.as_deref()) {
        (_, Some(t)) if t.starts_with('/') => t.to_owned(),
        (Kind::Secret, Some(t)) => format!("/run/secrets/{t}"),
        (Kind::Secret, None) => format!("/run/secrets/{}", r.source),
        (Kind::Config, Some(t)) => format!("/{t}"),
        (Kind::Config, None) => format!("/{}", r.source),
    };
    if target.split('/').any(|part| part == "..") {
        return Err(format!(
            "{word} {}: target {target:?} leaves its root",
            r.source
        ));
    }
    let id = |v: &Option<String>, what: &str| -> Result<u32, String> {
        v.as_deref().map_or(Ok(0), |s| {
            s.parse()
                .map_err(|_| format!("{word} {}: {what} {s:?} is not a number", r.source))
        })
    };
    Ok(FileMount {
        kind,
        name: r.source.clone(),
        target,
        uid: id(&r.uid, "uid")?,
        gid: id(&r.gid, "gid")?,
        mode: r.mode.map_or(0o444, |m| m.0 & 0o7777),
    })
}

/// The task's tmpfs directory.
pub fn task_dir(root: &Path, task_id: &str) -> PathBuf {
    root.join(task_id)
}

/// Mounts a tmpfs for the task (unless one is there), writes every file of `mounts` from
/// `files` with its owner and mode, and returns the read-only bind mounts for the container.
pub fn materialize(
    root: &Path,
    task_id: &str,
    mounts: &[FileMount],
    files: &TaskFiles,
) -> Result<Vec<MountSpec>, String> {
    let dir = task_dir(root, task_id);
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", dir.display());
    std::fs::create_dir_all(&dir).map_err(|e| fail("creating", &e))?;
    if !is_mount_point(&dir) {
        nix::mount::mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some("mode=0711,size=16m"),
        )
        .map_err(|e| fail("mounting a tmpfs on", &e))?;
    }
    let mut specs = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let (word, content) = match m.kind {
            Kind::Secret => ("secret", files.secrets.get(&m.name)),
            Kind::Config => ("config", files.configs.get(&m.name)),
        };
        let content = content.ok_or_else(|| format!("{word} {} has no content here", m.name))?;
        // One file per mount (two mounts of one secret may differ in owner or mode).
        let path = dir.join(format!("{i}-{word}-{}", m.name));
        let _ = std::fs::remove_file(&path);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::io::Write::write_all(&mut f, content)?;
            std::os::unix::fs::chown(&path, Some(m.uid), Some(m.gid))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m.mode))
        };
        write().map_err(|e| format!("writing {word} {}: {e}", m.name))?;
        specs.push(MountSpec {
            kind: MountKind::Bind,
            source: path.display().to_string(),
            destination: m.target.clone(),
            read_only: true,
            propagation: None,
            create_host_path: false,
            no_copy: false,
        });
    }
    Ok(specs)
}

/// Unmounts and removes the task's tmpfs, if it has one.
pub fn release(root: &Path, task_id: &str) {
    let dir = task_dir(root, task_id);
    if is_mount_point(&dir) {
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn is_mount_point(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = dir.display().to_string();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| p == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compose.yaml");
        std::fs::write(&path, yaml).unwrap();
        let options = berth_spec::loader::LoadOptions {
            files: vec![path],
            project_name: Some("p".into()),
            working_dir: dir.path().to_owned(),
            ..Default::default()
        };
        berth_spec::loader::load(&options).unwrap().app
    }

    #[test]
    fn targets_owners_and_modes_follow_compose_defaults() {
        let app = app(concat!(
            "services:\n  s:\n    image: x\n    secrets:\n      - a\n",
            "      - {source: b, target: bee, uid: '10', gid: '20', mode: 0400}\n",
            "    configs:\n      - c\n      - {source: d, target: /etc/d.conf}\n",
            "secrets:\n  a: {file: ./a}\n  b: {environment: B}\n",
            "configs:\n  c: {content: hi}\n  d: {content: there}\n",
        ));
        let got = wanted(&app, &app.services["s"]).unwrap();
        let view: Vec<_> = got
            .iter()
            .map(|m| (m.target.as_str(), m.uid, m.gid, m.mode))
            .collect();
        assert_eq!(
            view,
            vec![
                ("/run/secrets/a", 0, 0, 0o444),
                ("/run/secrets/bee", 10, 20, 0o400),
                ("/c", 0, 0, 0o444),
                ("/etc/d.conf", 0, 0, 0o444),
            ]
        );
    }

    #[test]
    fn an_undefined_secret_or_an_escaping_target_is_refused() {
        let app = app(concat!(
            "services:\n  s:\n    image: x\n    secrets:\n      - {source: a, target: ../../etc/passwd}\n",
            "secrets:\n  a: {file: ./a}\n",
        ));
        let err = wanted(&app, &app.services["s"]).unwrap_err();
        assert!(err.contains("leaves its root"), "{err}");
    }
}
