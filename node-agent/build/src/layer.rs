//! Layers a build makes: a tar stream written gzip-compressed into the store (its diff_id
//! computed on the way), then unpacked once into `snapshots/layers/<diff_id>` so later
//! steps can use it as an overlay lower dir. Also the conversion of an overlay upper dir
//! (what a `RUN` changed) into an OCI layer: a 0/0 character device becomes a `.wh.<name>`
//! whiteout, a `trusted.overlay.opaque=y` directory gets a `.wh..wh..opq` entry, and
//! overlayfs' own `trusted.overlay.*` attributes are dropped.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::digest::DigestWriter;
use berth_image::unpack::{UnpackOptions, unpack_layer};
use berth_image::{Digest, Snapshotter, Store, media_types};
use serde::{Deserialize, Serialize};

use crate::BuildError;

/// One layer of a build state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub diff_id: Digest,
    /// The stored (compressed) blob.
    pub blob: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A tar builder over the store's blob writer.
pub type TarOut<'a> = tar::Builder<&'a mut dyn Write>;

/// Writes a layer produced by `produce` into the store and unpacks it as a snapshot.
pub fn write_layer(
    store: &Store,
    snapshots: &Snapshotter,
    produce: impl FnOnce(&mut TarOut<'_>) -> io::Result<()>,
) -> Result<Layer, BuildError> {
    let mut diff_id = None;
    let (blob, size) = store.write_blob_with(|out| {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let mut tar_out = DigestWriter::new(gz);
        {
            let writer: &mut dyn Write = &mut tar_out;
            let mut builder = tar::Builder::new(writer);
            builder.follow_symlinks(false);
            produce(&mut builder)?;
            builder.finish()?;
        }
        let (gz, digest, _) = tar_out.finish();
        gz.finish()?;
        diff_id = Some(digest);
        Ok(())
    })?;
    let diff_id = diff_id.ok_or_else(|| BuildError::Internal("no layer produced".into()))?;
    let layer = Layer {
        diff_id,
        blob,
        size,
        media_type: media_types::OCI_LAYER_GZIP.to_owned(),
    };
    ensure_unpacked(store, snapshots, &layer)?;
    Ok(layer)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other thread or process uses at the same time.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes sure the layer's snapshot directory exists (unpacking the blob if not), as
/// berth-image's snapshotter lays it out.
pub fn ensure_unpacked(
    store: &Store,
    snapshots: &Snapshotter,
    layer: &Layer,
) -> Result<PathBuf, BuildError> {
    let dest = snapshots.layer_dir(&layer.diff_id);
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = store.root().join("snapshots/tmp").join(unique("build-"));
    fs::create_dir_all(&tmp).map_err(crate::io_err("create directory", &tmp))?;
    let result = (|| {
        let file = store.open_blob(&layer.blob)?;
        let stats = unpack_layer(file, &tmp, &UnpackOptions::default())
            .map_err(|e| BuildError::Internal(format!("unpacking layer {}: {e}", layer.blob)))?;
        if stats.diff_id != layer.diff_id {
            return Err(BuildError::Internal(format!(
                "layer {} unpacked to {}, expected {}",
                layer.blob, stats.diff_id, layer.diff_id
            )));
        }
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(BuildError::Io {
                op: "rename",
                path: dest.clone(),
                source: e,
            }),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| dest)
}

/// A tar header for `meta` (mode, owner, mtime, no size yet).
pub fn header_from(meta: &fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Appends a directory entry.
pub fn append_dir(out: &mut TarOut<'_>, path: &str, mut h: tar::Header) -> io::Result<()> {
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    out.append_data(
        &mut h,
        format!("{}/", path.trim_end_matches('/')),
        io::empty(),
    )
}

/// Writes the changes an overlay upper dir holds as an OCI layer.
pub fn append_upper(out: &mut TarOut<'_>, upper: &Path) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            upper.to_path_buf()
        } else {
            upper.join(&rel)
        };
        let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                // Deleted in this step.
                let wh = match rel_path.rsplit_once('/') {
                    Some((parent, base)) => format!("{parent}/.wh.{base}"),
                    None => format!(".wh.{rel_path}"),
                };
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(0);
                out.append_data(&mut h, &wh, io::empty())?;
                continue;
            }
            let mut h = header_from(&meta);
            append_xattrs(out, &path)?;
            if ft.is_dir() {
                append_dir(out, &rel_path, h)?;
                if is_opaque(&path) {
                    let mut wh = tar::Header::new_gnu();
                    wh.set_entry_type(tar::EntryType::Regular);
                    wh.set_mode(0o600);
                    wh.set_size(0);
                    out.append_data(&mut wh, format!("{rel_path}/.wh..wh..opq"), io::empty())?;
                }
                subdirs.push(rel_path);
            } else if ft.is_symlink() {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = fs::read_link(&path)?;
                out.append_link(&mut h, &rel_path, &target)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        out.append_link(&mut h, &rel_path, first)?;
                        continue;
                    }
                    links.insert(key, rel_path.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(meta.len());
                out.append_data(&mut h, &rel_path, fs::File::open(&path)?)?;
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Fifo
                };
                h.set_entry_type(kind);
                h.set_device_major(libc::major(meta.rdev()))?;
                h.set_device_minor(libc::minor(meta.rdev()))?;
                out.append_data(&mut h, &rel_path, io::empty())?;
            }
            // Sockets cannot be stored in a layer; Docker drops them too.
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(
        rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut buf),
        Ok(1) if buf[0] == b'y'
    )
}

/// Records a file's extended attributes (not overlayfs' own) as PAX records.
pub fn append_xattrs(out: &mut TarOut<'_>, path: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::RANGE) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let key = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name), &mut value)
        {
            value.truncate(len);
            records.push((format!("SCHILY.xattr.{key}"), value));
        }
    }
    if !records.is_empty() {
        out.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    Ok(())
}
