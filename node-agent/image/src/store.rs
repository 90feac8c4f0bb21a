//! The content store: sha256-addressed blobs on disk, written atomically and verified, plus
//! resumable ingests for downloads and the leases that keep garbage collection away from
//! content a writer has not yet referenced.
//!
//! Layout under the store root (see `docs/images.md`):
//! `blobs/sha256/<hex>` — complete, verified blobs, never modified in place;
//! `ingest/` — in-progress writes (`tmp-*` for one-shot writes, `<hex>.partial` for
//! resumable ingests); `images.json` — the image records (see `images.rs`); `lock` and
//! `gc.lock` — advisory locks. This module must not interpret blob contents; manifests and
//! image records live in `manifest.rs` and `images.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, DigestWriter, Hasher, VerifyingReader};
use crate::fsutil::{self, FileLock, LockMode};

/// Errors of the content store and the image records kept in it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("blob {digest} not found in the store")]
    BlobNotFound { digest: Digest },
    #[error("content verification failed: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("another writer is already ingesting {digest}")]
    IngestBusy { digest: Digest },
    #[error("the image store at {root} is busy (a write is in progress); try again")]
    Busy { root: PathBuf },
    #[error("no such image: {reference}")]
    ImageNotFound { reference: String },
    #[error("{reference} is ambiguous: it matches several images")]
    Ambiguous { reference: String },
    #[error("reference {reference} pins digest {pinned}, not {target}")]
    ReferenceDigestMismatch {
        reference: String,
        pinned: Digest,
        target: Digest,
    },
    #[error("invalid {what} {digest}: {reason}")]
    BadContent {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error("image index {digest} has no manifest for {platform} in the store")]
    NoPlatform { digest: Digest, platform: String },
    #[error("corrupt store metadata {path}: {reason}")]
    CorruptMetadata { path: PathBuf, reason: String },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A content-addressed image store rooted at one directory. Cheap to clone; every method
/// works on the filesystem directly, so several `Store` values (threads or processes) over
/// the same root cooperate through atomic renames and advisory locks.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        }
        Ok(Self { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Whether a complete blob with this digest is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size in bytes of a present blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound {
                digest: digest.clone(),
            }),
            Err(e) => Err(StoreError::Io {
                op: "stat",
                path,
                source: e,
            }),
        }
    }

    /// Opens a blob for reading, without verification (for streaming to a registry or a
    /// file where the receiver verifies). Use [`Store::open_blob_verified`] to consume it.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobNotFound {
                    digest: digest.clone(),
                }
            } else {
                StoreError::Io {
                    op: "open",
                    path,
                    source: e,
                }
            }
        })
    }

    /// Opens a blob whose reader fails with `InvalidData` at end of input if the content no
    /// longer matches its digest (a blob tampered with on disk).
    pub fn open_blob_verified(&self, digest: &Digest) -> Result<VerifyingReader<File>> {
        let file = self.open_blob(digest)?;
        Ok(VerifyingReader::new(file, digest.clone(), None))
    }

    /// Reads a whole blob into memory, verified (meant for manifests and configs).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(StoreError::io("read", self.blob_path(digest)))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Re-hashes a stored blob and fails if it does not match its name.
    pub fn verify_blob(&self, digest: &Digest) -> Result<()> {
        let mut reader = crate::digest::DigestReader::new(self.open_blob(digest)?);
        io::copy(&mut reader, &mut io::sink())
            .map_err(StoreError::io("read", self.blob_path(digest)))?;
        let (actual, _) = reader.digest();
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Writes a blob from `reader`, returning its digest and size.
    ///
    /// The bytes go to a temporary file under `ingest/`, are fsynced, verified against
    /// `expected` (when given) and renamed into place, then the directory is fsynced: a crash
    /// at any instant leaves either no blob or the complete blob. When `expected` is given and
    /// already present, the reader is not consumed. Concurrent writers of the same content
    /// are safe: each renames an identical file over the other.
    pub fn write_blob(
        &self,
        expected: Option<&Digest>,
        reader: impl Read,
    ) -> Result<(Digest, u64)> {
        let _lease = self.lease()?;
        if let Some(expected) = expected {
            if let Ok(size) = self.blob_size(expected) {
                return Ok((expected.clone(), size));
            }
        }
        let tmp = self.ingest_dir().join(fsutil::unique_name("tmp-"));
        let result = self.write_tmp_and_commit(&tmp, expected, reader);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_tmp_and_commit(
        &self,
        tmp: &Path,
        expected: Option<&Digest>,
        mut reader: impl Read,
    ) -> Result<(Digest, u64)> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(tmp)
            .map_err(StoreError::io("create", tmp))?;
        let mut writer = DigestWriter::new(io::BufWriter::with_capacity(1 << 20, file));
        io::copy(&mut reader, &mut writer).map_err(StoreError::io("write", tmp))?;
        let (buffered, digest, size) = writer.finish();
        let file = buffered.into_inner().map_err(|e| StoreError::Io {
            op: "write",
            path: tmp.to_owned(),
            source: e.into_error(),
        })?;
        if let Some(expected) = expected {
            if expected != &digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        file.sync_all().map_err(StoreError::io("fsync", tmp))?;
        drop(file);
        self.commit_file(tmp, &digest)?;
        Ok((digest, size))
    }

    /// Renames a verified, fsynced file into `blobs/` and makes the rename durable.
    fn commit_file(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        fs::rename(tmp, &dest).map_err(StoreError::io("rename", &dest))?;
        let dir = self.root.join("blobs/sha256");
        fsutil::sync_dir(&dir).map_err(StoreError::io("fsync", &dir))
    }

    /// Writes a blob produced by a writer callback (a compressor, an archiver), returning its
    /// digest and size. Same durability and atomicity as [`Store::write_blob`].
    pub fn write_blob_with(
        &self,
        produce: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(Digest, u64)> {
        let _lease = self.lease()?;
        let tmp = self.ingest_dir().join(fsutil::unique_name("tmp-"));
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)
                .map_err(StoreError::io("create", &tmp))?;
            let mut writer = DigestWriter::new(io::BufWriter::with_capacity(1 << 20, file));
            produce(&mut writer).map_err(StoreError::io("write", &tmp))?;
            let (buffered, digest, size) = writer.finish();
            let file = buffered.into_inner().map_err(|e| StoreError::Io {
                op: "write",
                path: tmp.clone(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(StoreError::io("fsync", &tmp))?;
            drop(file);
            self.commit_file(&tmp, &digest)?;
            Ok((digest, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes an in-memory blob (manifest, config, index) and returns its digest.
    pub fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let expected = Digest::of(bytes);
        self.write_blob(Some(&expected), bytes)?;
        Ok(expected)
    }

    /// Starts or resumes a download of a blob whose digest and size are known in advance.
    ///
    /// The partial content lives in `ingest/<hex>.partial` and survives the process: after a
    /// crash or a dropped `Ingest`, calling this again re-hashes what is already there and
    /// returns an `Ingest` positioned at [`Ingest::offset`], so the caller continues with an
    /// HTTP `Range: bytes=<offset>-` request. Only one writer per digest at a time: a second
    /// concurrent call fails with [`StoreError::IngestBusy`]. If the blob is already complete
    /// the returned ingest has `offset() == expected_size` and `commit` is a no-op check.
    pub fn begin_ingest(&self, expected: &Digest, expected_size: u64) -> Result<Ingest> {
        let lease = self.lease()?;
        let path = self
            .ingest_dir()
            .join(format!("{}.partial", expected.hex()));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::IngestBusy {
                    digest: expected.clone(),
                });
            }
            Err(e) => {
                return Err(StoreError::Io {
                    op: "flock",
                    path,
                    source: e.into(),
                });
            }
        }
        let complete = self.has_blob(expected);
        let mut hasher = Hasher::new();
        if complete {
            let _ = fs::remove_file(&path);
        } else {
            let len = file
                .metadata()
                .map_err(StoreError::io("stat", &path))?
                .len();
            if len > expected_size {
                file.set_len(0).map_err(StoreError::io("truncate", &path))?;
            } else {
                // Re-hash what a previous attempt left, so the digest covers the whole blob.
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buf).map_err(StoreError::io("read", &path))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
            }
            file.seek(SeekFrom::Start(hasher.len()))
                .map_err(StoreError::io("seek", &path))?;
        }
        Ok(Ingest {
            store: self.clone(),
            path,
            file,
            hasher,
            expected: expected.clone(),
            expected_size,
            complete,
            _lease: lease,
        })
    }

    /// Takes a lease: while any lease is held (in any process), garbage collection does not
    /// run, so blobs written but not yet referenced by an image record survive. Hold one
    /// across a whole pull or load: from the first `has_blob` check to `put_image`.
    pub fn lease(&self) -> Result<Lease> {
        let path = self.root.join("gc.lock");
        let lock =
            FileLock::acquire(&path, LockMode::Shared).map_err(StoreError::io("lock", &path))?;
        Ok(Lease { _lock: lock })
    }

    /// The exclusive side of the lease lock, used by garbage collection. `None` if a lease
    /// is held somewhere.
    pub(crate) fn try_exclusive(&self) -> Result<Option<FileLock>> {
        let path = self.root.join("gc.lock");
        FileLock::try_acquire(&path, LockMode::Exclusive).map_err(StoreError::io("lock", &path))
    }

    /// Serializes read-modify-write cycles of the metadata files across threads and
    /// processes.
    pub(crate) fn metadata_lock(&self) -> Result<FileLock> {
        let path = self.root.join("lock");
        FileLock::acquire(&path, LockMode::Exclusive).map_err(StoreError::io("lock", &path))
    }

    /// Digests of every complete blob in the store.
    pub fn list_blobs(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(StoreError::io("read directory", &dir))? {
            let entry = entry.map_err(StoreError::io("read directory", &dir))?;
            if let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(digest);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob (garbage collection only; callers must hold the exclusive GC lock).
    pub(crate) fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                op: "remove",
                path,
                source: e,
            }),
        }
    }
}

/// Keeps garbage collection from running while held; see [`Store::lease`].
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
}

/// A resumable blob download in progress; see [`Store::begin_ingest`].
///
/// Bytes written go straight to the partial file. Dropping an `Ingest` without
/// [`Ingest::commit`] keeps the partial content for a later resume.
#[derive(Debug)]
pub struct Ingest {
    store: Store,
    path: PathBuf,
    file: File,
    hasher: Hasher,
    expected: Digest,
    expected_size: u64,
    complete: bool,
    _lease: Lease,
}

impl Ingest {
    /// Bytes already present: resume the download from here.
    pub fn offset(&self) -> u64 {
        if self.complete {
            self.expected_size
        } else {
            self.hasher.len()
        }
    }

    /// Whether the blob is already complete in the store (nothing to download).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    pub fn expected_size(&self) -> u64 {
        self.expected_size
    }

    /// Verifies size and digest, then moves the blob into the store atomically. On a
    /// mismatch the partial content is discarded (a resume would only repeat the failure).
    pub fn commit(self) -> Result<(Digest, u64)> {
        if self.complete {
            let size = self.store.blob_size(&self.expected)?;
            return Ok((self.expected.clone(), size));
        }
        let actual_size = self.hasher.len();
        let actual = self.hasher.digest();
        if actual_size != self.expected_size {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::SizeMismatch {
                digest: self.expected.clone(),
                expected: self.expected_size,
                actual: actual_size,
            });
        }
        if actual != self.expected {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        self.file
            .sync_all()
            .map_err(StoreError::io("fsync", &self.path))?;
        self.store.commit_file(&self.path, &self.expected)?;
        Ok((self.expected.clone(), actual_size))
    }

    /// Throws the partial content away.
    pub fn abort(self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                op: "remove",
                path: self.path.clone(),
                source: e,
            }),
        }
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.complete {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("blob {} is already complete", self.expected),
            ));
        }
        if self.hasher.len() + buf.len() as u64 > self.expected_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more data than the expected {} bytes for {}",
                    self.expected_size, self.expected
                ),
            ));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_blob_verifies_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (d, n) = store.write_blob(None, &b"hello"[..]).unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, Digest::of(b"hello"));
        assert!(store.has_blob(&d));
        assert_eq!(store.read_blob(&d).unwrap(), b"hello");
        assert_eq!(
            store.write_blob(Some(&d), &b"ignored"[..]).unwrap(),
            (d.clone(), 5)
        );
        let wrong = Digest::of(b"other");
        let err = store.write_blob(Some(&wrong), &b"hello!"[..]).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!store.has_blob(&wrong));
        // Nothing is left behind in ingest/.
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }
}
