//! The distribution client against a real `docker-registry` on 127.0.0.1: uploads (chunked
//! and monolithic), skip-existing, cross-repository mount, manifests, ranged downloads,
//! tampered blobs, and the three ways of authenticating (none, basic, bearer token).

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::Digest;
use berth_image::registry::client::{BlobPushOutcome, BlobUpload, OCI_MANIFEST};
use berth_image::registry::{RegistryError, UploadMode};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use support::registry::{Auth, PASSWORD, TestRegistry, USER, client};

struct Blob {
    digest: String,
    bytes: Vec<u8>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn blob(seed: u64, len: usize) -> Blob {
    let dir = tempfile::tempdir().unwrap();
    let bytes = support::random_bytes(seed, len);
    let path = dir.path().join("blob");
    std::fs::write(&path, &bytes).unwrap();
    Blob {
        digest: Digest::of(&bytes).to_string(),
        bytes,
        path,
        _dir: dir,
    }
}

fn upload<'a>(b: &'a Blob, mode: UploadMode, mount_from: Option<&'a str>) -> BlobUpload<'a> {
    BlobUpload {
        digest: &b.digest,
        size: b.bytes.len() as u64,
        path: &b.path,
        mode,
        mount_from,
        counter: None,
    }
}

fn manifest_for(config: &Blob, layers: &[&Blob]) -> Bytes {
    let descriptor = |b: &Blob, media: &str| serde_json::json!({ "mediaType": media, "digest": b.digest, "size": b.bytes.len() });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": layers.iter().map(|l| descriptor(l, "application/vnd.oci.image.layer.v1.tar+gzip")).collect::<Vec<_>>(),
    });
    Bytes::from(serde_json::to_vec(&manifest).unwrap())
}

#[tokio::test]
async fn chunked_and_monolithic_uploads_round_trip_and_skip_existing() {
    let registry = TestRegistry::start(Auth::None);
    let client = client(&registry, None);
    client.ping().await.unwrap();

    let mono = blob(1, 3 << 20);
    let chunked = blob(2, (2 << 20) + 12345);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let mut chunked_upload = upload(
        &chunked,
        UploadMode::Chunked {
            chunk_size: 1 << 20,
        },
        None,
    );
    chunked_upload.counter = Some(Arc::new(move |n| {
        counter.fetch_add(n, Ordering::Relaxed);
    }));
    assert_eq!(
        client
            .push_blob("test/app", &upload(&mono, UploadMode::Monolithic, None))
            .await
            .unwrap(),
        BlobPushOutcome::Uploaded
    );
    assert_eq!(
        client.push_blob("test/app", &chunked_upload).await.unwrap(),
        BlobPushOutcome::Uploaded
    );
    assert_eq!(sent.load(Ordering::Relaxed), chunked.bytes.len() as u64);

    for b in [&mono, &chunked] {
        assert_eq!(
            client.blob_exists("test/app", &b.digest).await.unwrap(),
            Some(b.bytes.len() as u64)
        );
        let got = client.get_blob_bytes("test/app", &b.digest).await.unwrap();
        assert!(got == b.bytes, "blob {} came back different", b.digest);
    }
    // A second push uploads nothing.
    assert_eq!(
        client
            .push_blob("test/app", &upload(&mono, UploadMode::Monolithic, None))
            .await
            .unwrap(),
        BlobPushOutcome::AlreadyExists
    );
    // Another repository of the same registry gets it by mount, not by upload.
    assert_eq!(
        client
            .push_blob(
                "test/other",
                &upload(&mono, UploadMode::Monolithic, Some("test/app"))
            )
            .await
            .unwrap(),
        BlobPushOutcome::Mounted
    );
    assert!(
        client
            .blob_exists("test/other", &mono.digest)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn manifests_round_trip_and_ranged_download_resumes() {
    let registry = TestRegistry::start(Auth::None);
    let client = client(&registry, None);
    let config = blob(10, 300);
    let layer = blob(11, 1 << 20);
    for b in [&config, &layer] {
        client
            .push_blob("r/img", &upload(b, UploadMode::Monolithic, None))
            .await
            .unwrap();
    }
    let manifest = manifest_for(&config, &[&layer]);
    let digest = client
        .put_manifest("r/img", "v1", OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(digest, Digest::of(&manifest).to_string());

    for reference in ["v1", digest.as_str()] {
        let fetched = client.get_manifest("r/img", reference).await.unwrap();
        assert_eq!(fetched.bytes, manifest);
        assert_eq!(fetched.digest, digest);
        assert_eq!(fetched.media_type, OCI_MANIFEST);
    }
    let head = client.head_manifest("r/img", "v1").await.unwrap().unwrap();
    assert_eq!(head.digest.as_deref(), Some(digest.as_str()));
    assert!(
        client
            .head_manifest("r/img", "nope")
            .await
            .unwrap()
            .is_none()
    );
    let err = client.get_manifest("r/img", "nope").await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("MANIFEST_UNKNOWN"), "{err}");

    // Resume from the middle: the registry honours Range and the halves join up.
    let offset = 400_000u64;
    let download = client
        .get_blob("r/img", &layer.digest, offset)
        .await
        .unwrap();
    assert_eq!(download.offset, offset);
    assert_eq!(download.total, Some(layer.bytes.len() as u64));
    let rest: Vec<u8> = download
        .into_stream()
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .unwrap();
    assert!(rest == layer.bytes[offset as usize..]);
}

#[tokio::test]
async fn a_tampered_blob_fails_verification() {
    let registry = TestRegistry::start(Auth::None);
    let client = client(&registry, None);
    let b = blob(20, 4096);
    client
        .push_blob("t/x", &upload(&b, UploadMode::Monolithic, None))
        .await
        .unwrap();
    let path = registry.blob_data_path(&b.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = client.get_blob_bytes("t/x", &b.digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("digest mismatch"), "{err}");
}

#[tokio::test]
async fn basic_auth_accepts_the_right_password_only() {
    let registry = TestRegistry::start(Auth::Basic);
    let good = client(&registry, Some((USER, PASSWORD)));
    good.verify_login().await.unwrap();
    let b = blob(30, 10_000);
    good.push_blob(
        "auth/app",
        &upload(&b, UploadMode::Chunked { chunk_size: 4096 }, None),
    )
    .await
    .unwrap();
    assert_eq!(
        good.get_blob_bytes("auth/app", &b.digest).await.unwrap(),
        b.bytes
    );

    let wrong = client(&registry, Some((USER, "wrong")));
    let err = wrong.verify_login().await.unwrap_err();
    assert!(matches!(err, RegistryError::BadCredentials { .. }), "{err}");
    assert!(
        err.to_string().contains("wrong username or password"),
        "{err}"
    );
    let err = wrong.blob_exists("auth/app", &b.digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::BadCredentials { .. }), "{err}");

    let anonymous = client(&registry, None);
    let err = anonymous
        .blob_exists("auth/app", &b.digest)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("berth login"), "{err}");
}

#[tokio::test]
async fn bearer_token_flow_against_a_real_token_server() {
    let registry = TestRegistry::start(Auth::Token);
    let server = registry.token_server.as_ref().unwrap();
    let alice = client(&registry, Some((USER, PASSWORD)));
    alice.verify_login().await.unwrap();
    let b = blob(40, 70_000);
    assert_eq!(
        alice
            .push_blob("team/app", &upload(&b, UploadMode::Monolithic, None))
            .await
            .unwrap(),
        BlobPushOutcome::Uploaded
    );
    let config = blob(41, 100);
    alice
        .push_blob("team/app", &upload(&config, UploadMode::Monolithic, None))
        .await
        .unwrap();
    let manifest = manifest_for(&config, &[&b]);
    alice
        .put_manifest("team/app", "latest", OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    let seen = server.requests();
    assert!(
        seen.iter().any(
            |r| r.service.as_deref() == Some(support::token_server::SERVICE)
                && r.user.as_deref() == Some(USER)
                && r.scopes
                    .iter()
                    .any(|s| s == "repository:team/app:pull,push")
        ),
        "token server saw {seen:?}"
    );

    // Anonymous pulls get a pull-only token and work.
    let anonymous = client(&registry, None);
    assert_eq!(
        anonymous
            .get_manifest("team/app", "latest")
            .await
            .unwrap()
            .bytes,
        manifest
    );
    assert_eq!(
        anonymous
            .get_blob_bytes("team/app", &b.digest)
            .await
            .unwrap(),
        b.bytes
    );
    // ...but may not push.
    let other = blob(42, 10);
    let err = anonymous
        .push_blob("team/app", &upload(&other, UploadMode::Monolithic, None))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");

    let wrong = client(&registry, Some((USER, "nope")));
    let err = wrong.verify_login().await.unwrap_err();
    assert!(matches!(err, RegistryError::BadCredentials { .. }), "{err}");
    let err = wrong.get_manifest("team/app", "latest").await.unwrap_err();
    assert!(matches!(err, RegistryError::BadCredentials { .. }), "{err}");
}
