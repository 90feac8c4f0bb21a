//! Building test images directly in a store: real tar layers (gzip, zstd or plain), an OCI
//! config with the right diff ids, a manifest, optionally an index over several platforms.

#![allow(dead_code)]

use std::io::Write as _;

use berth_image::{Digest, Reference, Store};

pub enum Compression {
    Gzip,
    Zstd,
    None,
}

pub struct Layer {
    pub files: Vec<(String, Vec<u8>)>,
    pub compression: Compression,
}

pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, &bytes[..]).unwrap();
    }
    builder.into_inner().unwrap()
}

fn compress(tar: &[u8], compression: &Compression) -> (Vec<u8>, &'static str) {
    match compression {
        Compression::Gzip => {
            // Level 0: the data is random anyway and debug builds compress slowly.
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
            encoder.write_all(tar).unwrap();
            (
                encoder.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Compression::Zstd => (
            zstd::encode_all(tar, 1).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        Compression::None => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": digest.to_string(), "size": size })
}

/// Writes the blobs of a single-platform image; returns the manifest digest and its size.
pub fn write_manifest(store: &Store, layers: &[Layer], arch: &str) -> (Digest, usize) {
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let tar = tar_of(&layer.files);
        diff_ids.push(Digest::of(&tar).to_string());
        let (blob, media_type) = compress(&tar, &layer.compression);
        let digest = store.write_blob_bytes(&blob).unwrap();
        layer_descriptors.push(descriptor(media_type, &digest, blob.len()));
    }
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": { "Cmd": ["/bin/sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.write_blob_bytes(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config_bytes.len()),
        "layers": layer_descriptors,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    (store.write_blob_bytes(&bytes).unwrap(), bytes.len())
}

/// A single-platform image named `reference`; returns its manifest digest.
pub fn make_image(store: &Store, reference: &str, layers: &[Layer]) -> Digest {
    let (digest, _) = write_manifest(store, layers, "amd64");
    store
        .put_image(&Reference::parse(reference).unwrap(), &digest)
        .unwrap();
    digest
}

/// An OCI index with one manifest per architecture (each one small layer naming its arch).
pub fn make_index(store: &Store, reference: &str, arches: &[&str]) -> Digest {
    let mut manifests = Vec::new();
    for (i, arch) in arches.iter().enumerate() {
        let layer = Layer {
            files: vec![(
                format!("etc/arch-{arch}"),
                super::random_bytes(100 + i as u64, 2048),
            )],
            compression: Compression::Gzip,
        };
        let (digest, size) = write_manifest(store, &[layer], arch);
        let mut d = descriptor("application/vnd.oci.image.manifest.v1+json", &digest, size);
        d["platform"] = serde_json::json!({ "os": "linux", "architecture": arch });
        manifests.push(d);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let digest = store
        .write_blob_bytes(&serde_json::to_vec(&index).unwrap())
        .unwrap();
    store
        .put_image(&Reference::parse(reference).unwrap(), &digest)
        .unwrap();
    digest
}

/// Every blob an image reaches, with its bytes: two stores hold the same image exactly when
/// these are equal.
pub fn image_blobs(store: &Store, target: &Digest) -> Vec<(Digest, Vec<u8>)> {
    store
        .reachable_blobs(target)
        .unwrap()
        .into_iter()
        .map(|d| {
            let bytes = store.read_blob(&d).unwrap();
            (d, bytes)
        })
        .collect()
}
