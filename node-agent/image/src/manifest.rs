//! Manifests, indexes and image configs as stored blobs: media types (OCI and Docker
//! schema2), parsing with `oci-spec`, platform selection in an index, and the set of blobs
//! a manifest or index references (what garbage collection must keep).
//!
//! Manifests are never re-serialized once stored: their bytes define their digest. Building
//! new manifests (import, legacy docker archives) happens in `archive/`.

use std::collections::BTreeSet;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::store::{Result, Store, StoreError};

/// Media types berth reads and writes.
pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// Media types for an image manifest (OCI or Docker schema2).
    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }

    /// Media types for an index (OCI index or Docker manifest list).
    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }
}

/// A parsed manifest blob: either a single-platform image manifest or an index.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

impl Manifest {
    /// Parses manifest bytes, deciding the kind from `mediaType` or, when absent (allowed by
    /// OCI), from the shape of the document. Docker schema1 is refused.
    pub fn parse(digest: &Digest, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| StoreError::BadContent {
            what: "manifest",
            digest: digest.clone(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(bad("Docker schema1 manifests are not supported".into()));
        }
        let media_type = value
            .get("mediaType")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let is_index = media_types::is_index(media_type)
            || (media_type.is_empty() && value.get("manifests").is_some());
        if is_index {
            let index: ImageIndex =
                serde_json::from_value(value).map_err(|e| bad(format!("bad index: {e}")))?;
            Ok(Self::Index(Box::new(index)))
        } else if media_types::is_manifest(media_type)
            || (media_type.is_empty() && value.get("layers").is_some())
        {
            let manifest: ImageManifest =
                serde_json::from_value(value).map_err(|e| bad(format!("bad manifest: {e}")))?;
            Ok(Self::Image(Box::new(manifest)))
        } else {
            Err(bad(format!(
                "unsupported manifest media type {media_type:?}"
            )))
        }
    }

    /// The blobs this manifest points to directly (config + layers, or child manifests).
    pub fn children(&self) -> Vec<Descriptor> {
        match self {
            Self::Image(m) => {
                let mut out = vec![m.config().clone()];
                out.extend(m.layers().iter().cloned());
                out
            }
            Self::Index(i) => i.manifests().clone(),
        }
    }
}

/// The platform berth runs images for: this machine's OS and architecture, in Go's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The host platform (`linux/amd64`, `linux/arm64/v8`, …).
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_owned),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the index entry for `platform`: exact OS and architecture, preferring a matching
/// variant, then an entry without variant. Entries without a platform never match.
pub fn select_manifest<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    let mut best: Option<(&Descriptor, u8)> = None;
    for desc in index.manifests() {
        if !media_types::is_manifest(desc.media_type().as_ref()) {
            continue;
        }
        let Some(p) = desc.platform() else { continue };
        if p.os().to_string() != platform.os
            || p.architecture().to_string() != platform.architecture
        {
            continue;
        }
        let score = match (p.variant().as_deref(), platform.variant.as_deref()) {
            (Some(a), Some(b)) if a == b => 2,
            (None, _) => 1,
            _ => 0,
        };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((desc, score));
        }
    }
    best.map(|(d, _)| d)
}

impl Store {
    /// Reads and parses a manifest or index blob (verified).
    pub fn read_manifest(&self, digest: &Digest) -> Result<Manifest> {
        Manifest::parse(digest, &self.read_blob(digest)?)
    }

    /// Reads an image config blob (verified). Docker's extra fields are ignored.
    pub fn read_config(&self, digest: &Digest) -> Result<ImageConfiguration> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::BadContent {
            what: "image config",
            digest: digest.clone(),
            reason: e.to_string(),
        })
    }

    /// Resolves a manifest or index digest to this host's image manifest.
    pub fn platform_manifest(&self, target: &Digest) -> Result<(Digest, ImageManifest)> {
        match self.read_manifest(target)? {
            Manifest::Image(m) => Ok((target.clone(), *m)),
            Manifest::Index(index) => {
                let platform = Platform::host();
                let no_platform = || StoreError::NoPlatform {
                    digest: target.clone(),
                    platform: platform.to_string(),
                };
                let desc = select_manifest(&index, &platform).ok_or_else(no_platform)?;
                let digest = descriptor_digest(target, desc)?;
                if !self.has_blob(&digest) {
                    return Err(no_platform());
                }
                match self.read_manifest(&digest)? {
                    Manifest::Image(m) => Ok((digest, *m)),
                    Manifest::Index(_) => Err(StoreError::BadContent {
                        what: "index",
                        digest: target.clone(),
                        reason: "nested indexes are not supported".into(),
                    }),
                }
            }
        }
    }

    /// Every blob reachable from `target` that is present in the store, `target` included.
    /// Index children that were never pulled (other platforms) are simply absent.
    pub fn reachable_blobs(&self, target: &Digest) -> Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        let mut stack = vec![(target.clone(), true)];
        while let Some((digest, is_manifest)) = stack.pop() {
            if !self.has_blob(&digest) || !out.insert(digest.clone()) || !is_manifest {
                continue;
            }
            for child in self.read_manifest(&digest)?.children() {
                let media_type = child.media_type().to_string();
                let child_is_manifest =
                    media_types::is_manifest(&media_type) || media_types::is_index(&media_type);
                stack.push((descriptor_digest(&digest, &child)?, child_is_manifest));
            }
        }
        Ok(out)
    }
}

/// The sha256 digest of a descriptor, refusing other algorithms with the parent's context.
pub fn descriptor_digest(parent: &Digest, desc: &Descriptor) -> Result<Digest> {
    Digest::from_oci(desc.digest()).map_err(|e| StoreError::BadContent {
        what: "manifest",
        digest: parent.clone(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    #[test]
    fn parses_docker_schema2_manifests_and_lists() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::DOCKER_MANIFEST,
            "config": {"mediaType": media_types::DOCKER_CONFIG, "size": 10, "digest": d(1)},
            "layers": [
                {"mediaType": media_types::DOCKER_LAYER_GZIP, "size": 20, "digest": d(2)},
                {"mediaType": media_types::DOCKER_FOREIGN_LAYER_GZIP, "size": 30, "digest": d(3),
                 "urls": ["https://example.invalid/layer"]}
            ]
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = Digest::of(&bytes);
        let Manifest::Image(m) = Manifest::parse(&digest, &bytes).unwrap() else {
            panic!("not a manifest")
        };
        assert_eq!(m.layers().len(), 2);
        assert_eq!(m.config().media_type().as_ref(), media_types::DOCKER_CONFIG);
        assert_eq!(Manifest::Image(m).children().len(), 3);

        let list = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::DOCKER_MANIFEST_LIST,
            "manifests": [
                {"mediaType": media_types::DOCKER_MANIFEST, "size": 1, "digest": d(4),
                 "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}},
                {"mediaType": media_types::DOCKER_MANIFEST, "size": 1, "digest": d(5),
                 "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
                {"mediaType": media_types::DOCKER_MANIFEST, "size": 1, "digest": d(6),
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": "application/vnd.in-toto+json", "size": 1, "digest": d(7),
                 "platform": {"architecture": "amd64", "os": "linux"}}
            ]
        });
        let bytes = serde_json::to_vec(&list).unwrap();
        let Manifest::Index(index) = Manifest::parse(&Digest::of(&bytes), &bytes).unwrap() else {
            panic!("not an index")
        };
        let pick = |arch: &str, variant: Option<&str>| {
            let p = Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(str::to_owned),
            };
            select_manifest(&index, &p).map(|desc| desc.digest().to_string())
        };
        assert_eq!(pick("amd64", None), Some(d(6)));
        assert_eq!(pick("arm", Some("v7")), Some(d(5)));
        assert_eq!(pick("s390x", None), None);
    }

    #[test]
    fn refuses_schema1_and_unknown_documents() {
        for doc in [
            serde_json::json!({"schemaVersion": 1, "name": "x", "fsLayers": []}),
            serde_json::json!({"schemaVersion": 2, "mediaType": "text/plain"}),
            serde_json::json!([1, 2]),
        ] {
            let bytes = serde_json::to_vec(&doc).unwrap();
            assert!(matches!(
                Manifest::parse(&Digest::of(&bytes), &bytes),
                Err(StoreError::BadContent { .. })
            ));
        }
        assert!(Manifest::parse(&Digest::of(b"{"), b"{").is_err());
    }
}
