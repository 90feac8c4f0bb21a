//! Layers a build makes: a tar stream written gzip-compressed into the store (its diff_id
//! computed on the way), then unpacked once into `snapshots/layers/<diff_id>` so later
//! steps can use it as an overlay lower dir. Also the conversion of an overlay upper dir
//! (what a `RUN` changed) into an OCI layer: a 0/0 character device becomes a `.wh.<name>`
//! whiteout, a `trusted.overlay.opaque=y` directory gets a `.wh..wh..opq` entry, and
//! overlayfs' own `trusted.overlay.*` attributes are dropped.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::archive::tree::{Tree, append_tree};
use berth_image::digest::DigestWriter;
use berth_image::unpack::{UnpackOptions, unpack_layer};
use berth_image::{Digest, Snapshotter, Store, media_types};
use serde::{Deserialize, Serialize};

use crate::BuildError;

/// One layer of a build state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub diff_id: Digest,
    /// The stored (compressed) blob.
    pub blob: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A tar builder over the store's blob writer.
pub type TarOut<'a> = tar::Builder<&'a mut dyn Write>;

/// Writes a layer produced by `produce` into the store and unpacks it as a snapshot.
pub fn write_layer(
    store: &Store,
    snapshots: &Snapshotter,
    produce: impl FnOnce(&mut TarOut<'_>) -> io::Result<()>,
) -> Result<Layer, BuildError> {
    let mut diff_id = None;
    let (blob, size) = store.write_blob_with(|out| {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let mut tar_out = DigestWriter::new(gz);
        {
            let writer: &mut dyn Write = &mut tar_out;
            let mut builder = tar::Builder::new(writer);
            builder.follow_symlinks(false);
            produce(&mut builder)?;
            builder.finish()?;
        }
        let (gz, digest, _) = tar_out.finish();
        gz.finish()?;
        diff_id = Some(digest);
        Ok(())
    })?;
    let diff_id = diff_id.ok_or_else(|| BuildError::Internal("no layer produced".into()))?;
    let layer = Layer {
        diff_id,
        blob,
        size,
        media_type: media_types::OCI_LAYER_GZIP.to_owned(),
    };
    ensure_unpacked(store, snapshots, &layer)?;
    Ok(layer)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other thread or process uses at the same time.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes sure the layer's snapshot directory exists (unpacking the blob if not), as
/// berth-image's snapshotter lays it out.
pub fn ensure_unpacked(
    store: &Store,
    snapshots: &Snapshotter,
    layer: &Layer,
) -> Result<PathBuf, BuildError> {
    let dest = snapshots.layer_dir(&layer.diff_id);
    if dest.is_dir() {
        return Ok(dest);
    }
    let tmp = store.root().join("snapshots/tmp").join(unique("build-"));
    fs::create_dir_all(&tmp).map_err(crate::io_err("create directory", &tmp))?;
    let result = (|| {
        let file = store.open_blob(&layer.blob)?;
        let stats = unpack_layer(file, &tmp, &UnpackOptions::default())
            .map_err(|e| BuildError::Internal(format!("unpacking layer {}: {e}", layer.blob)))?;
        if stats.diff_id != layer.diff_id {
            return Err(BuildError::Internal(format!(
                "layer {} unpacked to {}, expected {}",
                layer.blob, stats.diff_id, layer.diff_id
            )));
        }
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(BuildError::Io {
                op: "rename",
                path: dest.clone(),
                source: e,
            }),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| dest)
}

pub use berth_image::archive::tree::{append_dir, header_from};

/// Writes the changes an overlay upper dir holds as an OCI layer.
pub fn append_upper(out: &mut TarOut<'_>, upper: &Path) -> io::Result<()> {
    append_tree(out, upper, Tree::OverlayUpper)
}
