//! What pull and push report while they run, for a terminal UI or a log. Rendering lives in
//! the CLI; this module only defines the events and a do-nothing observer.

/// How a blob ended up where it had to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Pull: the store already had it. Push: the registry already had it.
    AlreadyPresent,
    /// Pull: downloaded (perhaps resumed) and verified.
    Downloaded,
    /// Push: uploaded.
    Uploaded,
    /// Push: mounted from another repository of the same registry.
    Mounted,
}

/// One step of a pull or push.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// The reference resolved to `digest` (the index or manifest the tag points at) and the
    /// image manifest `manifest` with `layers` layers.
    Resolved {
        digest: &'a str,
        manifest: &'a str,
        layers: usize,
    },
    /// A blob transfer starts; `offset` > 0 when a pull resumes a partial download.
    BlobStart {
        digest: &'a str,
        size: u64,
        offset: u64,
    },
    /// More bytes of a blob went over the wire; `done` counts from the blob's start.
    BlobProgress {
        digest: &'a str,
        done: u64,
        size: u64,
    },
    BlobDone {
        digest: &'a str,
        size: u64,
        outcome: BlobOutcome,
    },
    /// A pull starts the download of `digest` over from zero (the registry ignored `Range`).
    BlobRestart { digest: &'a str },
    /// Push: a manifest went up under `reference`.
    ManifestPushed { digest: &'a str, reference: &'a str },
}

/// Receives events; called from download tasks, so it must be cheap and thread-safe.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// Ignores everything (`-q`, tests).
pub struct Silent;

impl Observer for Silent {
    fn event(&self, _event: &Event<'_>) {}
}
