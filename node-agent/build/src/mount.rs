//! Overlay mounts of a build state: read-only views (to read files for `COPY --from`, to
//! look at the destination of a `COPY`) and writable ones whose upper dir becomes the next
//! layer (`RUN`). A [`Mount`] unmounts itself when dropped, so a failing step never leaves
//! a mount behind. Must not start processes.

use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use crate::BuildError;

/// A mounted overlay, unmounted on drop.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    mounted: bool,
}

impl Mount {
    /// Mounts `lowers` (top first) on `target`, with `upper`/`work` when writable. A read-only
    /// overlay needs two lower dirs, so `empty` is added below a single one; with no lower
    /// at all the empty dir is the only one.
    pub fn overlay(
        lowers: &[PathBuf],
        writable: Option<(&Path, &Path)>,
        empty: &Path,
        target: &Path,
    ) -> Result<Mount, BuildError> {
        let mut list: Vec<&Path> = Vec::new();
        for dir in lowers {
            // overlayfs refuses a repeated lowerdir; the topmost copy gives the same tree.
            if !list.contains(&dir.as_path()) {
                list.push(dir);
            }
        }
        if list.is_empty() || (list.len() == 1 && writable.is_none()) {
            list.push(empty);
        }
        let mut data = String::from("lowerdir=");
        for (i, dir) in list.iter().enumerate() {
            let s = dir.to_str().ok_or_else(|| bad_path(dir))?;
            if s.contains([',', ':']) {
                return Err(bad_path(dir));
            }
            if i > 0 {
                data.push(':');
            }
            data.push_str(s);
        }
        if let Some((upper, work)) = writable {
            for p in [upper, work] {
                let s = p.to_str().ok_or_else(|| bad_path(p))?;
                if s.contains([',', ':']) {
                    return Err(bad_path(p));
                }
            }
            data.push_str(&format!(
                ",upperdir={},workdir={}",
                upper.display(),
                work.display()
            ));
        }
        // The classic mount(2) carries the options in one page.
        if data.len() >= 4000 {
            return Err(BuildError::TooManyLayers { layers: list.len() });
        }
        let flags = if writable.is_some() {
            MountFlags::empty()
        } else {
            MountFlags::RDONLY
        };
        let data = std::ffi::CString::new(data).map_err(|_| bad_path(target))?;
        rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str()).map_err(
            |e| BuildError::Mount {
                target: target.to_owned(),
                source: e.into(),
            },
        )?;
        Ok(Mount {
            target: target.to_owned(),
            mounted: true,
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure (drop would only try).
    pub fn unmount(mut self) -> Result<(), BuildError> {
        self.mounted = false;
        unmount(&self.target)
    }
}

fn unmount(target: &Path) -> Result<(), BuildError> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(target, UnmountFlags::DETACH)
            .map_err(|e| BuildError::Unmount {
                target: target.to_owned(),
                source: e.into(),
            }),
        Err(e) => Err(BuildError::Unmount {
            target: target.to_owned(),
            source: e.into(),
        }),
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount(&self.target);
        }
    }
}

fn bad_path(p: &Path) -> BuildError {
    BuildError::BadPath { path: p.to_owned() }
}
