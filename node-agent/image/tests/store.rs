//! Content store behaviour on a real filesystem: verified writes, resumable ingests,
//! concurrent writers, tamper detection, image records and garbage collection.

mod common;

use std::fs;
use std::io::Write;
use std::time::Duration;

use berth_image::{Digest, GcOptions, Reference, Store, StoreError};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("image")).unwrap();
    (dir, store)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn dropped_ingest_resumes_from_its_offset_and_commits() {
    let (_dir, store) = store();
    let data = pattern(3 << 20, 7);
    let digest = Digest::of(&data);
    let size = data.len() as u64;

    let mut ingest = store.begin_ingest(&digest, size).unwrap();
    assert_eq!(ingest.offset(), 0);
    ingest.write_all(&data[..1_000_003]).unwrap();
    drop(ingest); // the "killed" download
    assert!(
        !store.has_blob(&digest),
        "a partial blob must never be visible"
    );
    assert!(matches!(
        store.blob_size(&digest),
        Err(StoreError::BlobNotFound { .. })
    ));

    let mut resumed = store.begin_ingest(&digest, size).unwrap();
    assert_eq!(resumed.offset(), 1_000_003);
    let offset = resumed.offset() as usize;
    resumed.write_all(&data[offset..]).unwrap();
    assert_eq!(resumed.commit().unwrap(), (digest.clone(), size));
    assert_eq!(store.read_blob(&digest).unwrap(), data);
    store.verify_blob(&digest).unwrap();

    // Ingesting a blob that is already complete is a no-op.
    let again = store.begin_ingest(&digest, size).unwrap();
    assert!(again.is_complete());
    assert_eq!(again.offset(), size);
    assert_eq!(again.commit().unwrap().0, digest);
    assert_eq!(
        fs::read_dir(store.root().join("ingest")).unwrap().count(),
        0
    );
}

#[test]
fn ingest_with_wrong_content_fails_and_leaves_nothing() {
    let (_dir, store) = store();
    let data = pattern(10_000, 1);
    let digest = Digest::of(&data);
    let mut ingest = store.begin_ingest(&digest, data.len() as u64).unwrap();
    let mut tampered = data.clone();
    tampered[5000] ^= 0xff;
    ingest.write_all(&tampered).unwrap();
    let err = ingest.commit().unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&digest));
    // Too much data is refused before it reaches the disk.
    let mut ingest = store.begin_ingest(&digest, data.len() as u64).unwrap();
    assert_eq!(ingest.offset(), 0, "a failed commit discards the partial");
    let mut longer = data.clone();
    longer.push(0);
    assert!(ingest.write_all(&longer).is_err());
    ingest.abort().unwrap();
    // A short ingest fails on size.
    let mut ingest = store.begin_ingest(&digest, data.len() as u64 + 1).unwrap();
    ingest.write_all(&data).unwrap();
    assert!(matches!(
        ingest.commit(),
        Err(StoreError::SizeMismatch { .. })
    ));
}

#[test]
fn second_concurrent_ingest_of_the_same_blob_is_refused() {
    let (_dir, store) = store();
    let digest = Digest::of(b"abc");
    let first = store.begin_ingest(&digest, 3).unwrap();
    assert!(matches!(
        store.begin_ingest(&digest, 3),
        Err(StoreError::IngestBusy { .. })
    ));
    drop(first);
    store.begin_ingest(&digest, 3).unwrap().abort().unwrap();
}

#[test]
fn concurrent_writers_of_the_same_blob_are_safe() {
    let (_dir, store) = store();
    let data = pattern(4 << 20, 3);
    let digest = Digest::of(&data);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let (d, n) = store.write_blob(None, &data[..]).unwrap();
                assert_eq!((d, n), (digest.clone(), data.len() as u64));
            });
        }
    });
    store.verify_blob(&digest).unwrap();
    assert_eq!(store.list_blobs().unwrap(), vec![digest]);
    assert_eq!(
        fs::read_dir(store.root().join("ingest")).unwrap().count(),
        0
    );
}

#[test]
fn tampered_blob_fails_verification() {
    let (_dir, store) = store();
    let digest = store.write_blob_bytes(b"{\"schemaVersion\":2}").unwrap();
    fs::write(store.blob_path(&digest), b"{\"schemaVersion\":3}").unwrap();
    assert!(matches!(
        store.verify_blob(&digest),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert!(matches!(
        store.read_blob(&digest),
        Err(StoreError::DigestMismatch { .. })
    ));
    let mut reader = store.open_blob_verified(&digest).unwrap();
    let err = std::io::copy(&mut reader, &mut std::io::sink()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

/// Writes a minimal image (config + layers + manifest) directly and returns the manifest;
/// the tag in its config makes each image's config its own.
fn put_fake_image(store: &Store, layers: &[&[u8]], tag: &str) -> Digest {
    let layers: Vec<(Vec<u8>, Vec<u8>)> = layers.iter().map(|l| (l.to_vec(), l.to_vec())).collect();
    let mut extra = serde_json::Map::new();
    extra.insert("tag".into(), tag.into());
    common::put_image_with(store, &layers, tag, extra)
}

#[test]
fn removing_an_image_frees_only_unreferenced_blobs() {
    let (_dir, store) = store();
    let shared: &[u8] = b"shared layer";
    let a = put_fake_image(&store, &[shared, b"only a"], "a:1");
    let b = put_fake_image(&store, &[shared, b"only b"], "b:1");
    let all_before = store.list_blobs().unwrap();
    assert_eq!(all_before.len(), 7, "3 layers + 2 configs + 2 manifests");

    // An unreferenced blob and a stale temp file are garbage too.
    let orphan = store.write_blob_bytes(b"orphan").unwrap();
    fs::write(store.root().join("ingest/tmp-stale"), b"x").unwrap();
    fs::write(store.root().join(".tmp-interrupted-records"), b"{").unwrap();
    // A young resumable partial download is kept for a resume.
    let partial = Digest::of(b"partial download");
    let mut ingest = store.begin_ingest(&partial, 16).unwrap();
    ingest.write_all(b"partial").unwrap();
    drop(ingest);

    assert_eq!(store.untag(&Reference::parse("a:1").unwrap()).unwrap(), a);
    let report = store
        .gc(&GcOptions {
            ingest_max_age: Duration::from_secs(3600),
        })
        .unwrap();
    let removed: std::collections::BTreeSet<_> = report.blobs_removed.into_iter().collect();
    let expect_removed: std::collections::BTreeSet<_> = [a.clone(), Digest::of(b"only a"), orphan]
        .into_iter()
        .collect();
    // a's config is also gone; everything b uses stays.
    assert!(expect_removed.is_subset(&removed), "{removed:?}");
    assert_eq!(removed.len(), 4);
    assert_eq!(report.ingests_removed, 2);
    assert!(!store.root().join(".tmp-interrupted-records").exists());
    assert_eq!(
        store.begin_ingest(&partial, 16).unwrap().offset(),
        7,
        "young partial kept"
    );
    let report = store
        .gc(&GcOptions {
            ingest_max_age: Duration::ZERO,
        })
        .unwrap();
    assert_eq!(report.ingests_removed, 1, "an old partial goes");
    for kept in store.reachable_blobs(&b).unwrap() {
        assert!(store.has_blob(&kept));
    }
    assert!(store.has_blob(&Digest::of(shared)));
    assert!(!store.has_blob(&Digest::of(b"only a")));
}

#[test]
fn gc_waits_for_leases_and_moving_a_tag_leaves_a_dangling_image() {
    let (_dir, store) = store();
    let first = put_fake_image(&store, &[b"v1"], "app:latest");
    // Retagging moves the name; the old image becomes dangling, not garbage.
    let second = put_fake_image(&store, &[b"v2"], "app:latest");
    let records = store.list_images().unwrap();
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .any(|r| r.reference.is_none() && r.target == first)
    );
    assert_eq!(
        store.resolve(&Reference::parse("app").unwrap()).unwrap(),
        second
    );

    let lease = store.lease().unwrap();
    assert!(matches!(
        store.gc(&GcOptions::default()),
        Err(StoreError::Busy { .. })
    ));
    assert_eq!(store.try_gc(&GcOptions::default()).unwrap(), None);
    drop(lease);
    assert!(
        store
            .gc(&GcOptions::default())
            .unwrap()
            .blobs_removed
            .is_empty()
    );

    assert_eq!(store.remove_dangling().unwrap(), vec![first.clone()]);
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.blobs_removed.len(), 3);
    assert!(!store.has_blob(&first));
    assert!(store.has_blob(&second));
}

#[test]
fn lookup_accepts_references_ids_and_prefixes() {
    let (_dir, store) = store();
    let target = put_fake_image(&store, &[b"l"], "localhost:5000/team/app:v1");
    let image = store.image(&target).unwrap();
    assert_eq!(store.lookup("localhost:5000/team/app:v1").unwrap(), target);
    assert_eq!(store.lookup(&image.id().to_string()).unwrap(), target);
    assert_eq!(store.lookup(image.id().short()).unwrap(), target);
    assert_eq!(store.lookup(&target.hex()[..10]).unwrap(), target);
    let pinned = format!("localhost:5000/team/app@{target}");
    assert_eq!(store.lookup(&pinned).unwrap(), target);
    assert!(matches!(
        store.lookup("nothere"),
        Err(StoreError::ImageNotFound { .. })
    ));
    // A reference pinned to another digest cannot be recorded.
    let wrong = Reference::parse(&format!("x@{}", Digest::of(b"x"))).unwrap();
    assert!(matches!(
        store.put_image(&wrong, &target),
        Err(StoreError::ReferenceDigestMismatch { .. })
    ));
    assert_eq!(store.names_of(&target).unwrap().len(), 1);
    assert_eq!(store.remove_image(&target).unwrap().len(), 1);
    assert!(store.list_images().unwrap().is_empty());
}

#[test]
fn concurrent_record_updates_from_many_threads_all_land() {
    let (_dir, store) = store();
    let target = put_fake_image(&store, &[b"base"], "base:1");
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = store.clone();
            let target = target.clone();
            s.spawn(move || {
                for i in 0..10 {
                    let r = Reference::parse(&format!("app{t}:v{i}")).unwrap();
                    store.put_image(&r, &target).unwrap();
                }
            });
        }
    });
    // Every read-modify-write ran under the metadata lock: none was lost.
    assert_eq!(store.list_images().unwrap().len(), 81);
    assert_eq!(store.names_of(&target).unwrap().len(), 81);
}
