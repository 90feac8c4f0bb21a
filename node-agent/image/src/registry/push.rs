//! Pushing an image from the content store to a registry.
//!
//! Order: blobs first (config and layers, several at once; skipped when the registry has
//! them, mounted when another repository of the same registry that we pushed or pulled has
//! them), then child manifests by digest, then the top manifest or index under the tag, so a
//! tag never points at something incomplete. It reads the store and never writes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::client::{BlobPushOutcome, BlobUpload, RegistryClient, RegistryError, UploadMode};
use super::progress::{BlobOutcome, Event, Observer};
use crate::digest::Digest;
use crate::manifest::{Manifest, descriptor_digest, media_types};
use crate::reference::Reference;
use crate::store::{Store, StoreError};

/// Blobs uploaded at once by default (Docker's default is 5).
pub const DEFAULT_CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone)]
pub struct PushOptions {
    pub mode: UploadMode,
    pub concurrency: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            mode: UploadMode::Monolithic,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct PushReport {
    /// The digest the tag points at in the registry.
    pub digest: Option<Digest>,
    pub uploaded: usize,
    pub mounted: usize,
    pub existing: usize,
    /// The local image was an index with manifests for other platforms that were never
    /// pulled; only this platform's manifest was pushed, so the tag names it alone.
    pub platform_only: bool,
}

/// One manifest blob to put, children before parents.
struct ManifestToPush {
    digest: Digest,
    bytes: Bytes,
    media_type: String,
}

/// Pushes the local image named `reference` to its registry under the same name.
pub async fn push(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    options: &PushOptions,
    observer: Arc<dyn Observer>,
) -> Result<PushReport, PushError> {
    let plan = blocking({
        let (store, reference) = (store.clone(), reference.clone());
        move || plan(&store, &reference)
    })
    .await??;
    let repository = reference.repository();
    let tag = reference.tag().unwrap_or("latest");
    let mut report = PushReport {
        platform_only: plan.platform_only,
        ..PushReport::default()
    };
    if let Some(last) = plan.manifests.last() {
        observer.event(&Event::Resolved {
            digest: &last.digest.to_string(),
            manifest: &plan.manifests[0].digest.to_string(),
            layers: plan.blobs.len().saturating_sub(1),
        });
    }

    let outcomes: Vec<BlobPushOutcome> = futures_util::stream::iter(plan.blobs.clone())
        .map(|(digest, size)| {
            let observer = observer.clone();
            let store = store.clone();
            let mount_from = plan.mount_sources.get(&digest).cloned();
            async move {
                let name = digest.to_string();
                let path = store.blob_path(&digest);
                let done = Arc::new(AtomicU64::new(0));
                let counter = {
                    let (observer, name) = (observer.clone(), name.clone());
                    Arc::new(move |n: u64| {
                        let total = done.fetch_add(n, Ordering::Relaxed) + n;
                        observer.event(&Event::BlobProgress {
                            digest: &name,
                            done: total.min(size),
                            size,
                        });
                    })
                };
                observer.event(&Event::BlobStart {
                    digest: &name,
                    size,
                    offset: 0,
                });
                let outcome = client
                    .push_blob(
                        repository,
                        &BlobUpload {
                            digest: &name,
                            size,
                            path: &path,
                            mode: options.mode,
                            mount_from: mount_from.as_deref(),
                            counter: Some(counter),
                        },
                    )
                    .await?;
                observer.event(&Event::BlobDone {
                    digest: &name,
                    size,
                    outcome: match outcome {
                        BlobPushOutcome::AlreadyExists => BlobOutcome::AlreadyPresent,
                        BlobPushOutcome::Mounted => BlobOutcome::Mounted,
                        BlobPushOutcome::Uploaded => BlobOutcome::Uploaded,
                    },
                });
                Ok::<_, PushError>(outcome)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    for outcome in outcomes {
        match outcome {
            BlobPushOutcome::AlreadyExists => report.existing += 1,
            BlobPushOutcome::Mounted => report.mounted += 1,
            BlobPushOutcome::Uploaded => report.uploaded += 1,
        }
    }

    let count = plan.manifests.len();
    for (i, manifest) in plan.manifests.into_iter().enumerate() {
        let digest_text = manifest.digest.to_string();
        // Children go up by digest; the last one (the top) goes up under the tag.
        let target = if i + 1 == count {
            tag
        } else {
            digest_text.as_str()
        };
        client
            .put_manifest(repository, target, &manifest.media_type, manifest.bytes)
            .await?;
        observer.event(&Event::ManifestPushed {
            digest: &digest_text,
            reference: target,
        });
        report.digest = Some(manifest.digest);
    }
    Ok(report)
}

struct Plan {
    /// Config and layer blobs of every manifest, each once, with sizes.
    blobs: Vec<(Digest, u64)>,
    /// Manifests in push order: children first, the tagged one last.
    manifests: Vec<ManifestToPush>,
    /// For a blob, another repository of the same registry known to hold it.
    mount_sources: HashMap<Digest, String>,
    platform_only: bool,
}

fn plan(store: &Store, reference: &Reference) -> Result<Plan, PushError> {
    let target = store.resolve(reference)?;
    let read = |digest: &Digest| -> Result<(Manifest, ManifestToPush), PushError> {
        let bytes = store.read_blob(digest)?;
        let manifest = Manifest::parse(digest, &bytes)?;
        let media_type = declared_media_type(&bytes).unwrap_or_else(|| {
            match manifest {
                Manifest::Image(_) => media_types::OCI_MANIFEST,
                Manifest::Index(_) => media_types::OCI_INDEX,
            }
            .to_string()
        });
        Ok((
            manifest,
            ManifestToPush {
                digest: digest.clone(),
                bytes: Bytes::from(bytes),
                media_type,
            },
        ))
    };
    let (top, top_push) = read(&target)?;
    let mut manifests = Vec::new();
    let mut images = Vec::new();
    let mut platform_only = false;
    match top {
        Manifest::Image(m) => {
            images.push((target.clone(), *m));
            manifests.push(top_push);
        }
        Manifest::Index(index) => {
            let children: Vec<Digest> = index
                .manifests()
                .iter()
                .map(|d| descriptor_digest(&target, d))
                .collect::<Result<_, _>>()?;
            if children.iter().all(|c| store.has_blob(c)) {
                for child in &children {
                    let (parsed, push) = read(child)?;
                    if let Manifest::Image(m) = parsed {
                        images.push((child.clone(), *m));
                    }
                    manifests.push(push);
                }
                manifests.push(top_push);
            } else {
                // A registry refuses an index whose manifests it lacks, and we only have this
                // platform's: push that manifest alone.
                let (digest, manifest) = store.platform_manifest(&target)?;
                let (_, push) = read(&digest)?;
                images.push((digest, manifest));
                manifests.push(push);
                platform_only = true;
            }
        }
    }
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for (digest, manifest) in &images {
        for descriptor in std::iter::once(manifest.config()).chain(manifest.layers().iter()) {
            let blob = descriptor_digest(digest, descriptor)?;
            if !blobs.iter().any(|(d, _)| *d == blob) {
                blobs.push((blob, descriptor.size()));
            }
        }
    }
    // Other local images from the same registry: their blobs are likely there already.
    let mut mount_sources = HashMap::new();
    for record in store.list_images()? {
        let Some(other) = record.reference else {
            continue;
        };
        if other.domain() != reference.domain() || other.repository() == reference.repository() {
            continue;
        }
        for blob in store.reachable_blobs(&record.target)? {
            if blobs.iter().any(|(d, _)| *d == blob) {
                mount_sources
                    .entry(blob)
                    .or_insert_with(|| other.repository().to_string());
            }
        }
    }
    Ok(Plan {
        blobs,
        manifests,
        mount_sources,
        platform_only,
    })
}

fn declared_media_type(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

async fn blocking<T, F>(f: F) -> Result<T, PushError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PushError::Task(e.to_string()))
}
