//! `RUN`: one container per step, made by berth's runtime (`berth-runc run`) on an overlay
//! of the build state with a fresh upper dir — the upper dir becomes the step's layer. The
//! OCI spec comes from the node agent's `container::spec::build`, so a build step gets the
//! same isolation as `berth run` (namespaces, Docker's capabilities, seccomp profile,
//! masked paths). Networking: the host's network namespace by default (a build needs no
//! published ports or DNS names, and it works offline), or only loopback with
//! `network: none` / `RUN --network=none`.
//!
//! Owns nothing after it returns: the mount and the step's directories are removed on
//! every path.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_node_agent::container::options::{NetworkMode, RunOptions};
use berth_node_agent::container::spec::{self as cspec, EtcFiles, SpecInputs};

use crate::mount::Mount;
use crate::{BuildError, io_err};

/// How a build step is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildNetwork {
    /// The host's network namespace.
    #[default]
    Host,
    /// A namespace of its own with loopback only (down).
    None,
}

impl BuildNetwork {
    /// `default`/`host` → host, `none` → none.
    pub fn parse(s: &str) -> Option<BuildNetwork> {
        match s {
            "" | "default" | "host" => Some(BuildNetwork::Host),
            "none" => Some(BuildNetwork::None),
            _ => None,
        }
    }
}

/// One `RUN` to execute.
pub struct RunStep<'a> {
    pub runtime: &'a Path,
    pub run_root: &'a Path,
    /// Layer dirs, top first.
    pub lowers: &'a [PathBuf],
    pub empty: &'a Path,
    /// A fresh directory for this step (upper, work, rootfs, bundle, etc).
    pub work: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub network: BuildNetwork,
    pub shm_size: Option<i64>,
    /// Each line of output as it comes.
    pub output: &'a (dyn Fn(&str) + Sync),
}

/// The upper dir holding the step's changes, and the exit code.
pub struct RunResult {
    pub upper: PathBuf,
    pub code: i32,
}

pub fn run_step(step: &RunStep<'_>) -> Result<RunResult, BuildError> {
    let upper = step.work.join("upper");
    let ovl_work = step.work.join("work");
    let rootfs = step.work.join("rootfs");
    let bundle = step.work.join("bundle");
    let etc = step.work.join("etc");
    for d in [&upper, &ovl_work, &rootfs, &bundle, &etc] {
        fs::create_dir_all(d).map_err(io_err("create directory", d))?;
    }
    let mount = Mount::overlay(step.lowers, Some((&upper, &ovl_work)), step.empty, &rootfs)?;
    let (uid, gid, extra) = resolve_user(&rootfs, &step.user)?;
    // The working directory must exist for the runtime to enter it.
    // Resolved inside the root: a symlink in the image must not lead the mkdir to the host.
    let cwd_host = rootfs.join(crate::copy::resolve_in_root(&rootfs, &step.cwd));
    if !cwd_host.exists() {
        fs::create_dir_all(&cwd_host).map_err(io_err("create directory", &cwd_host))?;
    }
    let etc_files = EtcFiles {
        resolv_conf: etc.join("resolv.conf"),
        hosts: etc.join("hosts"),
        hostname: etc.join("hostname"),
    };
    let resolv = match step.network {
        BuildNetwork::Host => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        BuildNetwork::None => String::new(),
    };
    fs::write(&etc_files.resolv_conf, resolv).map_err(io_err("write", &etc_files.resolv_conf))?;
    fs::write(
        &etc_files.hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    .map_err(io_err("write", &etc_files.hosts))?;
    fs::write(&etc_files.hostname, "berth-build\n")
        .map_err(io_err("write", &etc_files.hostname))?;
    let id = crate::layer::unique("build-");
    let options = RunOptions {
        entrypoint: Some(step.args.clone()),
        env: step.env.clone(),
        workdir: Some(step.cwd.clone()),
        hostname: Some("berth-build".into()),
        network: match step.network {
            BuildNetwork::Host => NetworkMode::Host,
            BuildNetwork::None => NetworkMode::None,
        },
        ..RunOptions::default()
    };
    let spec = cspec::build(&SpecInputs {
        id: &id,
        rootfs: rootfs.clone(),
        image: None,
        options: &options,
        uid,
        gid,
        additional_gids: extra,
        mounts: Vec::new(),
        etc_files: Some(etc_files),
        init_binary: None,
        devices: Vec::new(),
    })
    .map_err(|e| BuildError::Internal(format!("OCI spec of a build step: {e}")))?;
    let mut spec = serde_json::to_value(&spec)
        .map_err(|e| BuildError::Internal(format!("OCI spec of a build step: {e}")))?;
    if let Some(size) = step.shm_size {
        if let Some(mounts) = spec["mounts"].as_array_mut() {
            for m in mounts.iter_mut().filter(|m| m["destination"] == "/dev/shm") {
                m["options"] = serde_json::json!([
                    "nosuid",
                    "noexec",
                    "nodev",
                    "mode=1777",
                    format!("size={}k", (size / 1024).max(1))
                ]);
            }
        }
    }
    let config = bundle.join("config.json");
    fs::write(&config, spec.to_string()).map_err(io_err("write", &config))?;

    let (read_end, write_end) = pipe()?;
    let write_err = write_end
        .try_clone()
        .map_err(io_err("duplicate pipe", step.work))?;
    let mut child = Command::new(step.runtime)
        .arg("--root")
        .arg(step.run_root)
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::from(write_err))
        .spawn()
        .map_err(|source| BuildError::Spawn {
            program: step.runtime.to_owned(),
            source,
        })?;
    // Our copies of the write end are gone with the Command; EOF comes when the
    // container (and anything it left running in it) is gone.
    let reader = BufReader::new(fs::File::from(read_end));
    for line in reader.split(b'\n') {
        let Ok(line) = line else { break };
        (step.output)(String::from_utf8_lossy(&line).trim_end_matches('\r'));
    }
    let status = child.wait().map_err(io_err("wait for", step.runtime))?;
    let code = status.code().unwrap_or(128 + 9);
    mount.unmount()?;
    Ok(RunResult { upper, code })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), BuildError> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own; on success we take
    // ownership of both exactly once.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r != 0 {
        return Err(BuildError::Io {
            op: "pipe",
            path: PathBuf::new(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: both descriptors were just created by pipe2 and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `user[:group]` (names or numbers) → uid, gid, supplementary gids, from the state's
/// `/etc/passwd` and `/etc/group`.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>), BuildError> {
    let read = |p: &str| {
        fs::read_to_string(rootfs.join(crate::copy::resolve_in_root(rootfs, p))).unwrap_or_default()
    };
    lookup_user(spec, &read("etc/passwd"), &read("etc/group"))
}

/// The pure part of [`resolve_user`].
pub fn lookup_user(
    spec: &str,
    passwd: &str,
    group: &str,
) -> Result<(u32, u32, Vec<u32>), BuildError> {
    let spec = if spec.is_empty() { "0" } else { spec };
    let err = |reason: &str| BuildError::User {
        user: spec.to_owned(),
        reason: reason.to_owned(),
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let entry = users.iter().find(|f| f[0] == u);
    let (uid, name, primary) = match (u.parse::<u32>(), entry) {
        (Ok(n), _) => {
            let e = users.iter().find(|f| f[2].parse::<u32>() == Ok(n));
            (n, e.map(|f| f[0]), e.and_then(|f| f[3].parse::<u32>().ok()))
        }
        (Err(_), Some(f)) => (
            f[2].parse::<u32>()
                .map_err(|_| err("bad uid in /etc/passwd"))?,
            Some(f[0]),
            f[3].parse::<u32>().ok(),
        ),
        (Err(_), None) => return Err(err("no such user in the image's /etc/passwd")),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse::<u32>().ok())
                .ok_or_else(|| err("no such group in the image's /etc/group"))?,
        },
        None => primary.unwrap_or(0),
    };
    let extra = match (g, name) {
        (None, Some(name)) => groups
            .iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|x| x == name)))
            .filter_map(|f| f[2].parse::<u32>().ok())
            .filter(|&x| x != gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok((uid, gid, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1001:\n";

    #[test]
    fn users_and_groups() {
        assert_eq!(lookup_user("", PASSWD, GROUP).unwrap(), (0, 0, vec![]));
        assert_eq!(
            lookup_user("app", PASSWD, GROUP).unwrap(),
            (1000, 1001, vec![50])
        );
        assert_eq!(
            lookup_user("1000", PASSWD, GROUP).unwrap(),
            (1000, 1001, vec![50])
        );
        assert_eq!(
            lookup_user("app:staff", PASSWD, GROUP).unwrap(),
            (1000, 50, vec![])
        );
        assert_eq!(
            lookup_user("4242:7", PASSWD, GROUP).unwrap(),
            (4242, 7, vec![])
        );
        assert!(lookup_user("ghost", PASSWD, GROUP).is_err());
        assert!(lookup_user("app:ghosts", PASSWD, GROUP).is_err());
        assert_eq!(BuildNetwork::parse("none"), Some(BuildNetwork::None));
        assert_eq!(BuildNetwork::parse("bridge"), None);
    }
}
