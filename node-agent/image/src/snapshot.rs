//! Snapshots: every layer unpacked once into its own directory keyed by its diff_id and
//! shared by all images that contain it, and per-container overlay root filesystems built
//! on them (`lowerdir` = the image's layers, a private `upperdir` + `workdir`).
//!
//! Layout under the store root: `snapshots/layers/<diff_id hex>/` (read-only lower layers),
//! `snapshots/tmp/` (unpacks in progress, renamed into `layers/` when complete and synced),
//! `snapshots/empty/` (the lower of an image without layers), and
//! `snapshots/containers/<id>/{upper,work,rootfs,snapshot.json}`.
//!
//! Everything here is plain blocking code, mount syscalls included: an async caller runs it
//! on a blocking thread. It must not start processes or change namespaces.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci_spec::image::Descriptor;
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, VerifyingReader};
use crate::fsutil;
use crate::images::Image;
use crate::manifest::descriptor_digest;
use crate::store::{Store, StoreError};
use crate::unpack::{UnpackError, UnpackOptions, unpack_layer};

/// Errors from unpacking layers and preparing container root filesystems.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unpacking layer {layer}: {source}")]
    Unpack { layer: Digest, source: UnpackError },
    #[error("layer {layer} unpacked to diff_id {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("image {image} has {layers} layers but {diff_ids} diff_ids in its config")]
    LayerCountMismatch {
        image: Digest,
        layers: usize,
        diff_ids: usize,
    },
    #[error("invalid container id {id:?}: use 1-128 of [A-Za-z0-9_.-], starting alphanumeric")]
    BadContainerId { id: String },
    #[error("path {path} cannot be used in an overlay mount (contains ',' or ':')")]
    BadPath { path: PathBuf },
    #[error(
        "image has too many layers for one overlay mount on this kernel ({layers}; beyond a page of options needs Linux 6.8+)"
    )]
    TooManyLayers { layers: usize },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("mount overlay on {target}: {source}")]
    Mount { target: PathBuf, source: io::Error },
    #[error("unmount {target}: {source}")]
    Unmount { target: PathBuf, source: io::Error },
}

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.into();
    move |source| SnapshotError::Io { op, path, source }
}

/// A mounted container root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsPath {
    pub container_id: String,
    /// The overlay mount point: the container's `/`.
    pub path: PathBuf,
}

/// What `snapshot.json` records for a container, so garbage collection keeps its layers
/// even after the image is removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSnapshot {
    pub container_id: String,
    /// The image record target it was prepared from.
    pub image: Digest,
    /// diff_ids, base first.
    pub layers: Vec<Digest>,
}

/// Unpacks layers and manages container root filesystems for one store.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    store: Store,
    dir: PathBuf,
    options: UnpackOptions,
}

impl Snapshotter {
    /// A snapshotter with the default unpack policy (devices and ownership when root).
    pub fn new(store: &Store) -> Result<Self> {
        Self::with_options(store, UnpackOptions::default())
    }

    pub fn with_options(store: &Store, options: UnpackOptions) -> Result<Self> {
        let dir = store.root().join("snapshots");
        for sub in ["layers", "tmp", "empty", "containers"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_err("create directory", &path))?;
        }
        Ok(Self {
            store: store.clone(),
            dir,
            options,
        })
    }

    /// The directory holding the unpacked layer with this diff_id.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join("layers").join(diff_id.hex())
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).is_dir()
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(id)
    }

    /// Unpacks every layer of `image` not yet unpacked, several at once, and returns the
    /// layer directories base first.
    pub fn unpack(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let _lease = self.store.lease()?;
        self.unpack_leased(image)
    }

    fn unpack_leased(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let diff_ids = image.diff_ids()?;
        let layers = image.layers();
        if diff_ids.len() != layers.len() {
            return Err(SnapshotError::LayerCountMismatch {
                image: image.target.clone(),
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        let mut todo: Vec<(Descriptor, Digest)> = Vec::new();
        for (desc, diff_id) in layers.iter().zip(&diff_ids) {
            if !self.has_layer(diff_id) && !todo.iter().any(|(_, d)| d == diff_id) {
                todo.push((desc.clone(), diff_id.clone()));
            }
        }
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4)
            .min(todo.len());
        let queue = Mutex::new(todo);
        let errors = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let next = queue.lock().map(|mut q| q.pop()).ok().flatten();
                        let Some((desc, diff_id)) = next else { break };
                        if let Err(e) = self.unpack_one(&image.manifest_digest, &desc, &diff_id) {
                            if let Ok(mut errs) = errors.lock() {
                                errs.push(e);
                            }
                            break;
                        }
                    }
                });
            }
        });
        if let Some(e) = errors
            .into_inner()
            .ok()
            .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)))
        {
            return Err(e);
        }
        Ok(diff_ids.iter().map(|d| self.layer_dir(d)).collect())
    }

    /// Unpacks one layer into a fresh temp dir, checks its diff_id, makes it durable, then
    /// renames it into place. A concurrent unpack of the same layer loses the rename race
    /// harmlessly.
    fn unpack_one(&self, manifest: &Digest, desc: &Descriptor, diff_id: &Digest) -> Result<()> {
        let layer = descriptor_digest(manifest, desc)?;
        let tmp = self.dir.join("tmp").join(fsutil::unique_name(""));
        fs::create_dir(&tmp).map_err(io_err("create directory", &tmp))?;
        let result = (|| {
            let file = self.store.open_blob(&layer)?;
            let reader = VerifyingReader::new(file, layer.clone(), Some(desc.size()));
            let stats = unpack_layer(reader, &tmp, &self.options).map_err(|source| {
                SnapshotError::Unpack {
                    layer: layer.clone(),
                    source,
                }
            })?;
            if &stats.diff_id != diff_id {
                return Err(SnapshotError::DiffIdMismatch {
                    layer: layer.clone(),
                    expected: diff_id.clone(),
                    actual: stats.diff_id,
                });
            }
            let dir = fs::File::open(&tmp).map_err(io_err("open", &tmp))?;
            rustix::fs::syncfs(&dir).map_err(|e| SnapshotError::Io {
                op: "syncfs",
                path: tmp.clone(),
                source: e.into(),
            })?;
            let dest = self.layer_dir(diff_id);
            match fs::rename(&tmp, &dest) {
                Ok(()) => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) =>
                {
                    let _ = fs::remove_dir_all(&tmp);
                }
                Err(e) => {
                    return Err(SnapshotError::Io {
                        op: "rename",
                        path: dest,
                        source: e,
                    });
                }
            }
            let layers = self.dir.join("layers");
            fsutil::sync_dir(&layers).map_err(io_err("fsync", &layers))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// Builds the root filesystem of a container: unpacks the image's missing layers, then
    /// mounts an overlay of them with a private upper and work dir. If the container's
    /// snapshot already exists (a restart) its upper dir is kept; if it is already mounted
    /// the mount is reused.
    pub fn prepare(&self, container_id: &str, image: &Image) -> Result<RootfsPath> {
        validate_id(container_id)?;
        let _lease = self.store.lease()?;
        let lowers = self.unpack_leased(image)?;
        let dir = self.container_dir(container_id);
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for path in [&upper, &work, &rootfs] {
            fs::create_dir_all(path).map_err(io_err("create directory", path))?;
        }
        let record = ContainerSnapshot {
            container_id: container_id.to_owned(),
            image: image.target.clone(),
            layers: image.diff_ids()?,
        };
        let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
        let meta = dir.join("snapshot.json");
        fsutil::atomic_write(&meta, &json).map_err(io_err("write", &meta))?;
        let rootfs_path = RootfsPath {
            container_id: container_id.to_owned(),
            path: rootfs.clone(),
        };
        if is_mount_point(&rootfs, &dir)? {
            return Ok(rootfs_path);
        }
        // overlayfs refuses the same lowerdir twice. Keeping only the topmost copy of a
        // repeated layer gives the same tree: everything the lower copy adds, whites out or
        // makes opaque, the upper copy does again over a superset of what lies below.
        let mut lower_list: Vec<PathBuf> = Vec::new();
        for dir in lowers.into_iter().rev() {
            if !lower_list.contains(&dir) {
                lower_list.push(dir);
            }
        }
        if lower_list.is_empty() {
            lower_list.push(self.dir.join("empty"));
        }
        mount_overlay(&lower_list, &upper, &work, &rootfs)?;
        Ok(rootfs_path)
    }

    /// Unmounts a container's root filesystem and deletes its upper and work dirs. Removing
    /// a container that has no snapshot is not an error.
    pub fn remove(&self, container_id: &str) -> Result<()> {
        validate_id(container_id)?;
        let dir = self.container_dir(container_id);
        if !dir.exists() {
            return Ok(());
        }
        let rootfs = dir.join("rootfs");
        if rootfs.exists() && is_mount_point(&rootfs, &dir)? {
            match rustix::mount::unmount(&rootfs, UnmountFlags::empty()) {
                Ok(()) | Err(Errno::INVAL) => {}
                Err(Errno::BUSY) => {
                    rustix::mount::unmount(&rootfs, UnmountFlags::DETACH).map_err(|e| {
                        SnapshotError::Unmount {
                            target: rootfs.clone(),
                            source: e.into(),
                        }
                    })?
                }
                Err(e) => {
                    return Err(SnapshotError::Unmount {
                        target: rootfs.clone(),
                        source: e.into(),
                    });
                }
            }
        }
        fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))
    }

    /// Every container snapshot on record.
    pub fn containers(&self) -> Result<Vec<ContainerSnapshot>> {
        let dir = self.dir.join("containers");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let meta = entry.path().join("snapshot.json");
            if let Ok(bytes) = fs::read(&meta) {
                if let Ok(record) = serde_json::from_slice::<ContainerSnapshot>(&bytes) {
                    out.push(record);
                }
            }
        }
        out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
        Ok(out)
    }
}

fn validate_id(id: &str) -> Result<()> {
    let b = id.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::BadContainerId { id: id.to_owned() })
    }
}

/// A mount point has a different device than its parent directory.
fn is_mount_point(path: &Path, parent: &Path) -> Result<bool> {
    let a = fs::metadata(path).map_err(io_err("stat", path))?;
    let b = fs::metadata(parent).map_err(io_err("stat", parent))?;
    Ok(a.dev() != b.dev())
}

/// Mounts an overlay (`lowers` top first). The classic `mount(2)` carries all options in one
/// page; when they do not fit (deep images, long data roots) the new mount API adds the
/// layers one `lowerdir+` at a time (Linux 6.8+), up to overlayfs's own limit of 500.
fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let mount_err = |e: Errno| SnapshotError::Mount {
        target: target.to_owned(),
        source: e.into(),
    };
    match overlay_options(lowers, upper, work) {
        Ok(options) => {
            let data = CString::new(options).map_err(|_| SnapshotError::BadPath {
                path: upper.to_owned(),
            })?;
            rustix::mount::mount(
                "overlay",
                target,
                "overlay",
                MountFlags::empty(),
                data.as_c_str(),
            )
            .map_err(mount_err)
        }
        Err(SnapshotError::TooManyLayers { layers }) => {
            use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};
            let fs =
                rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(mount_err)?;
            for lower in lowers {
                match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower.as_path()) {
                    Ok(()) => {}
                    // A kernel without `lowerdir+` cannot mount this many layers at all.
                    Err(Errno::INVAL) => return Err(SnapshotError::TooManyLayers { layers }),
                    Err(e) => return Err(mount_err(e)),
                }
            }
            rustix::mount::fsconfig_set_string(&fs, "upperdir", upper).map_err(mount_err)?;
            rustix::mount::fsconfig_set_string(&fs, "workdir", work).map_err(mount_err)?;
            rustix::mount::fsconfig_create(&fs).map_err(mount_err)?;
            let mnt =
                rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
                    .map_err(mount_err)?;
            rustix::mount::move_mount(
                &mnt,
                "",
                rustix::fs::CWD,
                target,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )
            .map_err(mount_err)
        }
        Err(e) => Err(e),
    }
}

/// `lowerdir=top:…:base,upperdir=…,workdir=…`, refusing paths the option syntax cannot carry
/// and strings the kernel would reject for length.
fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let check = |p: &Path| -> Result<String> {
        let s = p
            .to_str()
            .ok_or_else(|| SnapshotError::BadPath { path: p.to_owned() })?;
        if s.contains([',', ':']) {
            return Err(SnapshotError::BadPath { path: p.to_owned() });
        }
        Ok(s.to_owned())
    };
    let lower = lowers
        .iter()
        .map(|p| check(p))
        .collect::<Result<Vec<_>>>()?
        .join(":");
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        check(upper)?,
        check(work)?
    );
    // The kernel copies mount data into one page.
    if options.len() >= 4096 {
        return Err(SnapshotError::TooManyLayers {
            layers: lowers.len(),
        });
    }
    Ok(options)
}

impl Store {
    /// Deletes unpacked layers no image and no container uses, and abandoned unpacks.
    /// Called by garbage collection with the exclusive lock held.
    pub(crate) fn sweep_snapshots(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root().join("snapshots");
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut live = BTreeSet::new();
        let targets: BTreeSet<Digest> = self.list_images()?.into_iter().map(|r| r.target).collect();
        for target in targets {
            // An image whose platform manifest is missing has nothing unpacked.
            if let Ok(image) = self.image(&target) {
                live.extend(image.diff_ids()?);
            }
        }
        let containers = dir.join("containers");
        if let Ok(entries) = fs::read_dir(&containers) {
            for entry in entries.flatten() {
                let meta = entry.path().join("snapshot.json");
                match fs::read(&meta)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ContainerSnapshot>(&b).ok())
                {
                    Some(record) => live.extend(record.layers),
                    // `prepare` writes snapshot.json before it mounts anything, so a container
                    // dir without it (a crash mid-prepare) uses no layer.
                    None => continue,
                }
            }
        }
        let mut removed = Vec::new();
        let layers = dir.join("layers");
        for entry in fs::read_dir(&layers).map_err(StoreError::io("read directory", &layers))? {
            let entry = entry.map_err(StoreError::io("read directory", &layers))?;
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue;
            };
            if !live.contains(&digest) {
                fs::remove_dir_all(entry.path()).map_err(StoreError::io("remove", entry.path()))?;
                removed.push(digest);
            }
        }
        let tmp = dir.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_are_validated() {
        for ok in ["a", "web-1", "x.y_z", &"a".repeat(128)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a/b", "..", "a b", &"a".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlay_options_order_and_limits() {
        let lowers = vec![PathBuf::from("/s/top"), PathBuf::from("/s/base")];
        let o = overlay_options(&lowers, Path::new("/c/u"), Path::new("/c/w")).unwrap();
        assert_eq!(o, "lowerdir=/s/top:/s/base,upperdir=/c/u,workdir=/c/w");
        assert!(matches!(
            overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w")),
            Err(SnapshotError::BadPath { .. })
        ));
        let many: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/{}/{i}", "x".repeat(60))))
            .collect();
        assert!(matches!(
            overlay_options(&many, Path::new("/u"), Path::new("/w")),
            Err(SnapshotError::TooManyLayers { .. })
        ));
    }
}
