//! Named volumes: `<data-root>/volumes/<name>/_data`, created on first use. A new volume is
//! filled from the image's content at its mount point, as Docker does, so `-v data:/etc/x`
//! starts with the image's `/etc/x`. This module only manages directories; it never mounts.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

/// Errors of the volume store.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid volume name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    BadName(String),
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { op, path, source }
}

/// The volume store of one data root.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    pub fn open(data_root: &Path) -> Result<Volumes, VolumeError> {
        let dir = data_root.join("volumes");
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(Volumes { dir })
    }

    /// The host directory holding volume `name`'s content.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// Creates volume `name` if it does not exist. Returns its data path and whether it was
    /// created by this call (`create_dir` is atomic, so two callers cannot both create it).
    pub fn ensure(&self, name: &str) -> Result<(PathBuf, bool), VolumeError> {
        if !crate::container::options::valid_name(name) {
            return Err(VolumeError::BadName(name.into()));
        }
        let vol = self.dir.join(name);
        let created = match fs::create_dir(&vol) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io_err("create directory", &vol)(e)),
        };
        let data = vol.join("_data");
        match fs::create_dir(&data) {
            Ok(()) => {
                fs::set_permissions(&data, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &data))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create directory", &data)(e)),
        }
        Ok((data, created))
    }

    /// Names of every volume.
    pub fn list(&self) -> Result<Vec<String>, VolumeError> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .map_err(io_err("read directory", &self.dir))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("_data").is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Deletes volume `name` and its content.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        let vol = self.dir.join(name);
        if !crate::container::options::valid_name(name) || !vol.is_dir() {
            return Err(VolumeError::NotFound(name.into()));
        }
        fs::remove_dir_all(&vol).map_err(io_err("remove", &vol))
    }
}

/// Copies the content of `from` (a directory in the container's rootfs) into `to`, keeping
/// modes, owners and symlinks. Symlinks are copied as links, never followed, so image content
/// cannot make this read or write outside the two trees.
pub fn copy_up(from: &Path, to: &Path) -> Result<(), VolumeError> {
    let meta = fs::symlink_metadata(from).map_err(io_err("stat", from))?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("chmod", to))?;
    lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(io_err("chown", to))?;
    for entry in fs::read_dir(from).map_err(io_err("read directory", from))? {
        let entry = entry.map_err(io_err("read directory", from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let m = fs::symlink_metadata(&src).map_err(io_err("stat", &src))?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&dst).map_err(io_err("create directory", &dst))?;
            copy_up(&src, &dst)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(io_err("readlink", &src))?;
            symlink(&target, &dst).map_err(io_err("symlink", &dst))?;
            lchown(&dst, Some(m.uid()), Some(m.gid())).map_err(io_err("chown", &dst))?;
        } else if ft.is_file() {
            fs::copy(&src, &dst).map_err(io_err("copy", &src))?;
            lchown(&dst, Some(m.uid()), Some(m.gid())).map_err(io_err("chown", &dst))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(io_err("chmod", &dst))?;
        }
        // devices, fifos and sockets are not copied: a volume holds data
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_once_and_copy_up_keeps_content() {
        let tmp = tempfile::tempdir().unwrap();
        let vols = Volumes::open(tmp.path()).unwrap();
        let (data, created) = vols.ensure("data").unwrap();
        assert!(created && data.is_dir());
        let (_, again) = vols.ensure("data").unwrap();
        assert!(!again);
        assert!(vols.ensure("../x").is_err());

        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "hello").unwrap();
        symlink("sub/f", src.join("link")).unwrap();
        copy_up(&src, &data).unwrap();
        assert_eq!(fs::read_to_string(data.join("sub/f")).unwrap(), "hello");
        assert_eq!(
            fs::read_link(data.join("link")).unwrap(),
            Path::new("sub/f")
        );
        assert_eq!(vols.list().unwrap(), ["data"]);
        vols.remove("data").unwrap();
        assert!(vols.list().unwrap().is_empty());
    }
}
