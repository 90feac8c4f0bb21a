//! Garbage collection: deletes blobs no image record reaches, and ingest leftovers nobody is
//! writing. Mark (walk every record's manifest graph) then sweep, under the exclusive side of
//! the lease lock so no writer can be between "blob written" and "record saved".
//!
//! Must not change image records; pruning records is `images.rs`, freeing their content is
//! here.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::store::{Result, Store, StoreError};

/// What garbage collection may delete.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Partial resumable downloads older than this are deleted; younger ones are kept so an
    /// interrupted pull can still resume.
    pub ingest_max_age: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            ingest_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one collection freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: Vec<Digest>,
    pub bytes_freed: u64,
    pub ingests_removed: usize,
    pub snapshots_removed: Vec<Digest>,
}

impl Store {
    /// Every blob reachable from some image record (named or dangling).
    pub fn referenced_blobs(&self) -> Result<BTreeSet<Digest>> {
        let mut live = BTreeSet::new();
        let targets: BTreeSet<Digest> = self.list_images()?.into_iter().map(|r| r.target).collect();
        for target in targets {
            live.extend(self.reachable_blobs(&target)?);
        }
        Ok(live)
    }

    /// Collects garbage, failing with [`StoreError::Busy`] if any lease is held (a pull or
    /// load in progress somewhere).
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let Some(_exclusive) = self.try_exclusive()? else {
            return Err(StoreError::Busy {
                root: self.root().to_owned(),
            });
        };
        let mut report = GcReport::default();
        let live = self.referenced_blobs()?;
        for digest in self.list_blobs()? {
            if !live.contains(&digest) {
                let size = self.blob_size(&digest).unwrap_or(0);
                self.delete_blob(&digest)?;
                report.bytes_freed += size;
                report.blobs_removed.push(digest);
            }
        }
        report.ingests_removed = self.sweep_ingests(options)?;
        report.snapshots_removed = self.sweep_snapshots()?;
        Ok(report)
    }

    /// Like [`Store::gc`] but returns `Ok(None)` instead of an error when the store is busy
    /// (used after `rm`: the content is freed by a later collection).
    pub fn try_gc(&self, options: &GcOptions) -> Result<Option<GcReport>> {
        match self.gc(options) {
            Ok(report) => Ok(Some(report)),
            Err(StoreError::Busy { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes one-shot temp files (their writers are gone: we hold the exclusive lock) and
    /// partial ingests older than the limit.
    fn sweep_ingests(&self, options: &GcOptions) -> Result<usize> {
        let dir = self.root().join("ingest");
        let mut removed = 0;
        let now = SystemTime::now();
        for entry in fs::read_dir(&dir).map_err(StoreError::io("read directory", &dir))? {
            let entry = entry.map_err(StoreError::io("read directory", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = if name.starts_with("tmp-") {
                true
            } else {
                let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(now);
                now.duration_since(modified).unwrap_or_default() >= options.ingest_max_age
            };
            if !stale {
                continue;
            }
            let path = entry.path();
            let gone = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            if gone.is_ok() {
                removed += 1;
            }
        }
        // Temp files of an interrupted images.json update; the metadata lock keeps a live
        // update's temp file safe from this sweep.
        let _lock = self.metadata_lock()?;
        let root = self.root();
        for entry in fs::read_dir(root)
            .map_err(StoreError::io("read directory", root))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(".tmp-")
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
