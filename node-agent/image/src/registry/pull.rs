//! Pulling an image from a registry into the content store.
//!
//! Order: resolve the reference to a manifest or index (digest verified), pick the platform's
//! manifest from an index, download config and layers several at once through the store's
//! resumable ingests (a `Range` request continues whatever an interrupted pull left), let the
//! store verify each blob on commit, and only then record the image under its name. Layers
//! are stored as they came (gzip, zstd or plain tar); unpacking is not this module's job. A
//! failure at any step leaves no image record, only reusable verified blobs and partials.

use std::io::Write as _;

use futures_util::{StreamExt as _, TryStreamExt as _};

use super::client::{RegistryClient, RegistryError, RetryPolicy};
use super::progress::{BlobOutcome, Event, Observer};
use crate::digest::Digest;
use crate::manifest::{Manifest, Platform, descriptor_digest, select_manifest};
use crate::reference::Reference;
use crate::store::{Store, StoreError};

/// Bytes a download processes before it lets other tasks run.
const YIELD_EVERY: usize = 1 << 20;

/// How many blobs download at once by default (Docker's default is 3).
pub const DEFAULT_CONCURRENCY: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid platform {input:?}: expected os/arch[/variant], e.g. linux/amd64")]
    BadPlatform { input: String },
    #[error("{reference}: no image for platform {platform} (the index has: {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{reference}: {digest} is {what}, expected an image manifest")]
    NotAnImage {
        reference: String,
        digest: String,
        what: &'static str,
    },
    #[error("blob {digest}: {reason}")]
    Blob { digest: String, reason: String },
    #[error("writing blob {digest} into the store: {source}")]
    Write {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("background task failed: {0}")]
    Task(String),
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// Blobs downloaded at once.
    pub concurrency: usize,
    /// Attempts per blob when the connection drops mid-download; each resumes with `Range`.
    pub retry: RetryPolicy,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: default_platform(),
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryPolicy::default(),
        }
    }
}

/// linux/amd64 unless the host is something else, as the images berth runs are for its host.
pub fn default_platform() -> Platform {
    Platform::host()
}

/// Parses `os/arch[/variant]`.
pub fn parse_platform(input: &str) -> Result<Platform, PullError> {
    let bad = || PullError::BadPlatform {
        input: input.to_string(),
    };
    let parts: Vec<&str> = input.trim().split('/').collect();
    if parts.iter().any(|p| p.is_empty()) || !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    Ok(Platform {
        os: parts[0].to_ascii_lowercase(),
        architecture: parts[1].to_ascii_lowercase(),
        variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
    })
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// What the reference now points at in the store (an index or a manifest).
    pub digest: Digest,
    /// The platform's image manifest.
    pub manifest: Digest,
    pub layers: usize,
    /// Blobs that had to be downloaded (the rest were in the store already).
    pub downloaded: usize,
}

/// Pulls `reference` into `store` and names it there.
pub async fn pull(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    observer: &dyn Observer,
) -> Result<PullReport, PullError> {
    // Held until the image is recorded so garbage collection never takes our fresh blobs.
    let lease = blocking({
        let store = store.clone();
        move || store.lease()
    })
    .await?;
    let repository = reference.repository();
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_string(),
        (None, None) => "latest".to_string(),
    };
    let top = client.get_manifest(repository, &wanted).await?;
    let top_digest = store_bytes(store, &top.bytes).await?;
    let (manifest_digest, manifest) = match Manifest::parse(&top_digest, &top.bytes)? {
        Manifest::Image(manifest) => (top_digest.clone(), *manifest),
        Manifest::Index(index) => {
            let Some(descriptor) = select_manifest(&index, &options.platform) else {
                let available: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|d| d.platform().as_ref())
                    .map(|p| {
                        let mut s = format!("{}/{}", p.os(), p.architecture());
                        if let Some(v) = p.variant() {
                            s.push('/');
                            s.push_str(v);
                        }
                        s
                    })
                    .collect();
                return Err(PullError::NoPlatform {
                    reference: reference.to_string(),
                    platform: options.platform.to_string(),
                    available: if available.is_empty() {
                        "nothing".to_string()
                    } else {
                        available.join(", ")
                    },
                });
            };
            let child_digest = descriptor_digest(&top_digest, descriptor)?;
            let child = client
                .get_manifest(repository, &child_digest.to_string())
                .await?;
            let stored = store_bytes(store, &child.bytes).await?;
            match Manifest::parse(&stored, &child.bytes)? {
                Manifest::Image(manifest) => (stored, *manifest),
                Manifest::Index(_) => {
                    return Err(PullError::NotAnImage {
                        reference: reference.to_string(),
                        digest: stored.to_string(),
                        what: "a nested index",
                    });
                }
            }
        }
    };
    observer.event(&Event::Resolved {
        digest: &top_digest.to_string(),
        manifest: &manifest_digest.to_string(),
        layers: manifest.layers().len(),
    });

    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for descriptor in std::iter::once(manifest.config()).chain(manifest.layers().iter()) {
        let digest = descriptor_digest(&manifest_digest, descriptor)?;
        if !blobs.iter().any(|(d, _)| *d == digest) {
            blobs.push((digest, descriptor.size()));
        }
    }
    // Owned items: borrowed ones make the future lose `Send` (a higher-ranked lifetime).
    let outcomes: Vec<BlobOutcome> = futures_util::stream::iter(blobs)
        .map(|(digest, size)| async move {
            fetch_blob(client, store, repository, &digest, size, options, observer).await
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    let downloaded = outcomes
        .iter()
        .filter(|o| **o == BlobOutcome::Downloaded)
        .count();

    blocking({
        let store = store.clone();
        let reference = reference.clone();
        let target = top_digest.clone();
        move || store.put_image(&reference, &target)
    })
    .await?;
    drop(lease);
    Ok(PullReport {
        digest: top_digest,
        manifest: manifest_digest,
        layers: manifest.layers().len(),
        downloaded,
    })
}

/// Writes verified manifest bytes into the store; returns their digest.
async fn store_bytes(store: &Store, bytes: &bytes::Bytes) -> Result<Digest, PullError> {
    let store = store.clone();
    let bytes = bytes.clone();
    blocking(move || store.write_blob_bytes(&bytes)).await
}

/// Downloads one blob into the store, resuming a partial one, retrying dropped connections
/// from where they stopped; the store verifies size and digest on commit.
async fn fetch_blob(
    client: &RegistryClient,
    store: &Store,
    repository: &str,
    digest: &Digest,
    size: u64,
    options: &PullOptions,
    observer: &dyn Observer,
) -> Result<BlobOutcome, PullError> {
    let name = digest.to_string();
    if store.has_blob(digest) {
        observer.event(&Event::BlobDone {
            digest: &name,
            size,
            outcome: BlobOutcome::AlreadyPresent,
        });
        return Ok(BlobOutcome::AlreadyPresent);
    }
    let mut ingest = blocking({
        let (store, digest) = (store.clone(), digest.clone());
        move || store.begin_ingest(&digest, size)
    })
    .await?;
    if ingest.is_complete() {
        observer.event(&Event::BlobDone {
            digest: &name,
            size,
            outcome: BlobOutcome::AlreadyPresent,
        });
        return Ok(BlobOutcome::AlreadyPresent);
    }
    observer.event(&Event::BlobStart {
        digest: &name,
        size,
        offset: ingest.offset(),
    });
    let mut failures = 0u32;
    while ingest.offset() < size {
        let offset = ingest.offset();
        let download = match client.get_blob(repository, &name, offset).await {
            Ok(download) => download,
            Err(e) if e.is_transient() && failures + 1 < options.retry.attempts => {
                tokio::time::sleep(options.retry.delay(failures)).await;
                failures += 1;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if download.offset != offset {
            // The registry ignored `Range`: throw the partial away and take the whole blob.
            ingest = blocking({
                let (store, digest) = (store.clone(), digest.clone());
                move || {
                    ingest.abort()?;
                    store.begin_ingest(&digest, size)
                }
            })
            .await?;
            observer.event(&Event::BlobRestart { digest: &name });
        }
        let mut stream = download.into_stream();
        let mut since_yield = 0usize;
        let outcome = loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    ingest
                        .write_all(&chunk)
                        .map_err(|source| PullError::Write {
                            digest: name.clone(),
                            source,
                        })?;
                    observer.event(&Event::BlobProgress {
                        digest: &name,
                        done: ingest.offset(),
                        size,
                    });
                    // Hashing and writing are CPU work and a fast registry never makes us
                    // wait: give other downloads (and a cancellation) a turn every MiB.
                    since_yield += chunk.len();
                    if since_yield >= YIELD_EVERY {
                        since_yield = 0;
                        tokio::task::yield_now().await;
                    }
                }
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            }
        };
        match outcome {
            Ok(()) if ingest.offset() >= size => {}
            // The body ended early or the connection broke: resume from what we have.
            Ok(()) | Err(_) if failures + 1 < options.retry.attempts => {
                tokio::time::sleep(options.retry.delay(failures)).await;
                failures += 1;
            }
            Ok(()) => {
                return Err(PullError::Blob {
                    digest: name,
                    reason: format!("the registry sent only {} of {size} bytes", ingest.offset()),
                });
            }
            Err(e) => {
                return Err(PullError::Blob {
                    digest: name,
                    reason: super::client::describe_http_error(&e),
                });
            }
        }
    }
    blocking(move || ingest.commit()).await?;
    observer.event(&Event::BlobDone {
        digest: &name,
        size,
        outcome: BlobOutcome::Downloaded,
    });
    Ok(BlobOutcome::Downloaded)
}

/// Runs store work (file I/O, fsync, hashing of partials) off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, PullError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(PullError::from),
        Err(e) => Err(PullError::Task(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse() {
        let p = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()),
            ("linux", "arm64", Some("v8"))
        );
        assert_eq!(parse_platform("linux/amd64").unwrap().variant, None);
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(parse_platform(bad).is_err(), "{bad}");
        }
    }
}
