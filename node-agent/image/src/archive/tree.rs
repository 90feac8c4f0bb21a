//! A directory tree as layer tar entries, the one writer berth has: `import` of a
//! directory and the layers a build's `RUN` produces both use it. Entries come sorted by
//! name, depth first, paths relative without `./` (directories end in `/`); hard links
//! become links to the first path seen, symlinks are not followed, sockets are skipped (as
//! Docker does), and extended attributes travel as PAX `SCHILY.xattr.*` records, except
//! overlayfs' own `trusted.overlay.*`.
//!
//! An overlay upper dir (what a container changed) additionally needs its whiteouts
//! translated: a 0/0 character device becomes a `.wh.<name>` entry and a directory marked
//! `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// A plain root filesystem: every entry is written as it is.
    Plain,
    /// An overlayfs upper dir: whiteouts and opaque directories become OCI whiteouts.
    OverlayUpper,
}

/// Appends every entry under `root` (not `root` itself) to `out`.
pub fn append_tree<W: Write>(out: &mut tar::Builder<W>, root: &Path, tree: Tree) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        // depth first in name order: subdirectories are pushed in reverse
        let mut subdirs = Vec::new();
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)?;
            let ft = meta.file_type();
            if tree == Tree::OverlayUpper && ft.is_char_device() && meta.rdev() == 0 {
                let wh = match rel_path.rsplit_once('/') {
                    Some((parent, base)) => format!("{parent}/.wh.{base}"),
                    None => format!(".wh.{rel_path}"),
                };
                append_marker(out, &wh)?;
                continue;
            }
            let mut h = header_from(&meta);
            append_xattrs(out, &path)?;
            if ft.is_dir() {
                append_dir(out, &rel_path, h)?;
                if tree == Tree::OverlayUpper && is_opaque(&path) {
                    append_marker(out, &format!("{rel_path}/.wh..wh..opq"))?;
                }
                subdirs.push(rel_path);
            } else if ft.is_symlink() {
                h.set_entry_type(tar::EntryType::Symlink);
                out.append_link(&mut h, &rel_path, fs::read_link(&path)?)?;
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
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// A tar header for `meta`: mode, owner and mtime; no type or size yet.
pub fn header_from(meta: &fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Appends a directory entry at `path` (written with a trailing `/`).
pub fn append_dir<W: Write>(
    out: &mut tar::Builder<W>,
    path: &str,
    mut h: tar::Header,
) -> io::Result<()> {
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    out.append_data(
        &mut h,
        format!("{}/", path.trim_end_matches('/')),
        io::empty(),
    )
}

/// An empty whiteout entry.
fn append_marker<W: Write>(out: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(0);
    out.append_data(&mut h, path, io::empty())
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(
        rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut buf),
        Ok(1) if buf[0] == b'y'
    )
}

/// Records a file's extended attributes (not overlayfs' own) as PAX records for the
/// entry that follows.
pub fn append_xattrs<W: Write>(out: &mut tar::Builder<W>, path: &Path) -> io::Result<()> {
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
        let mut value = vec![0u8; 65536];
        if let Ok(len) = rustix::fs::lgetxattr(path, std::ffi::OsStr::from_bytes(name), &mut value)
        {
            value.truncate(len);
            records.push((
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(name)),
                value,
            ));
        }
    }
    if !records.is_empty() {
        out.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    Ok(())
}
