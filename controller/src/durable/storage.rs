//! `DiskStorage`: raft-rs `Storage` kept durably in one directory — a write-ahead log of
//! entries, hard state and conf state ([`Wal`]), plus the latest snapshot in its own file.
//!
//! Layout of `dir`:
//! - `raft.wal` — records: `E` + an encoded entry batch, `H` + hard state, `C` + conf state.
//!   Replaying a batch whose first index is at or below the last index drops the overwritten
//!   suffix first, exactly as a follower's log does when the leader overwrites it.
//! - `snapshot` — `magic | crc32 | len | encoded Snapshot` written to a temporary file, synced and
//!   renamed; everything at or below its index comes from it, not from the log.
//!
//! Every mutating call is durable when it returns; Raft messages that depend on it may then be
//! sent. All reads are served from memory.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use super::wal::{Recovery, Wal, WalError, sync_dir};

const SNAPSHOT_MAGIC: &[u8; 8] = b"BRTHSNP1";
const TAG_ENTRIES: u8 = b'E';
const TAG_HARD_STATE: u8 = b'H';
const TAG_CONF_STATE: u8 = b'C';

#[derive(Debug, thiserror::Error)]
pub enum StorageFault {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("entries {first}..={last} leave a gap after the last stored index {stored}")]
    Gap { first: u64, last: u64, stored: u64 },
    #[error("entries from {first} overwrite the compacted log (first kept index {kept})")]
    Compacted { first: u64, kept: u64 },
    #[error("snapshot at {index} is older than the first kept index {first}")]
    SnapshotOutOfDate { index: u64, first: u64 },
}

/// What opening found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub wal: Recovery,
    pub entries: usize,
    pub snapshot_index: u64,
}

/// Durable Raft storage; see the module documentation for the layout.
#[derive(Debug)]
pub struct DiskStorage {
    dir: PathBuf,
    wal: Wal,
    /// Metadata of the snapshot on disk (index 0 when there is none).
    snapshot: SnapshotMetadata,
    /// Entries after the snapshot, contiguous.
    entries: Vec<Entry>,
    hard_state: HardState,
    conf_state: ConfState,
}

impl DiskStorage {
    /// Opens the storage in `dir`, creating it if needed, and replays it.
    pub fn open(dir: &Path) -> Result<(DiskStorage, OpenReport), StorageFault> {
        fs::create_dir_all(dir).map_err(|e| io(dir, "create directory", e))?;
        let snapshot = read_snapshot(&dir.join("snapshot"))?;
        let (wal, records, recovery) = Wal::open(&dir.join("raft.wal"))?;
        let mut storage = DiskStorage {
            dir: dir.to_owned(),
            wal,
            snapshot: SnapshotMetadata::default(),
            entries: Vec::new(),
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
        };
        if let Some(snapshot) = snapshot {
            storage.install_snapshot_metadata(snapshot.get_metadata().clone());
        }
        for record in records {
            storage.replay(&record)?;
        }
        // A crash between writing a snapshot and rewriting the log leaves entries the snapshot
        // supersedes; keep them only if they still lead up to it consistently.
        let at_snapshot = storage
            .entries
            .iter()
            .find(|e| e.index == storage.snapshot.index)
            .map(|e| e.term);
        if storage.snapshot.index > 0 && at_snapshot.is_some_and(|t| t != storage.snapshot.term)
            || storage.last() < storage.snapshot.index
        {
            storage.entries.retain(|e| e.index > storage.snapshot.index);
            if storage
                .entries
                .first()
                .is_some_and(|e| e.index != storage.snapshot.index + 1)
            {
                storage.entries.clear();
            }
        }
        let report = OpenReport {
            wal: recovery,
            entries: storage.entries.len(),
            snapshot_index: storage.snapshot.index,
        };
        Ok((storage, report))
    }

    /// Persists new entries (possibly overwriting a conflicting suffix) and, when given, the
    /// hard state, with one fsync for both.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageFault> {
        let mut records = Vec::with_capacity(2);
        if !entries.is_empty() {
            self.check_append(entries)?;
            records.push(encode_entries(entries));
        }
        if let Some(hs) = hard_state {
            records.push(tagged(TAG_HARD_STATE, hs));
        }
        self.wal.append(&records)?;
        if !entries.is_empty() {
            self.splice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Persists the hard state alone.
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageFault> {
        self.persist(&[], Some(hard_state))
    }

    /// Updates only the commit index of the hard state (raft-rs reports it separately).
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageFault> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Persists the configuration after a conf change is applied.
    pub fn set_conf_state(&mut self, conf_state: &ConfState) -> Result<(), StorageFault> {
        self.wal.append(&[tagged(TAG_CONF_STATE, conf_state)])?;
        self.conf_state = conf_state.clone();
        Ok(())
    }

    /// Installs a snapshot received from the leader: replaces the log and everything below.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageFault> {
        let meta = snapshot.get_metadata();
        let first = self.first();
        if meta.index < first.saturating_sub(1) || (meta.index < self.snapshot.index) {
            return Err(StorageFault::SnapshotOutOfDate {
                index: meta.index,
                first,
            });
        }
        write_snapshot(&self.dir.join("snapshot"), snapshot)?;
        self.install_snapshot_metadata(meta.clone());
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = meta.index;
        self.entries.clear();
        self.rewrite_wal()
    }

    /// Takes a snapshot of the state machine at `applied` (whose serialized form is `data`)
    /// and drops the log up to it, keeping `keep` entries before it for slow followers.
    pub fn compact(&mut self, applied: u64, data: Vec<u8>, keep: u64) -> Result<(), StorageFault> {
        if applied <= self.snapshot.index {
            return Ok(());
        }
        let term = self.term_of(applied).ok_or(StorageFault::Gap {
            first: applied,
            last: applied,
            stored: self.last(),
        })?;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = applied;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        write_snapshot(&self.dir.join("snapshot"), &snapshot)?;
        self.snapshot = snapshot.get_metadata().clone();
        let drop_to = applied.saturating_sub(keep);
        self.entries.retain(|e| e.index > drop_to);
        self.rewrite_wal()
    }

    /// The snapshot on disk with its data, if any.
    pub fn load_snapshot(&self) -> Result<Option<Snapshot>, StorageFault> {
        read_snapshot(&self.dir.join("snapshot"))
    }

    /// Index of the latest snapshot (0 when there is none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.index
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The index of the last entry in the log (or of the snapshot when the log is empty).
    pub fn last_log_index(&self) -> u64 {
        self.last()
    }

    /// Size of the write-ahead log, for deciding when to compact.
    pub fn wal_bytes(&self) -> Result<u64, StorageFault> {
        Ok(self.wal.len()?)
    }

    fn first(&self) -> u64 {
        self.entries
            .first()
            .map_or(self.snapshot.index + 1, |e| e.index)
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        let first = self.entries.first()?.index;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize).map(|e| e.term)
    }

    fn install_snapshot_metadata(&mut self, meta: SnapshotMetadata) {
        self.conf_state = meta.get_conf_state().clone();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.snapshot = meta;
    }

    fn check_append(&self, entries: &[Entry]) -> Result<(), StorageFault> {
        let first = entries[0].index;
        let last = entries[entries.len() - 1].index;
        if first <= self.snapshot.index {
            return Err(StorageFault::Compacted {
                first,
                kept: self.snapshot.index + 1,
            });
        }
        if first > self.last() + 1 {
            return Err(StorageFault::Gap {
                first,
                last,
                stored: self.last(),
            });
        }
        Ok(())
    }

    /// Replaces every entry at or after `entries[0].index` with `entries`.
    fn splice(&mut self, entries: &[Entry]) {
        let first = entries[0].index;
        self.entries.retain(|e| e.index < first);
        self.entries.extend_from_slice(entries);
    }

    fn replay(&mut self, record: &[u8]) -> Result<(), StorageFault> {
        let corrupt = |reason: String| StorageFault::Corrupt {
            path: self.dir.join("raft.wal"),
            reason,
        };
        let (&tag, body) = record
            .split_first()
            .ok_or_else(|| corrupt("empty record".into()))?;
        match tag {
            TAG_ENTRIES => {
                let entries =
                    decode_entries(body).map_err(|e| corrupt(format!("entry batch: {e}")))?;
                if let Some(first) = entries.first() {
                    if first.index > self.last() + 1 {
                        return Err(corrupt(format!(
                            "entry {} follows {} with a gap",
                            first.index,
                            self.last()
                        )));
                    }
                    self.splice(&entries);
                }
            }
            TAG_HARD_STATE => {
                let hs = HardState::parse_from_bytes(body)
                    .map_err(|e| corrupt(format!("hard state: {e}")))?;
                // Never move commit below what the snapshot already covers.
                let commit = hs.commit.max(self.snapshot.index);
                self.hard_state = hs;
                self.hard_state.commit = commit;
            }
            TAG_CONF_STATE => {
                self.conf_state = ConfState::parse_from_bytes(body)
                    .map_err(|e| corrupt(format!("conf state: {e}")))?;
            }
            other => return Err(corrupt(format!("unknown record tag {other:#04x}"))),
        }
        Ok(())
    }

    /// Rewrites the log as the minimal records describing the current state.
    fn rewrite_wal(&mut self) -> Result<(), StorageFault> {
        let mut records = vec![
            tagged(TAG_CONF_STATE, &self.conf_state),
            tagged(TAG_HARD_STATE, &self.hard_state),
        ];
        if !self.entries.is_empty() {
            records.push(encode_entries(&self.entries));
        }
        self.wal.rewrite(&records)?;
        Ok(())
    }
}

impl Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.first();
        let mut out = self.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match self.load_snapshot() {
            Ok(Some(snapshot)) if snapshot.get_metadata().index >= request_index => Ok(snapshot),
            Ok(_) => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
            Err(e) => Err(raft::Error::Store(StorageError::Other(Box::new(e)))),
        }
    }
}

fn tagged(tag: u8, message: &dyn protobuf::Message) -> Vec<u8> {
    let mut out = vec![tag];
    message
        .write_to_vec(&mut out)
        .expect("encoding a raft message into a Vec cannot fail");
    out
}

/// `E | count: u32 | (len: u32 | Entry)*`
fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = vec![TAG_ENTRIES];
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        let bytes = entry
            .write_to_bytes()
            .expect("encoding a raft entry cannot fail");
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

fn decode_entries(mut body: &[u8]) -> Result<Vec<Entry>, String> {
    let mut take = |n: usize| -> Result<&[u8], String> {
        if body.len() < n {
            return Err("truncated".into());
        }
        let (head, rest) = body.split_at(n);
        body = rest;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes"));
    let mut entries = Vec::with_capacity(count.min(1 << 16) as usize);
    let mut previous: Option<u64> = None;
    for _ in 0..count {
        let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let entry = Entry::parse_from_bytes(take(len)?).map_err(|e| e.to_string())?;
        if previous.is_some_and(|p| entry.index != p + 1) {
            return Err(format!("entry {} is not contiguous", entry.index));
        }
        previous = Some(entry.index);
        entries.push(entry);
    }
    Ok(entries)
}

fn write_snapshot(path: &Path, snapshot: &Snapshot) -> Result<(), StorageFault> {
    let body = snapshot
        .write_to_bytes()
        .expect("encoding a raft snapshot cannot fail");
    let mut bytes = Vec::with_capacity(body.len() + 20);
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&body);
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| io(&tmp, "create", e))?;
    file.write_all(&bytes).map_err(|e| io(&tmp, "write", e))?;
    file.sync_all().map_err(|e| io(&tmp, "sync", e))?;
    fs::rename(&tmp, path).map_err(|e| io(path, "rename", e))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StorageFault> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, "read", e)),
    };
    let corrupt = |reason: &str| StorageFault::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if bytes.len() < 20 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a berth snapshot file"));
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let body = &bytes[20..];
    if body.len() as u64 != len || crc32fast::hash(body) != crc {
        return Err(corrupt("snapshot checksum or length mismatch"));
    }
    Snapshot::parse_from_bytes(body)
        .map(Some)
        .map_err(|e| corrupt(&e.to_string()))
}

fn io(path: &Path, op: &'static str, source: std::io::Error) -> StorageFault {
    StorageFault::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &str) -> Entry {
        let mut e = Entry {
            index,
            term,
            ..Default::default()
        };
        e.set_data(data.as_bytes().to_vec().into());
        e
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    fn reopen(dir: &Path) -> DiskStorage {
        DiskStorage::open(dir).unwrap().0
    }

    fn data(s: &DiskStorage, low: u64, high: u64) -> Vec<String> {
        s.entries(low, high, None, GetEntriesContext::empty(false))
            .unwrap()
            .iter()
            .map(|e| String::from_utf8(e.get_data().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn entries_and_hard_state_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        assert_eq!(s.first_index().unwrap(), 1);
        assert_eq!(s.last_index().unwrap(), 0);
        s.persist(&[entry(1, 1, "a"), entry(2, 1, "b")], Some(&hs(1, 1, 1)))
            .unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        s.set_conf_state(&cs).unwrap();
        s.set_commit(2).unwrap();
        drop(s);
        let s = reopen(dir.path());
        assert_eq!(data(&s, 1, 3), ["a", "b"]);
        let state = s.initial_state().unwrap();
        assert_eq!(state.hard_state, hs(1, 1, 2));
        assert_eq!(state.conf_state.voters, [1, 2, 3]);
        assert_eq!(s.term(2).unwrap(), 1);
    }

    #[test]
    fn a_conflicting_suffix_is_overwritten_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        s.persist(
            &[entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")],
            None,
        )
        .unwrap();
        s.persist(&[entry(2, 2, "B")], None).unwrap();
        assert_eq!(data(&s, 1, 3), ["a", "B"]);
        drop(s);
        let s = reopen(dir.path());
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(data(&s, 1, 3), ["a", "B"]);
        assert_eq!(s.term(2).unwrap(), 2);
    }

    #[test]
    fn gaps_and_compacted_overwrites_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        s.persist(&[entry(1, 1, "a")], None).unwrap();
        assert!(matches!(
            s.persist(&[entry(3, 1, "c")], None),
            Err(StorageFault::Gap { .. })
        ));
        s.persist(&[entry(2, 1, "b"), entry(3, 1, "c")], Some(&hs(1, 1, 3)))
            .unwrap();
        s.compact(2, b"state@2".to_vec(), 0).unwrap();
        assert!(matches!(
            s.persist(&[entry(2, 2, "x")], None),
            Err(StorageFault::Compacted { .. })
        ));
    }

    #[test]
    fn compaction_keeps_the_state_and_shrinks_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        let batch: Vec<Entry> = (1..=100).map(|i| entry(i, 1, &format!("e{i}"))).collect();
        s.persist(&batch, Some(&hs(1, 1, 100))).unwrap();
        let before = s.wal_bytes().unwrap();
        s.compact(90, b"state@90".to_vec(), 5).unwrap();
        assert!(s.wal_bytes().unwrap() < before / 5);
        assert_eq!(s.first_index().unwrap(), 86);
        assert!(matches!(
            s.entries(80, 90, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        s.persist(&[entry(101, 2, "after")], Some(&hs(2, 1, 101)))
            .unwrap();
        drop(s);
        let s = reopen(dir.path());
        assert_eq!(s.first_index().unwrap(), 86);
        assert_eq!(s.last_index().unwrap(), 101);
        assert_eq!(data(&s, 100, 102), ["e100", "after"]);
        let snap = s.snapshot(90, 0).unwrap();
        assert_eq!(snap.get_metadata().index, 90);
        assert_eq!(snap.get_data(), b"state@90");
        assert_eq!(s.term(90).unwrap(), 1);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 101);
    }

    #[test]
    fn applying_a_leader_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        s.persist(&[entry(1, 1, "a")], Some(&hs(1, 0, 1))).unwrap();
        let mut snap = Snapshot::default();
        snap.set_data(b"leader state".to_vec().into());
        snap.mut_metadata().index = 50;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.apply_snapshot(&snap).unwrap();
        drop(s);
        let s = reopen(dir.path());
        assert_eq!(s.first_index().unwrap(), 51);
        assert_eq!(s.last_index().unwrap(), 50);
        assert_eq!(s.term(50).unwrap(), 3);
        let state = s.initial_state().unwrap();
        assert_eq!(state.hard_state.commit, 50);
        assert_eq!(state.hard_state.term, 3);
        assert_eq!(state.conf_state.voters, [1, 2, 3]);
        assert_eq!(
            s.load_snapshot().unwrap().unwrap().get_data(),
            b"leader state"
        );
    }

    #[test]
    fn a_crash_between_snapshot_and_log_rewrite_recovers_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        s.persist(&[entry(1, 1, "a"), entry(2, 1, "b")], Some(&hs(1, 0, 2)))
            .unwrap();
        drop(s);
        // The leader's snapshot reached the disk, the log rewrite did not.
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 40;
        snap.mut_metadata().term = 4;
        write_snapshot(&dir.path().join("snapshot"), &snap).unwrap();
        let s = reopen(dir.path());
        assert_eq!(s.first_index().unwrap(), 41);
        assert_eq!(s.last_index().unwrap(), 40);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 40);
    }

    #[test]
    fn a_torn_tail_loses_only_the_unacknowledged_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        s.persist(&[entry(1, 1, "a"), entry(2, 1, "b")], Some(&hs(1, 1, 2)))
            .unwrap();
        s.persist(&[entry(3, 1, "c")], None).unwrap();
        drop(s);
        let wal = dir.path().join("raft.wal");
        let bytes = fs::read(&wal).unwrap();
        fs::write(&wal, &bytes[..bytes.len() - 3]).unwrap();
        let (s, report) = DiskStorage::open(dir.path()).unwrap();
        assert!(report.wal.torn_tail_bytes > 0);
        assert_eq!(data(&s, 1, 3), ["a", "b"]);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 2);
    }

    #[test]
    fn a_corrupt_snapshot_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = reopen(dir.path());
        s.persist(&[entry(1, 1, "a")], Some(&hs(1, 1, 1))).unwrap();
        s.compact(1, b"state".to_vec(), 0).unwrap();
        drop(s);
        let path = dir.path().join("snapshot");
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let err = DiskStorage::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("snapshot checksum"), "{err}");
    }
}
