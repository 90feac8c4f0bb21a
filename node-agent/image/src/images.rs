//! Image records: which names point at which manifest (or index) digest, plus dangling
//! images (a manifest that lost its last name but was not removed, like Docker's
//! `<none>:<none>`). Also the resolved [`Image`] view used by inspect, export and unpack.
//!
//! Records live in one small JSON file, `images.json`, replaced atomically (temp + fsync +
//! rename + dir fsync) under the store's metadata lock. A few hundred records fit in a few
//! kilobytes, so a rewrite per change costs less than one fsync; a database would add a
//! dependency and a second crash-recovery story for no gain. This module must not delete
//! blobs: that is `gc.rs`.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil;
use crate::manifest::descriptor_digest;
use crate::reference::Reference;
use crate::store::{Result, Store, StoreError};

const RECORDS_FILE: &str = "images.json";

/// One image record: a name (or none, for a dangling image) and its target digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// `None` for a dangling image.
    pub reference: Option<Reference>,
    /// Manifest or index digest.
    pub target: Digest,
    /// When the record was last set, in seconds since the Unix epoch.
    pub updated: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordsFile {
    version: u32,
    /// Keyed by the normalized reference string.
    images: BTreeMap<String, Entry>,
    /// Keyed by target digest.
    dangling: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    target: Digest,
    updated: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key a reference is recorded under: `name@digest` when pinned, else `name:tag`.
fn record_key(reference: &Reference) -> String {
    match reference.digest() {
        Some(d) => reference.with_digest(d.clone()).to_string(),
        None => reference.to_string(),
    }
}

impl RecordsFile {
    fn is_named(&self, target: &Digest) -> bool {
        self.images.values().any(|e| &e.target == target)
    }
}

impl Store {
    fn records_path(&self) -> PathBuf {
        self.root().join(RECORDS_FILE)
    }

    fn load_records(&self) -> Result<RecordsFile> {
        let path = self.records_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptMetadata {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RecordsFile {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(StoreError::Io {
                op: "read",
                path,
                source: e,
            }),
        }
    }

    fn save_records(&self, records: &RecordsFile) -> Result<()> {
        let path = self.records_path();
        let bytes =
            serde_json::to_vec_pretty(records).map_err(|e| StoreError::CorruptMetadata {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        fsutil::atomic_write(&path, &bytes).map_err(StoreError::io("write", &path))
    }

    /// Runs a read-modify-write cycle on the records under the metadata lock.
    fn update_records<T>(&self, f: impl FnOnce(&mut RecordsFile) -> Result<T>) -> Result<T> {
        let _lock = self.metadata_lock()?;
        let mut records = self.load_records()?;
        let out = f(&mut records)?;
        self.save_records(&records)?;
        Ok(out)
    }

    /// Points `reference` at a manifest or index already in the store. A reference pinned
    /// to a digest must name this target. If the name moves away from another target that
    /// then has no name left, that image becomes dangling. Returns the previous target.
    pub fn put_image(&self, reference: &Reference, target: &Digest) -> Result<Option<Digest>> {
        if let Some(pinned) = reference.digest() {
            if pinned != target {
                return Err(StoreError::ReferenceDigestMismatch {
                    reference: reference.to_string(),
                    pinned: pinned.clone(),
                    target: target.clone(),
                });
            }
        }
        if !self.has_blob(target) {
            return Err(StoreError::BlobNotFound {
                digest: target.clone(),
            });
        }
        // Refuse to name something that is not a manifest.
        self.read_manifest(target)?;
        self.update_records(|records| {
            let entry = Entry {
                target: target.clone(),
                updated: now(),
            };
            let previous = records.images.insert(record_key(reference), entry);
            records.dangling.remove(&target.to_string());
            if let Some(prev) = &previous {
                if &prev.target != target && !records.is_named(&prev.target) {
                    records.dangling.insert(
                        prev.target.to_string(),
                        Entry {
                            target: prev.target.clone(),
                            updated: now(),
                        },
                    );
                }
            }
            Ok(previous.map(|p| p.target))
        })
    }

    /// Records an image without a name (a load of an unnamed archive). No-op if it has one.
    pub fn put_dangling(&self, target: &Digest) -> Result<()> {
        if !self.has_blob(target) {
            return Err(StoreError::BlobNotFound {
                digest: target.clone(),
            });
        }
        self.read_manifest(target)?;
        self.update_records(|records| {
            if !records.is_named(target) {
                records.dangling.insert(
                    target.to_string(),
                    Entry {
                        target: target.clone(),
                        updated: now(),
                    },
                );
            }
            Ok(())
        })
    }

    /// The target digest a reference points at. A digest-pinned reference also resolves
    /// when any record of the same repository (or a dangling record) has that target.
    pub fn resolve(&self, reference: &Reference) -> Result<Digest> {
        let records = self.load_records()?;
        if let Some(entry) = records.images.get(&record_key(reference)) {
            return Ok(entry.target.clone());
        }
        if let Some(pinned) = reference.digest() {
            let name = reference.name();
            let known = records.images.iter().any(|(key, e)| {
                &e.target == pinned && Reference::parse(key).is_ok_and(|r| r.name() == name)
            });
            if known && self.has_blob(pinned) {
                return Ok(pinned.clone());
            }
        }
        Err(StoreError::ImageNotFound {
            reference: reference.familiar(),
        })
    }

    /// Every record: named images sorted by name, then dangling ones.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let records = self.load_records()?;
        let mut out = Vec::new();
        for (key, entry) in &records.images {
            let reference = Reference::parse(key).map_err(|e| StoreError::CorruptMetadata {
                path: self.records_path(),
                reason: e.to_string(),
            })?;
            out.push(ImageRecord {
                reference: Some(reference),
                target: entry.target.clone(),
                updated: entry.updated,
            });
        }
        for entry in records.dangling.values() {
            out.push(ImageRecord {
                reference: None,
                target: entry.target.clone(),
                updated: entry.updated,
            });
        }
        Ok(out)
    }

    /// Removes one name. Returns the target it pointed at. The image's blobs stay until
    /// garbage collection finds them unreferenced.
    pub fn untag(&self, reference: &Reference) -> Result<Digest> {
        self.update_records(|records| {
            records
                .images
                .remove(&record_key(reference))
                .map(|e| e.target)
                .ok_or_else(|| StoreError::ImageNotFound {
                    reference: reference.familiar(),
                })
        })
    }

    /// Removes every record (names and dangling) pointing at `target`; returns the names.
    pub fn remove_image(&self, target: &Digest) -> Result<Vec<Reference>> {
        self.update_records(|records| {
            let keys: Vec<String> = records
                .images
                .iter()
                .filter(|(_, e)| &e.target == target)
                .map(|(k, _)| k.clone())
                .collect();
            let mut removed = Vec::new();
            for key in keys {
                records.images.remove(&key);
                if let Ok(r) = Reference::parse(&key) {
                    removed.push(r);
                }
            }
            records.dangling.remove(&target.to_string());
            Ok(removed)
        })
    }

    /// Removes dangling records only; returns their targets.
    pub fn remove_dangling(&self) -> Result<Vec<Digest>> {
        self.update_records(|records| {
            let targets = records
                .dangling
                .values()
                .map(|e| e.target.clone())
                .collect();
            records.dangling.clear();
            Ok(targets)
        })
    }

    /// Names currently pointing at `target`.
    pub fn names_of(&self, target: &Digest) -> Result<Vec<Reference>> {
        Ok(self
            .list_images()?
            .into_iter()
            .filter(|r| &r.target == target)
            .filter_map(|r| r.reference)
            .collect())
    }

    /// Finds an image the way the CLI accepts one: a reference (`busybox`, `x:1`,
    /// `name@sha256:…`), or an image id / target digest, full or as a unique hex prefix of at
    /// least 4 characters (`sha256:` optional). Returns the record's target digest.
    pub fn lookup(&self, query: &str) -> Result<Digest> {
        if let Ok(reference) = Reference::parse(query) {
            if let Ok(target) = self.resolve(&reference) {
                return Ok(target);
            }
        }
        let hex = query.strip_prefix("sha256:").unwrap_or(query);
        let is_hex = hex.len() >= 4
            && hex.len() <= 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex {
            let mut found: Vec<Digest> = Vec::new();
            for record in self.list_images()? {
                if found.contains(&record.target) {
                    continue;
                }
                let id = self.image(&record.target).ok().map(|i| i.id().clone());
                let matches = record.target.hex().starts_with(hex)
                    || id.is_some_and(|id| id.hex().starts_with(hex));
                if matches {
                    found.push(record.target.clone());
                }
            }
            match found.len() {
                1 => return Ok(found.remove(0)),
                0 => {}
                _ => {
                    return Err(StoreError::Ambiguous {
                        reference: query.to_owned(),
                    });
                }
            }
        }
        Err(StoreError::ImageNotFound {
            reference: query.to_owned(),
        })
    }

    /// The resolved view of an image: its platform manifest and config.
    pub fn image(&self, target: &Digest) -> Result<Image> {
        let (manifest_digest, manifest) = self.platform_manifest(target)?;
        let config_digest = descriptor_digest(&manifest_digest, manifest.config())?;
        let config = self.read_config(&config_digest)?;
        Ok(Image {
            target: target.clone(),
            manifest_digest,
            manifest,
            config_digest,
            config,
        })
    }
}

/// An image resolved for this host: the record's target, the platform manifest it leads
/// to, and the config.
#[derive(Debug, Clone)]
pub struct Image {
    /// What the record points at (manifest or index).
    pub target: Digest,
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
}

impl Image {
    /// The image id, as Docker defines it: the config digest.
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Layer descriptors, base first.
    pub fn layers(&self) -> &[Descriptor] {
        self.manifest.layers()
    }

    /// Uncompressed layer digests from the config, base first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| {
                Digest::parse(d).map_err(|e| StoreError::BadContent {
                    what: "image config",
                    digest: self.config_digest.clone(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Sum of the layer blob sizes (compressed as stored).
    pub fn size(&self) -> u64 {
        self.layers().iter().map(|l| l.size()).sum()
    }
}
