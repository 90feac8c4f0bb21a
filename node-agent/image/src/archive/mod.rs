//! Moving images in and out of the store as files: `load` (OCI image layout, directory or
//! tar, and `docker save` tarballs), `save` (OCI layout or Docker format), and `import` (a
//! plain root filesystem, tar or directory, becomes a one-layer image).
//!
//! Everything here goes through the store's verified writes; this module must not write
//! under the store root itself.

use std::io;
use std::path::PathBuf;

use serde_json::json;

use crate::digest::Digest;
use crate::manifest::media_types;
use crate::reference::ReferenceError;
use crate::store::{Store, StoreError};

pub mod change;
pub mod import;
pub mod load;
pub mod save;
mod time;
pub mod tree;

pub use import::{ImportOptions, Imported, import_dir, import_tar};
pub use load::{LoadedImage, load_dir, load_tar};
pub use save::{SaveFormat, save};
pub use time::now_rfc3339;

/// Errors of loading, saving and importing images.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("reading the archive: {source}")]
    Read { source: io::Error },
    #[error("writing the archive: {source}")]
    Write { source: io::Error },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("not a valid image archive: {reason}")]
    Invalid { reason: String },
    #[error("invalid change {change:?}: {reason}")]
    BadChange { change: String, reason: String },
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

fn invalid(reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid {
        reason: reason.into(),
    }
}

/// The OCI layer media type for a blob, chosen from its first bytes.
pub(crate) fn layer_media_type(store: &Store, digest: &Digest) -> Result<&'static str> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let mut file = store.open_blob(digest)?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(ArchiveError::Read { source: e }),
        }
    }
    Ok(match crate::unpack::Compression::detect(&head[..n]) {
        crate::unpack::Compression::None => media_types::OCI_LAYER,
        crate::unpack::Compression::Gzip => media_types::OCI_LAYER_GZIP,
        crate::unpack::Compression::Zstd => media_types::OCI_LAYER_ZSTD,
    })
}

/// Writes the OCI manifest berth builds for images it assembles itself (import, legacy
/// `docker save` archives). Deterministic: the same config and layers always give the same
/// manifest digest, which is what makes legacy archives round-trip.
pub(crate) fn write_manifest(
    store: &Store,
    config: (&Digest, u64),
    layers: &[(Digest, u64, &'static str)],
) -> Result<Digest> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, size, media_type)| json!({"mediaType": media_type, "digest": d.to_string(), "size": size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": config.0.to_string(), "size": config.1},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
    Ok(store.write_blob_bytes(&bytes)?)
}
