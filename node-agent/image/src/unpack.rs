//! Layer unpacking: one tar stream (plain, gzip or zstd) into one empty snapshot directory,
//! translating whiteouts for overlayfs and never touching anything outside that directory.
//!
//! Confinement works by construction, not by checking strings: every entry's parent is
//! reached by walking its components from an open directory fd of the snapshot root with
//! `O_NOFOLLOW | O_DIRECTORY` (a symlink or a non-directory on the way is an error), and every
//! final component is created relative to that parent fd with `O_EXCL | O_NOFOLLOW` after
//! removing whatever was there. Names containing `..` or starting with `/` are refused
//! outright. Hardlink targets are resolved the same way and linked without following
//! symlinks. This module must not know about the store or images: it gets a reader and a
//! directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::fs::{Gid, Uid};
use rustix::io::Errno;

use crate::digest::{Digest, DigestReader};

/// Why a layer could not be unpacked. Entry names are shown as they appear in the tar.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} escapes the snapshot: {reason}")]
    Escape { entry: String, reason: &'static str },
    #[error(
        "layer entry {entry:?} passes through {component:?}, which is a symlink or not a directory"
    )]
    ThroughNonDirectory { entry: String, component: String },
    #[error("layer entry {entry:?} is a device node, not allowed here")]
    DeviceNotAllowed { entry: String },
    #[error(
        "layer entry {entry:?} is a hardlink to {target:?}, which does not exist in this layer"
    )]
    MissingLinkTarget { entry: String, target: String },
    #[error("layer entry {entry:?} has unsupported type {kind}")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("reading the layer: {source}")]
    Read { source: io::Error },
    #[error("{syscall} for layer entry {entry:?}: {source}")]
    Sys {
        syscall: &'static str,
        entry: String,
        source: io::Error,
    },
    #[error("opening snapshot directory {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
}

type Result<T, E = UnpackError> = std::result::Result<T, E>;

/// What extraction is allowed to create.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Create character and block device nodes (other than whiteouts). Off for unprivileged
    /// contexts, where a layer carrying a device is refused with a clear error.
    pub allow_devices: bool,
    /// Apply the uid/gid recorded in the tar (needs CAP_CHOWN).
    pub preserve_ownership: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        Self {
            allow_devices: root,
            preserve_ownership: root,
        }
    }
}

/// Counts from one unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream (the layer's diff_id).
    pub diff_id: Digest,
    /// Uncompressed bytes read.
    pub uncompressed_size: u64,
    pub entries: u64,
}

/// Layer compression, detected from the first bytes of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }
}

/// A decompressing reader that can hand back its source, so the caller can drain the source
/// to its end (where a verifying reader checks the compressed digest).
enum Decoder<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

impl<R: Read> Decoder<R> {
    fn new(source: R) -> io::Result<Self> {
        let mut buffered = BufReader::with_capacity(256 * 1024, source);
        let compression = Compression::detect(buffered.fill_buf()?);
        Ok(match compression {
            Compression::None => Self::Plain(buffered),
            Compression::Gzip => {
                Self::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)))
            }
            Compression::Zstd => Self::Zstd(zstd::stream::read::Decoder::with_buffer(buffered)?),
        })
    }

    fn into_source(self) -> R {
        match self {
            Self::Plain(r) => r.into_inner(),
            Self::Gzip(r) => r.into_inner().into_inner(),
            Self::Zstd(r) => r.finish().into_inner(),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(r) => r.read(buf),
            Self::Gzip(r) => r.read(buf),
            Self::Zstd(r) => r.read(buf),
        }
    }
}

/// Unpacks one layer (plain, gzip or zstd tar, detected by magic bytes) into `dest`, an
/// existing empty directory. Reads `layer` to its very end, so a verifying reader underneath
/// gets to check the compressed digest; returns the diff_id for the caller to compare.
pub fn unpack_layer<R: Read>(
    layer: R,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<UnpackStats> {
    let decoder = Decoder::new(layer).map_err(|source| UnpackError::Read { source })?;
    let mut tar_stream = DigestReader::new(decoder);
    let entries = {
        let mut archive = tar::Archive::new(&mut tar_stream);
        let mut extractor = Extractor::new(dest, options)?;
        let iter = archive
            .entries()
            .map_err(|source| UnpackError::Read { source })?;
        for entry in iter {
            let mut entry = entry.map_err(|source| UnpackError::Read { source })?;
            extractor.entry(&mut entry)?;
        }
        extractor.finish()?;
        extractor.count
    };
    // The tar end marker may be followed by padding: it is part of the diff_id.
    io::copy(&mut tar_stream, &mut io::sink()).map_err(|source| UnpackError::Read { source })?;
    let (diff_id, uncompressed_size) = tar_stream.digest();
    let mut source = tar_stream.into_inner().into_source();
    io::copy(&mut source, &mut io::sink()).map_err(|source| UnpackError::Read { source })?;
    Ok(UnpackStats {
        diff_id,
        uncompressed_size,
        entries,
    })
}

/// Normalizes a tar member name into components, refusing `..` and absolute names.
fn components(entry: &str, raw: &[u8]) -> Result<Vec<Vec<u8>>> {
    if raw.first() == Some(&b'/') {
        return Err(UnpackError::Escape {
            entry: entry.to_owned(),
            reason: "absolute path",
        });
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(UnpackError::Escape {
                    entry: entry.to_owned(),
                    reason: "'..' component",
                });
            }
            _ => out.push(part.to_vec()),
        }
    }
    Ok(out)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Directory times are applied last: creating children would bump them again.
struct DirTime {
    path: Vec<Vec<u8>>,
    times: Timestamps,
}

struct Extractor<'a> {
    root: OwnedFd,
    /// Open directories from the root down to the last parent used (a cache for the walk:
    /// tar members usually arrive grouped by directory).
    chain: Vec<(Vec<u8>, OwnedFd)>,
    options: &'a UnpackOptions,
    dir_times: Vec<DirTime>,
    count: u64,
    buf: Vec<u8>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

impl<'a> Extractor<'a> {
    fn new(dest: &Path, options: &'a UnpackOptions) -> Result<Self> {
        let root =
            rustix::fs::open(dest, DIR_FLAGS, Mode::empty()).map_err(|e| UnpackError::Root {
                path: dest.to_owned(),
                source: e.into(),
            })?;
        Ok(Self {
            root,
            chain: Vec::new(),
            options,
            dir_times: Vec::new(),
            count: 0,
            buf: vec![0; 1 << 20],
        })
    }

    /// Opens (creating missing directories when `create`) the directory at `parts`.
    fn walk(&mut self, entry: &str, parts: &[Vec<u8>], create: bool) -> Result<Option<&OwnedFd>> {
        let common = self
            .chain
            .iter()
            .zip(parts)
            .take_while(|((a, _), b)| a == *b)
            .count();
        self.chain.truncate(common);
        for part in &parts[common..] {
            let parent = self.chain.last().map_or(&self.root, |(_, fd)| fd);
            let fd = match rustix::fs::openat(parent, part.as_slice(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(parent, part.as_slice(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(sys("mkdirat", entry, e)),
                    }
                    rustix::fs::openat(parent, part.as_slice(), DIR_FLAGS, Mode::empty())
                        .map_err(|e| self.walk_error(entry, part, e))?
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(e) => return Err(self.walk_error(entry, part, e)),
            };
            self.chain.push((part.clone(), fd));
        }
        Ok(Some(self.chain.last().map_or(&self.root, |(_, fd)| fd)))
    }

    fn walk_error(&self, entry: &str, part: &[u8], e: Errno) -> UnpackError {
        match e {
            Errno::LOOP | Errno::NOTDIR => UnpackError::ThroughNonDirectory {
                entry: entry.to_owned(),
                component: lossy(part),
            },
            e => sys("openat", entry, e),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let name = lossy(&raw_path);
        let header = entry.header();
        let kind = header.entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        self.count += 1;
        let parts = components(&name, &raw_path)?;
        let meta = Meta::from_entry(entry, &name)?;
        let Some((last, parent_parts)) = parts.split_last() else {
            // The root directory itself ("./"): only its metadata applies.
            if kind == tar::EntryType::Directory {
                meta.apply_fd(&self.root, &name, self.options)?;
                self.dir_times.push(DirTime {
                    path: Vec::new(),
                    times: meta.times(),
                });
            }
            return Ok(());
        };
        let options = self.options;
        let parent = self
            .walk(&name, parent_parts, true)?
            .ok_or_else(|| UnpackError::MissingLinkTarget {
                entry: name.clone(),
                target: String::new(),
            })?
            .try_clone()
            .map_err(|e| UnpackError::Sys {
                syscall: "dup",
                entry: name.clone(),
                source: e,
            })?;

        // Whiteouts: overlayfs wants a 0/0 char device for a deleted name and an xattr on a
        // directory whose lower contents are hidden.
        if last.as_slice() == b".wh..wh..opq" {
            rustix::fs::fsetxattr(&parent, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|e| sys("fsetxattr", &name, e))?;
            return Ok(());
        }
        if last.starts_with(b".wh..wh.") {
            return Ok(()); // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): meaningless here
        }
        if let Some(hidden) = last.strip_prefix(b".wh.") {
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(UnpackError::Escape {
                    entry: name,
                    reason: "whiteout of '.', '..' or nothing",
                });
            }
            self.remove_existing(&parent, hidden, &name)?;
            rustix::fs::mknodat(
                &parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| sys("mknodat", &name, e))?;
            return Ok(());
        }

        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::openat(&parent, last.as_slice(), DIR_FLAGS, Mode::empty()) {
                    Ok(_) => {}
                    Err(Errno::NOENT) => {}
                    Err(_) => self.remove_existing(&parent, last, &name)?,
                }
                match rustix::fs::mkdirat(&parent, last.as_slice(), Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(sys("mkdirat", &name, e)),
                }
                let fd = rustix::fs::openat(&parent, last.as_slice(), DIR_FLAGS, Mode::empty())
                    .map_err(|e| sys("openat", &name, e))?;
                meta.apply_fd(&fd, &name, options)?;
                self.dir_times.push(DirTime {
                    path: parts.clone(),
                    times: meta.times(),
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.remove_existing(&parent, last, &name)?;
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd =
                    rustix::fs::openat(&parent, last.as_slice(), flags, Mode::from_raw_mode(0o600))
                        .map_err(|e| sys("openat", &name, e))?;
                let mut file = File::from(fd);
                copy_with(entry, &mut file, &mut self.buf).map_err(|e| match e {
                    CopyError::Read(source) => UnpackError::Read { source },
                    CopyError::Write(source) => UnpackError::Sys {
                        syscall: "write",
                        entry: name.clone(),
                        source,
                    },
                })?;
                meta.apply_fd(&file, &name, options)?;
                rustix::fs::futimens(&file, &meta.times())
                    .map_err(|e| sys("futimens", &name, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::UnsupportedEntry {
                        entry: name.clone(),
                        kind: "symlink without target".into(),
                    })?
                    .into_owned();
                self.remove_existing(&parent, last, &name)?;
                rustix::fs::symlinkat(target.as_slice(), &parent, last.as_slice())
                    .map_err(|e| sys("symlinkat", &name, e))?;
                meta.apply_at(&parent, last, &name, options, false)?;
            }
            tar::EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::UnsupportedEntry {
                        entry: name.clone(),
                        kind: "hardlink without target".into(),
                    })?
                    .into_owned();
                let target_parts = components(&name, &raw_target)?;
                let Some((target_last, target_parent_parts)) = target_parts.split_last() else {
                    return Err(UnpackError::Escape {
                        entry: name,
                        reason: "hardlink to the root",
                    });
                };
                let missing = || UnpackError::MissingLinkTarget {
                    entry: name.clone(),
                    target: lossy(&raw_target),
                };
                let target_parent = match self.walk(&name, target_parent_parts, false)? {
                    Some(fd) => fd.try_clone().map_err(|e| UnpackError::Sys {
                        syscall: "dup",
                        entry: name.clone(),
                        source: e,
                    })?,
                    None => return Err(missing()),
                };
                if (target_parent_parts, target_last) == (parent_parts, last) {
                    return Ok(()); // a link to itself: nothing to do
                }
                self.remove_existing(&parent, last, &name)?;
                match rustix::fs::linkat(
                    &target_parent,
                    target_last.as_slice(),
                    &parent,
                    last.as_slice(),
                    AtFlags::empty(),
                ) {
                    Ok(()) => {}
                    Err(Errno::NOENT) => return Err(missing()),
                    Err(e) => return Err(sys("linkat", &name, e)),
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                if !options.allow_devices {
                    return Err(UnpackError::DeviceNotAllowed { entry: name });
                }
                let file_type = if kind == tar::EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                self.remove_existing(&parent, last, &name)?;
                rustix::fs::mknodat(
                    &parent,
                    last.as_slice(),
                    file_type,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(meta.dev_major, meta.dev_minor),
                )
                .map_err(|e| sys("mknodat", &name, e))?;
                meta.apply_at(&parent, last, &name, options, true)?;
            }
            tar::EntryType::Fifo => {
                self.remove_existing(&parent, last, &name)?;
                rustix::fs::mknodat(
                    &parent,
                    last.as_slice(),
                    FileType::Fifo,
                    Mode::from_raw_mode(0o600),
                    0,
                )
                .map_err(|e| sys("mknodat", &name, e))?;
                meta.apply_at(&parent, last, &name, options, true)?;
            }
            other => {
                return Err(UnpackError::UnsupportedEntry {
                    entry: name,
                    kind: format!("{other:?}"),
                });
            }
        }
        Ok(())
    }

    /// Removes whatever exists at `parent/name` (a later tar member replaces an earlier one),
    /// recursively for directories, never following symlinks.
    fn remove_existing(&mut self, parent: &OwnedFd, name: &[u8], entry: &str) -> Result<()> {
        match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => {
                // The cached chain may point into the directory being removed.
                self.chain.clear();
                let path = proc_path(parent, name);
                std::fs::remove_dir_all(&path).map_err(|source| UnpackError::Sys {
                    syscall: "remove_dir_all",
                    entry: entry.to_owned(),
                    source,
                })
            }
            Err(e) => Err(sys("unlinkat", entry, e)),
        }
    }

    fn finish(&mut self) -> Result<()> {
        self.chain.clear();
        let dir_times = std::mem::take(&mut self.dir_times);
        // Deepest first, so setting a child's times never disturbs an already-set parent.
        for item in dir_times.iter().rev() {
            let name = lossy(&item.path.join(&b'/'));
            let fd = if item.path.is_empty() {
                Some(&self.root)
            } else {
                self.walk(&name, &item.path, false)?
            };
            if let Some(fd) = fd {
                rustix::fs::futimens(fd, &item.times).map_err(|e| sys("futimens", &name, e))?;
            }
        }
        Ok(())
    }
}

fn sys(syscall: &'static str, entry: &str, e: Errno) -> UnpackError {
    UnpackError::Sys {
        syscall,
        entry: entry.to_owned(),
        source: e.into(),
    }
}

/// A path through `/proc/self/fd` naming `name` inside an open (confined) directory, for the
/// few calls that have no `*at` form. Only the last component is looked up, without following
/// it by the callers (`remove_dir_all`, `lsetxattr`).
fn proc_path(parent: &OwnedFd, name: &[u8]) -> PathBuf {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
    path.push(OsStr::from_bytes(name));
    path
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_with(reader: &mut impl Read, writer: &mut File, buf: &mut [u8]) -> Result<u64, CopyError> {
    use std::io::Write;
    let mut total = 0;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

/// The metadata of one tar member that extraction applies.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime_sec: i64,
    mtime_nsec: i64,
    dev_major: u32,
    dev_minor: u32,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn from_entry<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Self> {
        let header = entry.header();
        let bad = |what: &str| UnpackError::UnsupportedEntry {
            entry: name.to_owned(),
            kind: format!("unreadable {what}"),
        };
        let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
        // Some writers leave numeric fields empty (all NUL); like GNU tar, read them as 0
        // (no privilege gained: a layer may name uid 0 explicitly anyway).
        let mut uid = header.uid().unwrap_or(0);
        let mut gid = header.gid().unwrap_or(0);
        let mut mtime_sec = header.mtime().unwrap_or(0) as i64;
        let mut mtime_nsec = 0;
        let dev_major = header.device_major().ok().flatten().unwrap_or(0);
        let dev_minor = header.device_minor().ok().flatten().unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(xattr) = key.strip_prefix("SCHILY.xattr.") {
                    // A layer must not steer overlayfs (redirects, metacopy, opaque on
                    // arbitrary dirs): whiteouts are the only overlay metadata it may create.
                    if !xattr.starts_with("trusted.overlay.") {
                        xattrs.push((xattr.to_owned(), ext.value_bytes().to_vec()));
                    }
                } else if key == "mtime" {
                    if let Ok(text) = ext.value() {
                        if let Some((s, n)) = parse_pax_time(text) {
                            mtime_sec = s;
                            mtime_nsec = n;
                        }
                    }
                } else if key == "uid" {
                    if let Some(v) = ext.value().ok().and_then(|v| v.parse().ok()) {
                        uid = v;
                    }
                } else if key == "gid" {
                    if let Some(v) = ext.value().ok().and_then(|v| v.parse().ok()) {
                        gid = v;
                    }
                }
            }
        }
        Ok(Self {
            mode,
            uid,
            gid,
            mtime_sec,
            mtime_nsec,
            dev_major,
            dev_minor,
            xattrs,
        })
    }

    fn times(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: self.mtime_sec,
            tv_nsec: self.mtime_nsec as _,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }

    fn ids(&self) -> (Option<Uid>, Option<Gid>) {
        let uid = u32::try_from(self.uid).ok().map(Uid::from_raw);
        let gid = u32::try_from(self.gid).ok().map(Gid::from_raw);
        (uid, gid)
    }

    /// Owner, then mode (chown clears setuid/setgid, so the mode goes second), then xattrs.
    fn apply_fd(&self, fd: &impl AsFd, name: &str, options: &UnpackOptions) -> Result<()> {
        if options.preserve_ownership {
            let (uid, gid) = self.ids();
            rustix::fs::fchown(fd, uid, gid).map_err(|e| sys("fchown", name, e))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode))
            .map_err(|e| sys("fchmod", name, e))?;
        for (key, value) in &self.xattrs {
            match rustix::fs::fsetxattr(fd, key.as_str(), value, XattrFlags::empty()) {
                Ok(()) | Err(Errno::OPNOTSUPP) => {}
                Err(e) => return Err(sys("fsetxattr", name, e)),
            }
        }
        Ok(())
    }

    /// The same for members without an open fd (symlinks, nodes): `*at` calls that do not
    /// follow the final component.
    fn apply_at(
        &self,
        parent: &OwnedFd,
        last: &[u8],
        name: &str,
        options: &UnpackOptions,
        chmod: bool,
    ) -> Result<()> {
        if options.preserve_ownership {
            let (uid, gid) = self.ids();
            rustix::fs::chownat(parent, last, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| sys("fchownat", name, e))?;
        }
        if chmod {
            // Only device nodes and FIFOs get here; they were just created and are not
            // symlinks, so following the final component is not a concern.
            rustix::fs::chmodat(
                parent,
                last,
                Mode::from_raw_mode(self.mode),
                AtFlags::empty(),
            )
            .map_err(|e| sys("fchmodat", name, e))?;
        }
        if !self.xattrs.is_empty() {
            let path = proc_path(parent, last);
            for (key, value) in &self.xattrs {
                match rustix::fs::lsetxattr(&path, key.as_str(), value, XattrFlags::empty()) {
                    Ok(()) | Err(Errno::OPNOTSUPP) | Err(Errno::PERM) => {}
                    Err(e) => return Err(sys("lsetxattr", name, e)),
                }
            }
        }
        rustix::fs::utimensat(parent, last, &self.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| sys("utimensat", name, e))
    }
}

/// PAX times are decimal seconds with an optional fraction (`1700000000.123456789`).
fn parse_pax_time(text: &str) -> Option<(i64, i64)> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += i64::from(c.to_digit(10)?) * 10_i64.pow(8 - i as u32);
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_normalized_or_refused() {
        assert_eq!(
            components("a", b"./a/b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            components("a", b"a//./b").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(components(".", b"./").unwrap().is_empty());
        assert!(matches!(
            components("x", b"../../etc/x"),
            Err(UnpackError::Escape { .. })
        ));
        assert!(matches!(
            components("x", b"a/../../x"),
            Err(UnpackError::Escape { .. })
        ));
        assert!(matches!(
            components("x", b"/etc/x"),
            Err(UnpackError::Escape { .. })
        ));
    }

    #[test]
    fn compression_is_detected_by_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"bin/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn pax_times_parse() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time("x"), None);
    }
}
