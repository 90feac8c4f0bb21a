//! Helpers shared by the integration tests: tar layers built entry by entry (including
//! hostile names the `tar` crate would refuse), images assembled from them, and guards that
//! undo mounts even when a test fails.

#![allow(dead_code)]

use std::io::Write;

use berth_image::{Digest, Reference, Snapshotter, Store};

/// One tar member.
pub enum Member<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8]),
    /// name, content, mode, uid, gid, mtime, xattrs
    FileMeta(
        &'a str,
        &'a [u8],
        u32,
        u64,
        u64,
        u64,
        &'a [(&'a str, &'a [u8])],
    ),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDev(&'a str, u32, u32),
    Fifo(&'a str),
}

/// name, kind, data, mode, link target, uid, gid, mtime, xattrs, device numbers.
type Fields<'a> = (
    &'a str,
    tar::EntryType,
    &'a [u8],
    u32,
    &'a str,
    u64,
    u64,
    u64,
    &'a [(&'a str, &'a [u8])],
    (u32, u32),
);

/// Builds an uncompressed tar, writing names byte-for-byte (so `..` and `/abs` survive).
pub fn tar_layer(members: &[Member<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let (name, kind, data, mode, link, uid, gid, mtime, xattrs, dev): Fields<'_> = match m {
            Member::Dir(n, mode) => (
                n,
                tar::EntryType::Directory,
                b"",
                *mode,
                "",
                0,
                0,
                1_600_000_000,
                &[],
                (0, 0),
            ),
            Member::File(n, d) => (
                n,
                tar::EntryType::Regular,
                d,
                0o644,
                "",
                0,
                0,
                1_600_000_000,
                &[],
                (0, 0),
            ),
            Member::FileMeta(n, d, mode, uid, gid, mtime, x) => (
                n,
                tar::EntryType::Regular,
                d,
                *mode,
                "",
                *uid,
                *gid,
                *mtime,
                x,
                (0, 0),
            ),
            Member::Symlink(n, t) => (
                n,
                tar::EntryType::Symlink,
                b"",
                0o777,
                t,
                0,
                0,
                1_600_000_000,
                &[],
                (0, 0),
            ),
            Member::Hardlink(n, t) => (
                n,
                tar::EntryType::Link,
                b"",
                0o644,
                t,
                0,
                0,
                1_600_000_000,
                &[],
                (0, 0),
            ),
            Member::CharDev(n, ma, mi) => (
                n,
                tar::EntryType::Char,
                b"",
                0o666,
                "",
                0,
                0,
                1_600_000_000,
                &[],
                (*ma, *mi),
            ),
            Member::Fifo(n) => (
                n,
                tar::EntryType::Fifo,
                b"",
                0o644,
                "",
                0,
                0,
                1_600_000_000,
                &[],
                (0, 0),
            ),
        };
        if !xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                .unwrap();
        }
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        if dev != (0, 0) {
            h.set_device_major(dev.0).unwrap();
            h.set_device_minor(dev.1).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

/// Stores layers (already compressed as wished), a config listing the diff_ids of the
/// uncompressed tars, and a manifest; names it `tag`. Returns the manifest digest.
pub fn put_image(store: &Store, layers: &[(Vec<u8>, Vec<u8>)], tag: &str) -> Digest {
    put_image_with(store, layers, tag, serde_json::Map::new())
}

/// [`put_image`] with `extra` fields in the config (a field that differs gives otherwise
/// identical images configs of their own).
pub fn put_image_with(
    store: &Store,
    layers: &[(Vec<u8>, Vec<u8>)],
    tag: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Digest {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (uncompressed, stored) in layers {
        let d = store.write_blob_bytes(stored).unwrap();
        diff_ids.push(Digest::of(uncompressed).to_string());
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": stored.len()}));
    }
    let mut config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    config.as_object_mut().expect("object").extend(extra);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.write_blob_bytes(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": descs,
    });
    let target = store
        .write_blob_bytes(&serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    store
        .put_image(&Reference::parse(tag).unwrap(), &target)
        .unwrap();
    target
}

/// Removes a container snapshot (unmounting it) when dropped.
pub struct ContainerGuard<'a> {
    pub snapshotter: &'a Snapshotter,
    pub id: String,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.snapshotter.remove(&self.id);
    }
}
