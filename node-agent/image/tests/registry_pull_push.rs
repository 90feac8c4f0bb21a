//! Pull and push between the content store and a real `docker-registry` on 127.0.0.1.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use berth_image::registry::progress::{BlobOutcome, Event, Observer, Silent};
use berth_image::registry::pull::{PullError, PullOptions, PullReport, parse_platform, pull};
use berth_image::registry::push::{PushOptions, PushReport, push};
use berth_image::registry::{ClientOptions, Credentials, RegistryClient, UploadMode};
use berth_image::{Digest, Reference, Store};
use support::images::{
    Compression, Flavor, Layer, image_blobs, make_image, make_index, make_index_as,
    write_manifest_as,
};
use support::registry::{Auth, PASSWORD, TestRegistry, USER, client};

/// Pushes `reference` from `source` with the default options, silently; the test fails if
/// the push does.
async fn push_all(client: &RegistryClient, source: &Store, reference: &Reference) -> PushReport {
    push(
        client,
        source,
        reference,
        &PushOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap()
}

/// Pulls `reference` into `target` with the default options, silently.
async fn pull_default(
    client: &RegistryClient,
    target: &Store,
    reference: &Reference,
) -> Result<PullReport, PullError> {
    pull(client, target, reference, &PullOptions::default(), &Silent).await
}

fn layer(seed: u64, len: usize, compression: Compression) -> Layer {
    Layer {
        files: vec![(
            format!("data/file-{seed}"),
            support::random_bytes(seed, len),
        )],
        compression,
    }
}

fn three_layers() -> Vec<Layer> {
    vec![
        layer(1, 300_000, Compression::Gzip),
        layer(2, 200_000, Compression::Zstd),
        layer(3, 100_000, Compression::None),
    ]
}

fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

/// Records blob events for assertions.
#[derive(Default)]
struct Recorder {
    starts: Mutex<Vec<(String, u64)>>,
    done: Mutex<Vec<(String, BlobOutcome)>>,
}

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::BlobStart { digest, offset, .. } => self
                .starts
                .lock()
                .unwrap()
                .push((digest.to_string(), *offset)),
            Event::BlobDone {
                digest, outcome, ..
            } => self
                .done
                .lock()
                .unwrap()
                .push((digest.to_string(), *outcome)),
            _ => {}
        }
    }
}

async fn round_trip(auth: Auth, credentials: Option<(&str, &str)>, mode: UploadMode) {
    let registry = TestRegistry::start(auth);
    let name = format!("{}/demo/app:v1", registry.host());
    let (_a, source) = open_store();
    let original = make_image(&source, &name, &three_layers());
    let reference = Reference::parse(&name).unwrap();

    let client = client(&registry, credentials);
    let report = push(
        &client,
        &source,
        &reference,
        &PushOptions {
            mode,
            concurrency: 3,
        },
        Arc::new(Silent),
    )
    .await
    .unwrap();
    assert_eq!(report.digest.as_ref(), Some(&original));
    assert_eq!((report.uploaded, report.existing), (4, 0), "{report:?}");

    let (_b, target) = open_store();
    let pulled = pull_default(&client, &target, &reference).await.unwrap();
    assert_eq!(pulled.digest, original);
    assert_eq!(pulled.layers, 3);
    assert_eq!(pulled.downloaded, 4);
    assert_eq!(target.resolve(&reference).unwrap(), original);
    assert_eq!(
        image_blobs(&target, &original),
        image_blobs(&source, &original)
    );
}

#[tokio::test]
async fn push_pull_round_trip_anonymous_monolithic() {
    round_trip(Auth::None, None, UploadMode::Monolithic).await;
}

#[tokio::test]
async fn push_pull_round_trip_basic_auth_chunked() {
    round_trip(
        Auth::Basic,
        Some((USER, PASSWORD)),
        UploadMode::Chunked {
            chunk_size: 64 * 1024,
        },
    )
    .await;
}

#[tokio::test]
async fn push_pull_round_trip_bearer_token() {
    round_trip(Auth::Token, Some((USER, PASSWORD)), UploadMode::Monolithic).await;
}

#[tokio::test]
async fn wrong_password_is_a_clear_error_and_pulls_nothing() {
    let registry = TestRegistry::start(Auth::Basic);
    let name = format!("{}/demo/app:v1", registry.host());
    let (_a, source) = open_store();
    make_image(&source, &name, &three_layers());
    let reference = Reference::parse(&name).unwrap();
    let wrong = client(&registry, Some((USER, "not-it")));
    let err = push(
        &wrong,
        &source,
        &reference,
        &PushOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("wrong username or password"),
        "{err}"
    );
    let (_b, target) = open_store();
    let err = pull_default(&wrong, &target, &reference).await.unwrap_err();
    assert!(
        err.to_string().contains("wrong username or password"),
        "{err}"
    );
    assert!(target.list_images().unwrap().is_empty());
}

#[tokio::test]
async fn second_push_uploads_nothing_and_other_repos_mount() {
    let registry = TestRegistry::start(Auth::None);
    let host = registry.host();
    let (_a, store) = open_store();
    let digest = make_image(&store, &format!("{host}/demo/app:v1"), &three_layers());
    let client = client(&registry, None);
    let first = Reference::parse(&format!("{host}/demo/app:v1")).unwrap();
    push_all(&client, &store, &first).await;

    let recorder = Arc::new(Recorder::default());
    let again = push(
        &client,
        &store,
        &first,
        &PushOptions::default(),
        recorder.clone(),
    )
    .await
    .unwrap();
    assert_eq!((again.uploaded, again.mounted, again.existing), (0, 0, 4));
    assert!(
        recorder
            .done
            .lock()
            .unwrap()
            .iter()
            .all(|(_, o)| *o == BlobOutcome::AlreadyPresent)
    );

    // The same image under another repository of this registry is mounted, not uploaded.
    let copy = Reference::parse(&format!("{host}/demo/copy:v1")).unwrap();
    store.put_image(&copy, &digest).unwrap();
    let mounted = push(
        &client,
        &store,
        &copy,
        &PushOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    assert_eq!((mounted.uploaded, mounted.mounted), (0, 4), "{mounted:?}");
    assert_eq!(
        client.get_manifest("demo/copy", "v1").await.unwrap().digest,
        digest.to_string()
    );
}

#[tokio::test]
async fn index_pull_selects_the_platform() {
    let registry = TestRegistry::start(Auth::None);
    let name = format!("{}/multi/arch:1", registry.host());
    let (_a, source) = open_store();
    let index = make_index(&source, &name, &["amd64", "arm64"]);
    let reference = Reference::parse(&name).unwrap();
    let client = client(&registry, None);
    let report = push_all(&client, &source, &reference).await;
    assert_eq!(report.digest.as_ref(), Some(&index));
    assert!(!report.platform_only);

    for arch in ["amd64", "arm64"] {
        let (_b, target) = open_store();
        let options = PullOptions {
            platform: parse_platform(&format!("linux/{arch}")).unwrap(),
            ..PullOptions::default()
        };
        let pulled = pull(&client, &target, &reference, &options, &Silent)
            .await
            .unwrap();
        assert_eq!(pulled.digest, index);
        let config = target
            .read_config(&{
                let m = target.read_manifest(&pulled.manifest).unwrap();
                match m {
                    berth_image::Manifest::Image(m) => {
                        Digest::from_oci(m.config().digest()).unwrap()
                    }
                    _ => panic!("expected an image manifest"),
                }
            })
            .unwrap();
        assert_eq!(config.architecture().to_string(), arch);
    }

    // A store holding only the amd64 part of the index pushes that manifest alone.
    let (_p, partial) = open_store();
    let pulled = pull_default(&client, &partial, &reference).await.unwrap();
    let copy = Reference::parse(&format!("{}/multi/amd64-only:1", registry.host())).unwrap();
    partial.put_image(&copy, &index).unwrap();
    let report = push(
        &client,
        &partial,
        &copy,
        &PushOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    assert!(report.platform_only);
    assert_eq!(report.digest.as_ref(), Some(&pulled.manifest));
    assert_eq!(
        client
            .get_manifest("multi/amd64-only", "1")
            .await
            .unwrap()
            .digest,
        pulled.manifest.to_string()
    );

    let (_c, target) = open_store();
    let options = PullOptions {
        platform: parse_platform("linux/s390x").unwrap(),
        ..PullOptions::default()
    };
    let err = pull(&client, &target, &reference, &options, &Silent)
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::NoPlatform { .. }), "{err}");
    assert!(
        err.to_string().contains("linux/amd64, linux/arm64"),
        "{err}"
    );
    assert!(target.list_images().unwrap().is_empty());
}

#[tokio::test]
async fn tampered_layer_fails_verification_and_leaves_no_image() {
    let registry = TestRegistry::start(Auth::None);
    let name = format!("{}/demo/tamper:v1", registry.host());
    let (_a, source) = open_store();
    let digest = make_image(&source, &name, &three_layers());
    let reference = Reference::parse(&name).unwrap();
    let client = client(&registry, None);
    push_all(&client, &source, &reference).await;
    let berth_image::Manifest::Image(manifest) = source.read_manifest(&digest).unwrap() else {
        panic!("expected an image manifest");
    };
    let layer = Digest::from_oci(manifest.layers()[1].digest()).unwrap();
    let path = registry.blob_data_path(&layer.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();

    let (dir, target) = open_store();
    let err = pull_default(&client, &target, &reference)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("verification failed") && text.contains(&layer.to_string()),
        "{text}"
    );
    assert!(target.list_images().unwrap().is_empty());
    assert!(!target.has_blob(&layer));
    // No partial is kept for a blob that failed verification.
    let partials: Vec<_> = std::fs::read_dir(dir.path().join("store/ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(layer.hex()))
        .collect();
    assert!(partials.is_empty(), "{partials:?}");
}

/// Blocks the download of one blob once `threshold` bytes arrived, until the test says go.
struct Stall {
    digest: String,
    threshold: u64,
    fired: AtomicBool,
    reached: Mutex<mpsc::Sender<()>>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl Observer for Stall {
    fn event(&self, event: &Event<'_>) {
        if let Event::BlobProgress { digest, done, .. } = event
            && *digest == self.digest
            && *done >= self.threshold
            && !self.fired.swap(true, Ordering::SeqCst)
        {
            let _ = self.reached.lock().unwrap().send(());
            let _ = self
                .go
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_pull_resumes_and_completes() {
    let registry = TestRegistry::start(Auth::None);
    let name = format!("{}/demo/big:v1", registry.host());
    let (_a, source) = open_store();
    let digest = make_image(
        &source,
        &name,
        &[
            layer(7, 6 << 20, Compression::Gzip),
            layer(8, 50_000, Compression::Gzip),
        ],
    );
    let berth_image::Manifest::Image(manifest) = source.read_manifest(&digest).unwrap() else {
        panic!("expected an image manifest");
    };
    let big = Digest::from_oci(manifest.layers()[0].digest()).unwrap();
    let reference = Reference::parse(&name).unwrap();
    let client = Arc::new(client(&registry, None));
    push_all(&client, &source, &reference).await;

    let (dir, target) = open_store();
    let (reached_tx, reached_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let stall = Arc::new(Stall {
        digest: big.to_string(),
        threshold: 1 << 20,
        fired: AtomicBool::new(false),
        reached: Mutex::new(reached_tx),
        go: Mutex::new(go_rx),
    });
    let task = {
        let (client, target, reference, stall) = (
            client.clone(),
            target.clone(),
            reference.clone(),
            stall.clone(),
        );
        tokio::spawn(async move {
            pull(
                &client,
                &target,
                &reference,
                &PullOptions::default(),
                &*stall,
            )
            .await
        })
    };
    tokio::task::spawn_blocking(move || reached_rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the download reached 1 MiB");
    task.abort();
    go_tx.send(()).unwrap();
    let aborted = task.await;
    assert!(aborted.unwrap_err().is_cancelled());
    assert!(target.list_images().unwrap().is_empty());
    let partial = dir
        .path()
        .join("store/ingest")
        .join(format!("{}.partial", big.hex()));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(
        ((1 << 20)..(6 << 20)).contains(&kept),
        "partial holds {kept} bytes"
    );

    let recorder = Recorder::default();
    let report = pull(
        &client,
        &target,
        &reference,
        &PullOptions::default(),
        &recorder,
    )
    .await
    .unwrap();
    assert_eq!(report.digest, digest);
    let starts = recorder.starts.lock().unwrap().clone();
    let resumed_at = starts
        .iter()
        .find(|(d, _)| *d == big.to_string())
        .map(|(_, offset)| *offset)
        .expect("the big layer was downloaded again");
    assert!(resumed_at >= kept.min(1 << 20), "resumed at {resumed_at}");
    assert_eq!(image_blobs(&target, &digest), image_blobs(&source, &digest));
    assert!(!partial.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_image_into_one_store_both_succeed() {
    let registry = TestRegistry::start(Auth::None);
    let name = format!("{}/demo/twice:v1", registry.host());
    let (_a, source) = open_store();
    let digest = make_image(
        &source,
        &name,
        &[
            layer(50, 4 << 20, Compression::Gzip),
            layer(51, 4 << 20, Compression::Zstd),
        ],
    );
    let reference = Reference::parse(&name).unwrap();
    let client = client(&registry, None);
    push_all(&client, &source, &reference).await;
    let (_b, target) = open_store();
    // The second pull finds the first one's ingests locked and waits for them.
    let options = PullOptions::default();
    let (first, second) = tokio::join!(
        pull(&client, &target, &reference, &options, &Silent),
        pull(&client, &target, &reference, &options, &Silent)
    );
    assert_eq!(first.unwrap().digest, digest);
    assert_eq!(second.unwrap().digest, digest);
    assert_eq!(image_blobs(&target, &digest), image_blobs(&source, &digest));
}

#[tokio::test]
async fn docker_schema2_and_manifest_lists_round_trip() {
    let registry = TestRegistry::start(Auth::None);
    let client = client(&registry, None);
    let (_a, source) = open_store();

    let single = format!("{}/docker/single:1", registry.host());
    let (digest, _) = write_manifest_as(
        &source,
        &[
            layer(60, 50_000, Compression::Gzip),
            layer(61, 20_000, Compression::None),
        ],
        "amd64",
        Flavor::Docker,
    );
    source
        .put_image(&Reference::parse(&single).unwrap(), &digest)
        .unwrap();
    let list = format!("{}/docker/list:1", registry.host());
    let list_digest = make_index_as(&source, &list, &["arm64", "amd64"], Flavor::Docker);

    for (name, expected, media_type) in [
        (&single, &digest, berth_image::media_types::DOCKER_MANIFEST),
        (
            &list,
            &list_digest,
            berth_image::media_types::DOCKER_MANIFEST_LIST,
        ),
    ] {
        let reference = Reference::parse(name).unwrap();
        push_all(&client, &source, &reference).await;
        // The registry serves it back with its Docker media type and the same digest.
        let fetched = client
            .get_manifest(reference.repository(), "1")
            .await
            .unwrap();
        assert_eq!(fetched.media_type, media_type);
        assert_eq!(fetched.digest, expected.to_string());

        let (_b, target) = open_store();
        let report = pull_default(&client, &target, &reference).await.unwrap();
        assert_eq!(&report.digest, expected);
        let (manifest_digest, manifest) = target.platform_manifest(expected).unwrap();
        assert_eq!(manifest_digest, report.manifest);
        let config = target
            .read_config(&Digest::from_oci(manifest.config().digest()).unwrap())
            .unwrap();
        assert_eq!(config.architecture().to_string(), "amd64");
        assert_eq!(
            image_blobs(&target, &report.manifest),
            image_blobs(&source, &report.manifest)
        );
    }
}

#[tokio::test]
async fn https_registry_with_a_private_ca_from_certs_d() {
    let registry = TestRegistry::start_tls(Auth::Basic);
    let name = format!("{}/secure/app:v1", registry.host());
    let (_a, source) = open_store();
    let digest = make_image(&source, &name, &three_layers());
    let reference = Reference::parse(&name).unwrap();
    let trusted = RegistryClient::new(
        &registry.host(),
        ClientOptions {
            credentials: Some(Credentials {
                username: USER.to_string(),
                password: PASSWORD.to_string(),
            }),
            certs_dirs: vec![registry.certs_dir.clone().unwrap()],
            ..ClientOptions::default()
        },
    )
    .unwrap();
    trusted.verify_login().await.unwrap();
    assert_eq!(trusted.endpoint().await.unwrap().scheme(), "https");
    push_all(&trusted, &source, &reference).await;
    let (_b, target) = open_store();
    let report = pull_default(&trusted, &target, &reference).await.unwrap();
    assert_eq!(report.digest, digest);
    assert_eq!(image_blobs(&target, &digest), image_blobs(&source, &digest));

    // Without the CA the certificate is not trusted: the client stays on HTTPS (no fallback
    // to plain HTTP for a server that speaks TLS) and says why it fails.
    let untrusted = client(&registry, Some((USER, PASSWORD)));
    let (_c, other) = open_store();
    let err = pull_default(&untrusted, &other, &reference)
        .await
        .unwrap_err();
    assert_eq!(untrusted.endpoint().await.unwrap().scheme(), "https");
    assert!(err.to_string().contains("certificate"), "{err}");
    eprintln!("untrusted registry: {err}");
    assert!(other.list_images().unwrap().is_empty());
}
