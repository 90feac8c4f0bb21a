//! `import`: a plain root filesystem — a tar stream (plain, gzip or zstd) or a directory —
//! becomes a one-layer image, like `docker import`. The layer is stored gzip-compressed; its
//! diff_id is the sha256 of the uncompressed tar exactly as given (tar input) or as berth
//! writes it (directory input: sorted, deterministic, owners/modes/times/xattrs kept).

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{ArchiveError, Result, change, invalid, time, write_manifest};
use crate::digest::{Digest, DigestWriter};
use crate::manifest::{Platform, media_types};
use crate::reference::Reference;
use crate::store::Store;
use crate::unpack::Compression;

/// How to build the imported image.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Name to give the image; without one it is recorded as dangling.
    pub reference: Option<Reference>,
    /// `--change` lines (`CMD ["sh"]`, `ENV A=b`, `WORKDIR /x`, …).
    pub changes: Vec<String>,
    /// Comment recorded in the image history.
    pub message: Option<String>,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Manifest digest (what the image record points at).
    pub target: Digest,
    /// Image id (config digest).
    pub id: Digest,
    pub diff_id: Digest,
}

/// Imports a root filesystem tar stream.
pub fn import_tar(store: &Store, reader: impl Read, options: &ImportOptions) -> Result<Imported> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|source| ArchiveError::Read { source })?;
    let mut source: Box<dyn Read> = match Compression::detect(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|source| ArchiveError::Read { source })?,
        ),
    };
    import_with(store, options, |out| io::copy(&mut source, out).map(drop))
}

/// Imports a directory as the root filesystem.
pub fn import_dir(store: &Store, dir: &Path, options: &ImportOptions) -> Result<Imported> {
    if !dir.is_dir() {
        return Err(ArchiveError::Io {
            op: "import",
            path: dir.to_owned(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    import_with(store, options, |out| write_dir_tar(dir, out))
}

fn import_with(
    store: &Store,
    options: &ImportOptions,
    produce_tar: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<Imported> {
    let _lease = store.lease()?;
    let mut diff_id = None;
    let (layer, layer_size) = store.write_blob_with(|out| {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let mut tar = DigestWriter::new(gz);
        produce_tar(&mut tar)?;
        let (gz, digest, _) = tar.finish();
        gz.finish()?;
        diff_id = Some(digest);
        Ok(())
    })?;
    let diff_id = diff_id.ok_or_else(|| invalid("no layer produced"))?;
    let mut config_obj = Map::new();
    for line in &options.changes {
        change::apply(&mut config_obj, line)?;
    }
    let created = time::now_rfc3339();
    let platform = Platform::host();
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": Value::Object(config_obj),
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{
            "created": created,
            "created_by": "berth image import",
            "comment": options.message.clone().unwrap_or_else(|| "Imported from tarball".into()),
        }],
    });
    if let Some(variant) = platform.variant {
        config["variant"] = Value::String(variant);
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
    let id = store.write_blob_bytes(&config_bytes)?;
    let target = write_manifest(
        store,
        (&id, config_bytes.len() as u64),
        &[(layer, layer_size, media_types::OCI_LAYER_GZIP)],
    )?;
    match &options.reference {
        Some(reference) => {
            store.put_image(reference, &target)?;
        }
        None => store.put_dangling(&target)?,
    }
    Ok(Imported {
        target,
        id,
        diff_id,
    })
}

/// Writes `dir` as a tar stream: entries sorted by name, paths relative without `./`,
/// hardlinks as links to the first occurrence, symlinks not followed, sockets skipped.
pub fn write_dir_tar(dir: &Path, out: &mut dyn Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut seen: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&full)?.collect::<io::Result<Vec<_>>>()?;
        names.sort_by_key(|e| e.file_name());
        // Directories are walked depth-first in name order: push in reverse.
        let mut subdirs = Vec::new();
        for entry in names {
            let rel_path = rel.join(entry.file_name());
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_mode(meta.mode() & 0o7777);
            header.set_uid(u64::from(meta.uid()));
            header.set_gid(u64::from(meta.gid()));
            header.set_mtime(meta.mtime().max(0) as u64);
            header.set_size(0);
            append_xattrs(&mut builder, &path)?;
            if ft.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                builder.append_data(&mut header, &rel_path, io::empty())?;
                subdirs.push(rel_path);
            } else if ft.is_symlink() {
                header.set_entry_type(tar::EntryType::Symlink);
                let target = fs::read_link(&path)?;
                builder.append_link(&mut header, &rel_path, &target)?;
            } else if ft.is_file() {
                let key = (meta.dev(), meta.ino());
                if meta.nlink() > 1 {
                    if let Some(first) = seen.get(&key) {
                        header.set_entry_type(tar::EntryType::Link);
                        builder.append_link(&mut header, &rel_path, first)?;
                        continue;
                    }
                    seen.insert(key, rel_path.clone());
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                builder.append_data(&mut header, &rel_path, fs::File::open(&path)?)?;
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Fifo
                };
                header.set_entry_type(kind);
                let rdev = meta.rdev();
                header.set_device_major(libc::major(rdev))?;
                header.set_device_minor(libc::minor(rdev))?;
                builder.append_data(&mut header, &rel_path, io::empty())?;
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    builder.into_inner()?.flush()
}

/// Records a file's extended attributes as PAX `SCHILY.xattr.*` records for the next entry.
fn append_xattrs(builder: &mut tar::Builder<&mut dyn Write>, path: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::RANGE) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name), &mut value)
        {
            value.truncate(len);
            records.push((format!("SCHILY.xattr.{key}"), value));
        }
    }
    if !records.is_empty() {
        builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    Ok(())
}
