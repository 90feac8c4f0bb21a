//! Volumes: `<data-root>/volumes/<name>/_data`, with `<name>/volume.json` (creation time,
//! labels, whether it is anonymous). Named volumes are created on first use or by
//! `volume create`; anonymous ones (`-v /data`, an image's `VOLUME`) get a random 64-hex name.
//! A new volume is filled from the image's content at its mount point, as Docker does, so
//! `-v data:/etc/x` starts with the image's `/etc/x`. A volume is deleted only when asked
//! (`volume rm`, `prune`, `rm -v`, `down -v`). This module only manages directories; it
//! never mounts and does not know which containers use a volume.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What berth keeps about a volume besides its content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeMeta {
    /// RFC 3339.
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// Made for one container (`-v /path`, image `VOLUME`): removed with it by `rm -v` and
    /// `--rm`, and by a plain `volume prune`.
    pub anonymous: bool,
}

/// A volume as `volume ls`/`inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub mountpoint: PathBuf,
    pub meta: VolumeMeta,
}

const META_FILE: &str = "volume.json";

/// A new anonymous volume name: 64 hex digits, like Docker's.
pub fn anonymous_name() -> io::Result<String> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b))?;
    Ok(hex::encode(b))
}

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

    /// Creates volume `name` if it does not exist, with `meta` (kept as it was when the volume
    /// exists). Returns its data path and whether it was created by this call.
    pub fn ensure_with(
        &self,
        name: &str,
        meta: &VolumeMeta,
    ) -> Result<(PathBuf, bool), VolumeError> {
        let (data, created) = self.ensure(name)?;
        if created {
            let path = self.dir.join(name).join(META_FILE);
            let json = serde_json::to_vec_pretty(meta).map_err(|e| VolumeError::Io {
                op: "encode",
                path: path.clone(),
                source: io::Error::other(e),
            })?;
            fs::write(&path, json).map_err(io_err("write", &path))?;
        }
        Ok((data, created))
    }

    /// What is known of volume `name`.
    pub fn inspect(&self, name: &str) -> Result<VolumeInfo, VolumeError> {
        let vol = self.dir.join(name);
        if !crate::container::options::valid_name(name) || !vol.join("_data").is_dir() {
            return Err(VolumeError::NotFound(name.into()));
        }
        let meta = fs::read(vol.join(META_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(VolumeInfo {
            name: name.to_string(),
            mountpoint: vol.join("_data"),
            meta,
        })
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
        let meta = VolumeMeta {
            created: "2026-01-01T00:00:00Z".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
            anonymous: true,
        };
        let anon = anonymous_name().unwrap();
        assert_eq!(anon.len(), 64);
        vols.ensure_with(&anon, &meta).unwrap();
        assert_eq!(vols.inspect(&anon).unwrap().meta, meta);
        // an existing volume keeps what it had
        vols.ensure_with("data", &meta).unwrap();
        assert!(!vols.inspect("data").unwrap().meta.anonymous);
        assert!(vols.inspect("nope").is_err());
        vols.remove(&anon).unwrap();
        vols.remove("data").unwrap();
        assert!(vols.list().unwrap().is_empty());
    }
}
