//! `save`: images out of the store as one tar stream, either an OCI image layout or a
//! Docker archive. The Docker form is the layout Docker 25 writes — the OCI layout plus
//! `manifest.json` and `repositories` — so older Docker reads it and berth loads it back
//! with the very same manifest digests.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde_json::{Value, json};

use super::{ArchiveError, Result, invalid};
use crate::digest::{Digest, VerifyingReader};
use crate::manifest::{Manifest, descriptor_digest, media_types};
use crate::reference::Reference;
use crate::store::Store;

/// Output format of `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveFormat {
    /// OCI image layout (`oci-layout`, `index.json`, `blobs/`).
    Oci,
    /// `docker save` format (also a valid OCI layout).
    #[default]
    Docker,
}

/// One image to save: the record target and the names to write for it.
struct Item {
    top: Digest,
    media_type: String,
    size: u64,
    names: Vec<Reference>,
}

/// Writes the images (record targets, each with the names to record) to `out` as a tar.
///
/// An index is saved whole when all its manifests are present; otherwise (a pull fetched
/// only this platform) the platform manifest is saved in its place. The Docker format always
/// saves the platform manifest, since Docker's `manifest.json` describes one config each.
pub fn save(
    store: &Store,
    images: &[(Digest, Vec<Reference>)],
    format: SaveFormat,
    out: impl Write,
) -> Result<()> {
    let _lease = store.lease()?;
    let mut items: Vec<Item> = Vec::new();
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    for (target, names) in images {
        let top = choose_top(store, target, format)?;
        let bytes = store.read_blob(&top)?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let media_type = match value.get("mediaType").and_then(Value::as_str) {
            Some(m) => m.to_owned(),
            None if value.get("manifests").is_some() => media_types::OCI_INDEX.to_owned(),
            None => media_types::OCI_MANIFEST.to_owned(),
        };
        blobs.extend(store.reachable_blobs(&top)?);
        items.push(Item {
            top,
            media_type,
            size: bytes.len() as u64,
            names: names.clone(),
        });
    }

    let mut tar = tar::Builder::new(out);
    let write_err = |source: io::Error| ArchiveError::Write { source };
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0, 0o755);
        tar.append_data(&mut h, dir, io::empty())
            .map_err(write_err)?;
    }
    for digest in &blobs {
        let size = store.blob_size(digest)?;
        let mut h = header(tar::EntryType::Regular, size, 0o644);
        // Re-verified on the way out: a blob damaged on disk fails the save.
        let reader = VerifyingReader::new(store.open_blob(digest)?, digest.clone(), Some(size));
        tar.append_data(&mut h, format!("blobs/sha256/{}", digest.hex()), reader)
            .map_err(write_err)?;
    }
    let layout = serde_json::to_vec(&json!({"imageLayoutVersion": "1.0.0"})).unwrap_or_default();
    append_bytes(&mut tar, "oci-layout", &layout)?;
    let mut manifests = Vec::new();
    for item in &items {
        let base = json!({"mediaType": item.media_type, "digest": item.top.to_string(), "size": item.size});
        if item.names.is_empty() {
            manifests.push(base.clone());
        }
        for name in &item.names {
            let mut desc = base.clone();
            let mut annotations = json!({"io.containerd.image.name": name.to_string()});
            if let Some(tag) = name.tag() {
                annotations["org.opencontainers.image.ref.name"] = Value::String(tag.to_owned());
            }
            desc["annotations"] = annotations;
            manifests.push(desc);
        }
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": manifests});
    append_bytes(
        &mut tar,
        "index.json",
        &serde_json::to_vec(&index).unwrap_or_default(),
    )?;

    if format == SaveFormat::Docker {
        let mut entries = Vec::new();
        let mut repositories = serde_json::Map::new();
        for item in &items {
            let image = store.image(&item.top)?;
            let layers: Vec<String> = image
                .layers()
                .iter()
                .map(|l| {
                    descriptor_digest(&image.manifest_digest, l)
                        .map(|d| format!("blobs/sha256/{}", d.hex()))
                })
                .collect::<Result<_, _>>()?;
            let tags: Vec<String> = item
                .names
                .iter()
                .filter(|n| n.tag().is_some())
                .map(Reference::familiar)
                .collect();
            for name in item.names.iter() {
                if let (Some(tag), Some(last)) = (name.tag(), image.layers().last()) {
                    let last = descriptor_digest(&image.manifest_digest, last)?;
                    let repo = repositories
                        .entry(name.familiar_name())
                        .or_insert_with(|| json!({}));
                    repo[tag] = Value::String(last.hex().to_owned());
                }
            }
            entries.push(json!({
                "Config": format!("blobs/sha256/{}", image.id().hex()),
                "RepoTags": if tags.is_empty() { Value::Null } else { json!(tags) },
                "Layers": layers,
            }));
        }
        append_bytes(
            &mut tar,
            "manifest.json",
            &serde_json::to_vec(&entries).unwrap_or_default(),
        )?;
        append_bytes(
            &mut tar,
            "repositories",
            &serde_json::to_vec(&repositories).unwrap_or_default(),
        )?;
    }
    tar.into_inner()
        .map_err(write_err)?
        .flush()
        .map_err(write_err)
}

fn choose_top(store: &Store, target: &Digest, format: SaveFormat) -> Result<Digest> {
    match store.read_manifest(target)? {
        Manifest::Image(_) => Ok(target.clone()),
        Manifest::Index(index) => {
            let complete = index
                .manifests()
                .iter()
                .all(|d| descriptor_digest(target, d).is_ok_and(|d| store.has_blob(&d)));
            if complete && format == SaveFormat::Oci {
                Ok(target.clone())
            } else {
                Ok(store.platform_manifest(target)?.0)
            }
        }
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
    tar.append_data(&mut h, path, bytes)
        .map_err(|source| ArchiveError::Write { source })
}
