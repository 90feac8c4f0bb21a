//! `load`: OCI image layouts (a directory or a tar of one) and `docker save` tarballs,
//! both the legacy form (`manifest.json` + `<id>/layer.tar`) and Docker 25's (an OCI layout
//! plus `manifest.json`). Every blob is written through the store's verified path while the
//! archive streams by, so a tar is read once, even from a pipe.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use oci_spec::image::ImageIndex;
use serde::Deserialize;

use super::{ArchiveError, Result, invalid, layer_media_type, write_manifest};
use crate::digest::Digest;
use crate::manifest::{Manifest, descriptor_digest};
use crate::reference::Reference;
use crate::store::Store;
use crate::unpack::Compression;

/// Largest metadata file (index.json, manifest.json, configs) kept in memory.
const METADATA_MAX: u64 = 32 << 20;

/// One image a load recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// `None` when the archive did not name it (recorded as dangling).
    pub reference: Option<Reference>,
    pub target: Digest,
}

/// What the archive held, after blobs went to the store.
#[derive(Default)]
struct Collected {
    /// Small metadata files by path.
    files: HashMap<String, Vec<u8>>,
    /// Every other regular file by path, already stored.
    blobs: HashMap<String, (Digest, u64)>,
    /// Symlinks by path → target path (legacy archives link duplicate layers).
    links: HashMap<String, String>,
}

impl Collected {
    fn blob(&self, path: &str) -> Option<(Digest, u64)> {
        let path = clean(path);
        if let Some(found) = self.blobs.get(&path) {
            return Some(found.clone());
        }
        let target = self.links.get(&path)?;
        self.blobs.get(target).cloned()
    }
}

fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn is_metadata(path: &str, size: u64) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let known = matches!(
        name,
        "index.json" | "manifest.json" | "repositories" | "oci-layout" | "json" | "VERSION"
    );
    (known || (name.ends_with(".json") && !path.starts_with("blobs/"))) && size <= METADATA_MAX
}

/// Loads an archive stream (tar, optionally gzip or zstd compressed).
pub fn load_tar(store: &Store, reader: impl Read) -> Result<Vec<LoadedImage>> {
    let _lease = store.lease()?;
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered
        .fill_buf()
        .map_err(|source| ArchiveError::Read { source })?;
    if head.is_empty() {
        return Err(invalid("empty input"));
    }
    let source: Box<dyn Read> = match Compression::detect(head) {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|source| ArchiveError::Read { source })?,
        ),
    };
    let mut archive = tar::Archive::new(source);
    let mut collected = Collected::default();
    for entry in archive
        .entries()
        .map_err(|source| ArchiveError::Read { source })?
    {
        let mut entry = entry.map_err(|source| ArchiveError::Read { source })?;
        let path = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                if is_metadata(&path, size) {
                    let mut bytes = Vec::with_capacity(size as usize);
                    entry
                        .read_to_end(&mut bytes)
                        .map_err(|source| ArchiveError::Read { source })?;
                    collected.files.insert(path, bytes);
                } else {
                    let expected = blob_name_digest(&path);
                    let stored = store.write_blob(expected.as_ref(), &mut entry)?;
                    collected.blobs.insert(path, stored);
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                        clean(&format!("{dir}/{target}"))
                    } else {
                        clean(&target)
                    };
                    collected.links.insert(path, resolved);
                }
            }
            _ => {}
        }
    }
    finish(store, collected)
}

/// Loads an OCI image layout or an extracted `docker save` directory.
pub fn load_dir(store: &Store, dir: &Path) -> Result<Vec<LoadedImage>> {
    let _lease = store.lease()?;
    let mut collected = Collected::default();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let entries = fs::read_dir(&full).map_err(|source| ArchiveError::Io {
            op: "read directory",
            path: full.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ArchiveError::Io {
                op: "read directory",
                path: full.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|source| ArchiveError::Io {
                op: "stat",
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                stack.push(rel_path);
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(|source| ArchiveError::Io {
                    op: "readlink",
                    path: path.clone(),
                    source,
                })?;
                let dir = rel_path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
                collected.links.insert(
                    rel_path,
                    clean(&format!("{dir}/{}", target.to_string_lossy())),
                );
            } else if meta.is_file() {
                if is_metadata(&rel_path, meta.len()) {
                    let bytes = fs::read(&path).map_err(|source| ArchiveError::Io {
                        op: "read",
                        path: path.clone(),
                        source,
                    })?;
                    collected.files.insert(rel_path, bytes);
                } else {
                    let file = fs::File::open(&path).map_err(|source| ArchiveError::Io {
                        op: "open",
                        path: path.clone(),
                        source,
                    })?;
                    let stored = store.write_blob(blob_name_digest(&rel_path).as_ref(), file)?;
                    collected.blobs.insert(rel_path, stored);
                }
            }
        }
    }
    finish(store, collected)
}

/// `blobs/sha256/<hex>` names carry the digest the content must have.
fn blob_name_digest(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/")
        .and_then(|hex| Digest::from_hex(hex).ok())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn finish(store: &Store, collected: Collected) -> Result<Vec<LoadedImage>> {
    // Small files under blobs/ that looked like metadata are still blobs.
    let docker_entries: Option<Vec<DockerManifestEntry>> =
        match collected.files.get("manifest.json") {
            Some(bytes) => Some(
                serde_json::from_slice(bytes)
                    .map_err(|e| invalid(format!("manifest.json: {e}")))?,
            ),
            None => None,
        };
    if let Some(index_bytes) = collected.files.get("index.json") {
        return finish_oci(store, &collected, index_bytes, docker_entries.as_deref());
    }
    match docker_entries {
        Some(entries) => finish_legacy_docker(store, &collected, &entries),
        None => Err(invalid(
            "neither index.json (OCI layout) nor manifest.json (docker save) found",
        )),
    }
}

fn finish_oci(
    store: &Store,
    collected: &Collected,
    index_bytes: &[u8],
    docker_entries: Option<&[DockerManifestEntry]>,
) -> Result<Vec<LoadedImage>> {
    let index: ImageIndex =
        serde_json::from_slice(index_bytes).map_err(|e| invalid(format!("index.json: {e}")))?;
    let index_digest = Digest::of(index_bytes);
    let mut out = Vec::new();
    for desc in index.manifests() {
        let target = descriptor_digest(&index_digest, desc)?;
        if !store.has_blob(&target) {
            return Err(invalid(format!(
                "index.json names {target}, which the archive does not contain"
            )));
        }
        // Everything this image needs must now be in the store.
        check_complete(store, &target)?;
        let annotations = desc.annotations().clone().unwrap_or_default();
        let mut names: Vec<Reference> = Vec::new();
        if let Some(name) = annotations.get("io.containerd.image.name") {
            names.push(Reference::parse(name)?);
        } else if let Some(name) = annotations.get("org.opencontainers.image.ref.name") {
            // A full reference is usable; a bare tag ("latest") names nothing on its own.
            if name.contains('/') || name.contains(':') {
                if let Ok(r) = Reference::parse(name) {
                    names.push(r);
                }
            }
        }
        if names.is_empty() {
            if let Some(entries) = docker_entries {
                names.extend(docker_names_for(store, collected, &target, entries)?);
            }
        }
        if names.is_empty() {
            store.put_dangling(&target)?;
            out.push(LoadedImage {
                reference: None,
                target: target.clone(),
            });
        }
        for name in names {
            store.put_image(&name, &target)?;
            out.push(LoadedImage {
                reference: Some(name),
                target: target.clone(),
            });
        }
    }
    Ok(out)
}

/// Tags from `manifest.json` whose config matches the manifest `target` points at.
fn docker_names_for(
    store: &Store,
    collected: &Collected,
    target: &Digest,
    entries: &[DockerManifestEntry],
) -> Result<Vec<Reference>> {
    let Ok(image) = store.image(target) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in entries {
        let config = collected.blob(&entry.config).map(|(d, _)| d).or_else(|| {
            collected
                .files
                .get(&clean(&entry.config))
                .map(|b| Digest::of(b))
        });
        if config.as_ref() == Some(image.id()) {
            for tag in entry.repo_tags.iter().flatten() {
                names.push(Reference::parse(tag)?);
            }
        }
    }
    Ok(names)
}

fn check_complete(store: &Store, target: &Digest) -> Result<()> {
    let missing = |d: &Digest| invalid(format!("the archive lacks blob {d} needed by {target}"));
    match store.read_manifest(target)? {
        Manifest::Image(m) => {
            for desc in std::iter::once(m.config()).chain(m.layers().iter()) {
                let d = descriptor_digest(target, desc)?;
                if !store.has_blob(&d) {
                    return Err(missing(&d));
                }
            }
        }
        Manifest::Index(_) => {
            // Other platforms may be absent; this host's must be complete.
            let (manifest, _) = store.platform_manifest(target)?;
            check_complete(store, &manifest)?;
        }
    }
    Ok(())
}

fn finish_legacy_docker(
    store: &Store,
    collected: &Collected,
    entries: &[DockerManifestEntry],
) -> Result<Vec<LoadedImage>> {
    let mut out = Vec::new();
    for entry in entries {
        let config = match collected.files.get(&clean(&entry.config)) {
            Some(bytes) => {
                let d = store.write_blob_bytes(bytes)?;
                (d, bytes.len() as u64)
            }
            None => collected.blob(&entry.config).ok_or_else(|| {
                invalid(format!(
                    "manifest.json names config {}, not in the archive",
                    entry.config
                ))
            })?,
        };
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let (digest, size) = collected.blob(layer).ok_or_else(|| {
                invalid(format!(
                    "manifest.json names layer {layer}, not in the archive"
                ))
            })?;
            let media_type = layer_media_type(store, &digest)?;
            layers.push((digest, size, media_type));
        }
        let target = write_manifest(store, (&config.0, config.1), &layers)?;
        // A config that disagrees with the layers fails here rather than at run time.
        let image = store.image(&target)?;
        if image.diff_ids()?.len() != layers.len() {
            return Err(invalid(format!(
                "config {} lists a different number of layers than manifest.json",
                config.0
            )));
        }
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            store.put_dangling(&target)?;
            out.push(LoadedImage {
                reference: None,
                target: target.clone(),
            });
        }
        for tag in tags {
            let reference = Reference::parse(&tag)?;
            store.put_image(&reference, &target)?;
            out.push(LoadedImage {
                reference: Some(reference),
                target: target.clone(),
            });
        }
    }
    Ok(out)
}
