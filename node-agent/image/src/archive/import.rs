//! `import`: a plain root filesystem — a tar stream (plain, gzip or zstd) or a directory —
//! becomes a one-layer image, like `docker import`. The layer is stored gzip-compressed; its
//! diff_id is the sha256 of the uncompressed tar exactly as given (tar input) or as berth
//! writes it (directory input: sorted, deterministic, owners/modes/times/xattrs kept).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::{ArchiveError, Result, change, invalid, time, write_manifest};
use crate::digest::{Digest, DigestWriter};
use crate::manifest::{Platform, media_types};
use crate::reference::Reference;
use crate::store::Store;
use crate::unpack::Compression;

/// How to build the imported image.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Name to give the image; without one it is recorded as dangling.
    pub reference: Option<Reference>,
    /// `--change` lines (`CMD ["sh"]`, `ENV A=b`, `WORKDIR /x`, …).
    pub changes: Vec<String>,
    /// Comment recorded in the image history.
    pub message: Option<String>,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Manifest digest (what the image record points at).
    pub target: Digest,
    /// Image id (config digest).
    pub id: Digest,
    pub diff_id: Digest,
}

/// Imports a root filesystem tar stream.
pub fn import_tar(store: &Store, reader: impl Read, options: &ImportOptions) -> Result<Imported> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|source| ArchiveError::Read { source })?;
    let mut source: Box<dyn Read> = match Compression::detect(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|source| ArchiveError::Read { source })?,
        ),
    };
    import_with(store, options, |out| io::copy(&mut source, out).map(drop))
}

/// Imports a directory as the root filesystem.
pub fn import_dir(store: &Store, dir: &Path, options: &ImportOptions) -> Result<Imported> {
    if !dir.is_dir() {
        return Err(ArchiveError::Io {
            op: "import",
            path: dir.to_owned(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    import_with(store, options, |out| write_dir_tar(dir, out))
}

fn import_with(
    store: &Store,
    options: &ImportOptions,
    produce_tar: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<Imported> {
    let _lease = store.lease()?;
    let mut diff_id = None;
    let (layer, layer_size) = store.write_blob_with(|out| {
        let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        let mut tar = DigestWriter::new(gz);
        produce_tar(&mut tar)?;
        let (gz, digest, _) = tar.finish();
        gz.finish()?;
        diff_id = Some(digest);
        Ok(())
    })?;
    let diff_id = diff_id.ok_or_else(|| invalid("no layer produced"))?;
    let mut config_obj = Map::new();
    for line in &options.changes {
        change::apply(&mut config_obj, line)?;
    }
    let created = time::now_rfc3339();
    let platform = Platform::host();
    let mut config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": Value::Object(config_obj),
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{
            "created": created,
            "created_by": "berth image import",
            "comment": options.message.clone().unwrap_or_else(|| "Imported from tarball".into()),
        }],
    });
    if let Some(variant) = platform.variant {
        config["variant"] = Value::String(variant);
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| invalid(e.to_string()))?;
    let id = store.write_blob_bytes(&config_bytes)?;
    let target = write_manifest(
        store,
        (&id, config_bytes.len() as u64),
        &[(layer, layer_size, media_types::OCI_LAYER_GZIP)],
    )?;
    match &options.reference {
        Some(reference) => {
            store.put_image(reference, &target)?;
        }
        None => store.put_dangling(&target)?,
    }
    Ok(Imported {
        target,
        id,
        diff_id,
    })
}

/// Writes `dir` as a tar stream (see [`super::tree`] for the entries' order and form).
pub fn write_dir_tar(dir: &Path, out: &mut dyn Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    super::tree::append_tree(&mut builder, dir, super::tree::Tree::Plain)?;
    builder.into_inner()?.flush()
}
