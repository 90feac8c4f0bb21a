//! A checksummed, append-only record file with fsync: the write-ahead log under the Raft
//! storage. It knows bytes and records, not Raft.
//!
//! On-disk record: `len: u32 LE | crc32(payload): u32 LE | payload`. A record is durable once
//! `append` returns (the file is fdatasync'ed). After a crash the last record may be torn —
//! shorter than its header says, or failing its checksum with nothing valid after it; such a
//! tail was never acknowledged, so replay drops it and truncates the file. A bad record with
//! valid records after it is corruption of acknowledged data and is reported, never skipped.
//!
//! Compaction replaces the whole file: the survivors are written to a temporary file, synced,
//! and renamed over the log, then the directory is synced — at every instant either the old or
//! the new file is complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest record accepted; anything bigger in a header is corruption, not an allocation.
const MAX_RECORD: u32 = 256 << 20;
const HEADER: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path}: corrupt record at byte {offset} with {following} valid byte(s) after it: {reason}"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        following: u64,
        reason: &'static str,
    },
    #[error("{path}: record of {len} bytes exceeds the {MAX_RECORD}-byte limit")]
    TooLarge { path: PathBuf, len: usize },
}

/// What replay found besides the records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a torn final record that were discarded.
    pub torn_tail_bytes: u64,
}

/// An open log positioned at its end.
#[derive(Debug)]
pub struct Wal {
    path: PathBuf,
    file: File,
}

impl Wal {
    /// Opens (creating if needed) the log at `path`, returning every intact record in order.
    pub fn open(path: &Path) -> Result<(Wal, Vec<Vec<u8>>, Recovery), WalError> {
        let tmp = temp_path(path);
        if tmp.exists() {
            // An interrupted compaction: the old log is still complete, the partial new one is
            // discarded.
            fs::remove_file(&tmp).map_err(|e| io_err(&tmp, "remove interrupted compaction", e))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err(path, "open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err(path, "read", e))?;
        let (records, valid_len) = parse(path, &bytes)?;
        let recovery = Recovery {
            torn_tail_bytes: (bytes.len() - valid_len) as u64,
        };
        if recovery.torn_tail_bytes > 0 {
            file.set_len(valid_len as u64)
                .map_err(|e| io_err(path, "truncate torn tail", e))?;
            file.sync_all().map_err(|e| io_err(path, "sync", e))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| io_err(path, "seek", e))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok((
            Wal {
                path: path.to_owned(),
                file,
            },
            records,
            recovery,
        ))
    }

    /// Appends the records and makes them durable before returning.
    pub fn append<R: AsRef<[u8]>>(&mut self, records: &[R]) -> Result<(), WalError> {
        if records.is_empty() {
            return Ok(());
        }
        let buf = encode(&self.path, records)?;
        self.file
            .write_all(&buf)
            .map_err(|e| io_err(&self.path, "write", e))?;
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.path, "fdatasync", e))
    }

    /// Atomically replaces the whole log with `records`.
    pub fn rewrite<R: AsRef<[u8]>>(&mut self, records: &[R]) -> Result<(), WalError> {
        let tmp = temp_path(&self.path);
        let buf = encode(&self.path, records)?;
        {
            let mut out = File::create(&tmp).map_err(|e| io_err(&tmp, "create", e))?;
            out.write_all(&buf).map_err(|e| io_err(&tmp, "write", e))?;
            out.sync_all().map_err(|e| io_err(&tmp, "sync", e))?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| io_err(&self.path, "rename compacted log", e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, "reopen", e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| io_err(&self.path, "seek", e))?;
        self.file = file;
        Ok(())
    }

    /// Current size of the log in bytes.
    pub fn len(&self) -> Result<u64, WalError> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| io_err(&self.path, "stat", e))?
            .len())
    }
}

fn encode<R: AsRef<[u8]>>(path: &Path, records: &[R]) -> Result<Vec<u8>, WalError> {
    let total: usize = records.iter().map(|r| r.as_ref().len() + HEADER).sum();
    let mut buf = Vec::with_capacity(total);
    for record in records {
        let payload = record.as_ref();
        if payload.len() > MAX_RECORD as usize {
            return Err(WalError::TooLarge {
                path: path.to_owned(),
                len: payload.len(),
            });
        }
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        buf.extend_from_slice(payload);
    }
    Ok(buf)
}

/// Splits `bytes` into records; returns them and the length of the valid prefix.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Vec<u8>>, usize), WalError> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Ok(end) => {
                records.push(bytes[at + HEADER..end].to_vec());
                at = end;
            }
            Err(reason) => {
                // Torn tail or corruption? If any intact record follows, acknowledged data sits
                // behind the bad one: that is corruption.
                if let Some(following) = valid_record_after(bytes, at + 1) {
                    return Err(WalError::Corrupt {
                        path: path.to_owned(),
                        offset: at as u64,
                        following: (bytes.len() - following) as u64,
                        reason,
                    });
                }
                return Ok((records, at));
            }
        }
    }
    Ok((records, at))
}

/// Validates the record starting at `at`, returning its end offset.
fn record_at(bytes: &[u8], at: usize) -> Result<usize, &'static str> {
    let header = bytes.get(at..at + HEADER).ok_or("truncated header")?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Err("impossible length");
    }
    let end = at + HEADER + len as usize;
    let payload = bytes.get(at + HEADER..end).ok_or("truncated payload")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(end)
}

/// Finds the first offset ≥ `from` where a chain of intact records runs to the end of the
/// file, meaning the data there was written after the bad record and acknowledged.
fn valid_record_after(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(HEADER - 1)).find(|&start| {
        let mut at = start;
        let mut count = 0;
        while let Ok(end) = record_at(bytes, at) {
            count += 1;
            at = end;
            if at == bytes.len() {
                return count > 0;
            }
        }
        false
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".compacting");
    path.with_file_name(name)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "sync directory", e))
}

fn io_err(path: &Path, op: &'static str, source: io::Error) -> WalError {
    WalError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("raft.wal")
    }

    #[test]
    fn records_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, records, _) = Wal::open(&log(&dir)).unwrap();
        assert!(records.is_empty());
        wal.append(&[b"one".as_slice(), b"".as_slice(), b"three"])
            .unwrap();
        wal.append(&[b"four"]).unwrap();
        drop(wal);
        let (_, records, recovery) = Wal::open(&log(&dir)).unwrap();
        assert_eq!(
            records,
            [b"one".to_vec(), vec![], b"three".to_vec(), b"four".to_vec()]
        );
        assert_eq!(recovery.torn_tail_bytes, 0);
    }

    #[test]
    fn every_torn_tail_is_dropped_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(&dir);
        let (mut wal, _, _) = Wal::open(&path).unwrap();
        wal.append(&[b"committed-1".as_slice(), b"committed-2"])
            .unwrap();
        let durable_len = wal.len().unwrap() as usize;
        wal.append(&[b"in-flight record that was never acknowledged"])
            .unwrap();
        drop(wal);
        let full = fs::read(&path).unwrap();
        // Cut the file at every byte inside the last record: a crash mid-write.
        for cut in durable_len..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let (_, records, recovery) = Wal::open(&path).unwrap();
            assert_eq!(
                records,
                [b"committed-1".to_vec(), b"committed-2".to_vec()],
                "cut at {cut}"
            );
            assert_eq!(recovery.torn_tail_bytes as usize, cut - durable_len);
            assert_eq!(fs::metadata(&path).unwrap().len() as usize, durable_len);
        }
    }

    #[test]
    fn garbage_in_the_final_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(&dir);
        let (mut wal, _, _) = Wal::open(&path).unwrap();
        wal.append(&[b"kept".as_slice(), b"last"]).unwrap();
        drop(wal);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (_, records, recovery) = Wal::open(&path).unwrap();
        assert_eq!(records, [b"kept".to_vec()]);
        assert_eq!(recovery.torn_tail_bytes, (HEADER + 4) as u64);
    }

    #[test]
    fn corruption_before_acknowledged_records_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(&dir);
        let (mut wal, _, _) = Wal::open(&path).unwrap();
        wal.append(&[b"first".as_slice(), b"second", b"third"])
            .unwrap();
        drop(wal);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER + 1] ^= 0x01; // inside "first"
        fs::write(&path, &bytes).unwrap();
        let err = Wal::open(&path).unwrap_err();
        assert!(matches!(err, WalError::Corrupt { offset: 0, .. }), "{err}");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // Nothing was truncated: the data is still there for a human to rescue.
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn rewrite_replaces_contents_and_an_interrupted_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(&dir);
        let (mut wal, _, _) = Wal::open(&path).unwrap();
        wal.append(&[b"a".as_slice(), b"b", b"c"]).unwrap();
        wal.rewrite(&[b"c"]).unwrap();
        wal.append(&[b"d"]).unwrap();
        drop(wal);
        fs::write(temp_path(&path), b"half a compaction").unwrap();
        let (_, records, _) = Wal::open(&path).unwrap();
        assert_eq!(records, [b"c".to_vec(), b"d".to_vec()]);
        assert!(!temp_path(&path).exists());
    }
}
