//! Cgroups: where a container's cgroup lives, creating it, applying `linux.resources`,
//! freezing, listing its processes, statistics and removal — for v1 (including the hybrid
//! layout) and v2, detected at run time.
//!
//! Each controller is its own file writing into a directory it is given, so each is
//! unit-tested against a temp dir. This module must not touch namespaces or processes other
//! than by writing pids into `cgroup.procs`.

mod blkio;
mod cpu;
mod cpuset;
mod devices;
pub mod devices_bpf;
mod freezer;
mod memory;
mod pids;
mod stats;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

pub use stats::{BlkioEntry, CgroupStats, CpuStats, MemoryStats, PidsStats};

/// Errors from cgroup handling, with the file involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup: no cgroup filesystem is mounted")]
    NotMounted,
    #[error("cgroup: {path}: still has processes after {secs}s")]
    Busy { path: PathBuf, secs: u64 },
    #[error("cgroup: {path}: freezing did not complete")]
    FreezeTimeout { path: PathBuf },
    #[error("cgroup: {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to `dir/file`.
pub(crate) fn write(dir: &Path, file: &str, value: impl AsRef<str>) -> Result<(), CgroupError> {
    let p = dir.join(file);
    fs::write(&p, value.as_ref()).map_err(io_err(&p))
}

/// Reads `dir/file` trimmed.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let p = dir.join(file);
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(io_err(&p))
}

/// Which hierarchy this machine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2 mounted at the given root.
    V2 { root: PathBuf },
    /// v1 controllers, each with its mount point (co-mounted controllers share one).
    V1 { mounts: Vec<(String, PathBuf)> },
}

const V1_CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer",
];

impl Layout {
    /// Detects the layout from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Layout, CgroupError> {
        let p = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(p).map_err(io_err(p))?;
        Self::from_mountinfo(&text)
    }

    /// Pure: the layout a mountinfo text describes. A cgroup2 mount counts as the
    /// hierarchy only when no v1 controller is mounted (hybrid machines use v1).
    pub fn from_mountinfo(text: &str) -> Result<Layout, CgroupError> {
        let mut v2 = None;
        let mut mounts = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 5 || r.len() < 3 {
                continue;
            }
            let mount_point = PathBuf::from(l[4]);
            match r[0] {
                "cgroup2" if v2.is_none() => v2 = Some(mount_point),
                "cgroup" => {
                    for opt in r[2].split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            mounts.push((opt.to_string(), mount_point.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        if !mounts.is_empty() {
            Ok(Layout::V1 { mounts })
        } else if let Some(root) = v2 {
            Ok(Layout::V2 { root })
        } else {
            Err(CgroupError::NotMounted)
        }
    }
}

/// Turns the spec's `cgroupsPath` into a path below the hierarchy root. The systemd form
/// `slice:prefix:name` (what dockerd sends with `--systemd-cgroup`) maps to the directory
/// systemd would use, created with the cgroupfs driver.
pub fn normalize_path(cgroups_path: Option<&Path>, id: &str) -> Result<PathBuf, CgroupError> {
    let Some(p) = cgroups_path else {
        return Ok(PathBuf::from("/berth").join(id));
    };
    let s = p.to_string_lossy();
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() == 3 && !s.starts_with('/') {
        let (slice, prefix, name) = (parts[0], parts[1], parts[2]);
        let mut out = PathBuf::from("/");
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        // "a-b.slice" lives in "a.slice/a-b.slice".
        let stem = slice.trim_end_matches(".slice");
        let mut acc = String::new();
        for (i, part) in stem.split('-').enumerate() {
            if i > 0 {
                acc.push('-');
            }
            acc.push_str(part);
            out.push(format!("{acc}.slice"));
        }
        let leaf = if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        out.push(leaf);
        return Ok(out);
    }
    if s.split('/').any(|c| c == "..") {
        return Err(CgroupError::Invalid {
            what: "cgroupsPath",
            detail: format!("{s} must not contain '..'"),
        });
    }
    Ok(Path::new("/").join(p))
}

/// One container's cgroup, in whichever hierarchy the machine uses.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Path relative to the hierarchy root, e.g. `/berth/web`.
    pub path: PathBuf,
    pub layout: Layout,
}

impl Cgroup {
    pub fn new(layout: Layout, path: PathBuf) -> Cgroup {
        Cgroup { path, layout }
    }

    fn join(root: &Path, rel: &Path) -> PathBuf {
        root.join(rel.strip_prefix("/").unwrap_or(rel))
    }

    /// The directory of `controller` (v1) or the unified directory (v2).
    pub fn dir(&self, controller: &str) -> Option<PathBuf> {
        match &self.layout {
            Layout::V2 { root } => Some(Self::join(root, &self.path)),
            Layout::V1 { mounts } => mounts
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, m)| Self::join(m, &self.path)),
        }
    }

    /// Every distinct directory of this cgroup (v1: one per mounted hierarchy).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = match &self.layout {
            Layout::V2 { root } => vec![Self::join(root, &self.path)],
            Layout::V1 { mounts } => mounts
                .iter()
                .map(|(_, m)| Self::join(m, &self.path))
                .collect(),
        };
        out.dedup();
        out
    }

    pub fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2 { .. })
    }

    /// Creates the directories (enabling v2 controllers on the way down).
    pub fn create(&self) -> Result<(), CgroupError> {
        // Another runtime (or an administrator) may remove an empty parent between our
        // mkdirs: start over a few times when a level vanished under us.
        let mut attempt = 0;
        loop {
            match self.create_once() {
                Err(CgroupError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound && attempt < 5 =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn create_once(&self) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V2 { root } => {
                let mut cur = root.clone();
                for comp in self.path.components().skip(1) {
                    enable_v2_controllers(&cur);
                    cur.push(comp);
                    mkdir(&cur)?;
                }
            }
            Layout::V1 { mounts } => {
                for (c, m) in mounts {
                    let d = Self::join(m, &self.path);
                    if c == "cpuset" {
                        cpuset::create_v1(m, &self.path)?;
                    } else {
                        fs::create_dir_all(&d).map_err(io_err(&d))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies the spec's resources. Missing controllers are skipped only when the spec
    /// does not ask for them.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.apply_inner(res, true)
    }

    /// Like [`Cgroup::apply`] but leaves device rules as they are (for live updates).
    pub fn apply_without_devices(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.apply_inner(res, false)
    }

    fn apply_inner(&self, res: &LinuxResources, devices: bool) -> Result<(), CgroupError> {
        let need = |c: &'static str| {
            self.dir(c).ok_or(CgroupError::Invalid {
                what: "controller",
                detail: format!("{c} is not mounted"),
            })
        };
        if self.is_v2() {
            let d = need("memory")?;
            if let Some(m) = res.memory() {
                memory::apply_v2(&d, m)?;
            }
            if let Some(c) = res.cpu() {
                cpu::apply_v2(&d, c)?;
                cpuset::apply(&d, c)?;
            }
            if let Some(p) = res.pids() {
                pids::apply(&d, p)?;
            }
            if let Some(b) = res.block_io() {
                blkio::apply_v2(&d, b)?;
            }
            if devices {
                let mut rules: Vec<devices_bpf::Rule> = res
                    .devices()
                    .iter()
                    .flatten()
                    .filter_map(devices_bpf::rule_of)
                    .collect();
                rules.extend(devices_bpf::default_rules());
                devices_bpf::apply(&d, &rules)?;
            }
        } else {
            if let Some(m) = res.memory() {
                memory::apply_v1(&need("memory")?, m)?;
            }
            if let Some(c) = res.cpu() {
                cpu::apply_v1(&need("cpu")?, c)?;
                cpuset::apply(&need("cpuset")?, c)?;
            }
            if let Some(p) = res.pids() {
                pids::apply(&need("pids")?, p)?;
            }
            if let Some(b) = res.block_io() {
                blkio::apply_v1(&need("blkio")?, b)?;
            }
            if let Some(d) = self.dir("devices").filter(|_| devices) {
                devices::apply_v1(&d, res.devices().as_deref().unwrap_or(&[]))?;
            }
        }
        Ok(())
    }

    /// Moves `pid` into the cgroup (every hierarchy).
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            write(&d, "cgroup.procs", pid.to_string())?;
        }
        Ok(())
    }

    /// The pids in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let d = self
            .dir("pids")
            .or_else(|| self.dirs().into_iter().next())
            .ok_or(CgroupError::NotMounted)?;
        let text = read(&d, "cgroup.procs")?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.freezer_dir().map(|(d, v2)| freezer::freeze(&d, v2))?
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.freezer_dir().map(|(d, v2)| freezer::thaw(&d, v2))?
    }

    pub fn is_frozen(&self) -> bool {
        self.freezer_dir()
            .map(|(d, v2)| freezer::is_frozen(&d, v2))
            .unwrap_or(false)
    }

    fn freezer_dir(&self) -> Result<(PathBuf, bool), CgroupError> {
        self.dir("freezer")
            .map(|d| (d, self.is_v2()))
            .ok_or(CgroupError::Invalid {
                what: "controller",
                detail: "freezer is not mounted".into(),
            })
    }

    /// Memory, CPU and pids figures for `berth stats`.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        if self.is_v2() {
            let d = self.dir("memory").ok_or(CgroupError::NotMounted)?;
            stats::read_v2(&d)
        } else {
            let mut s = stats::read_v1(
                self.dir("memory").as_deref(),
                self.dir("cpuacct").as_deref(),
                self.dir("pids").as_deref(),
            )?;
            if let Some(d) = self.dir("blkio") {
                s.blkio = stats::read_blkio_v1(&d);
            }
            Ok(s)
        }
    }

    /// Removes the directories, waiting up to `timeout` for exiting processes to leave.
    pub fn destroy(&self, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        // (kill_all_and_wait thaws before killing; this covers a frozen, already empty cgroup)
        if self.is_frozen() {
            let _ = self.thaw();
        }
        for d in self.dirs() {
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        if start.elapsed() > timeout {
                            return Err(CgroupError::Busy {
                                path: d,
                                secs: timeout.as_secs(),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(CgroupError::Io { path: d, source: e }),
                }
            }
        }
        Ok(())
    }
}

fn mkdir(p: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(p) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(CgroupError::Io {
            path: p.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Makes the parent's available controllers usable by its children (best effort: a
/// controller the kernel refuses, e.g. because of internal processes, is left out).
fn enable_v2_controllers(dir: &Path) {
    let Ok(avail) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    for c in avail.split_whitespace() {
        if ["memory", "cpu", "cpuset", "pids", "io"].contains(&c) {
            let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

/// `-1` (or any negative) means "no limit" in the spec; both versions spell it differently.
pub(crate) fn limit_v2(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    #[test]
    fn hybrid_is_v1() {
        let l = Layout::from_mountinfo(HYBRID).unwrap();
        let Layout::V1 { mounts } = l else {
            panic!("expected v1")
        };
        assert!(
            mounts
                .iter()
                .any(|(c, p)| c == "memory" && p == Path::new("/sys/fs/cgroup/memory"))
        );
        assert!(
            mounts
                .iter()
                .any(|(c, p)| c == "cpuacct" && p == Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
    }

    #[test]
    fn pure_v2() {
        let l =
            Layout::from_mountinfo("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw").unwrap();
        assert_eq!(
            l,
            Layout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert!(matches!(
            Layout::from_mountinfo(""),
            Err(CgroupError::NotMounted)
        ));
    }

    #[test]
    fn paths() {
        assert_eq!(normalize_path(None, "a").unwrap(), Path::new("/berth/a"));
        assert_eq!(
            normalize_path(Some(Path::new("docker/x")), "x").unwrap(),
            Path::new("/docker/x")
        );
        assert_eq!(
            normalize_path(Some(Path::new("system.slice:docker:abc")), "abc").unwrap(),
            Path::new("/system.slice/docker-abc.scope")
        );
        assert_eq!(
            normalize_path(Some(Path::new("a-b.slice:p:n")), "n").unwrap(),
            Path::new("/a.slice/a-b.slice/p-n.scope")
        );
        assert!(normalize_path(Some(Path::new("/x/../../etc")), "n").is_err());
    }

    #[test]
    fn dirs_per_controller() {
        let cg = Cgroup::new(Layout::from_mountinfo(HYBRID).unwrap(), "/berth/c1".into());
        assert_eq!(
            cg.dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/berth/c1")
        );
        assert!(cg.dir("pids").is_none());
    }
}
