//! `berth login|push|pull|logout` end to end: the real binary against Debian's
//! `docker-registry` on 127.0.0.1 with htpasswd basic auth, each run with its own data root
//! and config directories.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use berth_image::{Digest, Reference, Store};
use berth_testkit::Registry;
use berth_testkit::registry::{Options, htpasswd_auth};

const USER: &str = "carol";
const PASSWORD: &str = "p4ss word";

/// Debian's `docker-registry` on 127.0.0.1, with htpasswd basic auth for `USER` if asked.
fn start_registry(basic_auth: bool) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let sections = if basic_auth {
        htpasswd_auth(dir.path(), USER, PASSWORD)
    } else {
        String::new()
    };
    Registry::start_with(
        dir,
        &Options {
            sections,
            ..Options::default()
        },
    )
}

struct Env {
    home: tempfile::TempDir,
}

impl Env {
    fn berth(&self, data_root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = berth_testkit::bounded(180, env!("CARGO_BIN_EXE_berth"))
            .arg("--data-root")
            .arg(data_root)
            .args(args)
            .env("HOME", self.home.path())
            .env("BERTH_CONFIG", self.config_dir())
            .env("DOCKER_CONFIG", self.home.path().join("docker"))
            .env_remove("BERTH_INSECURE_REGISTRIES")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("berth-config")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A two-layer image written straight into the store under `reference`.
fn make_image(store: &Store, reference: &str) -> (Digest, Vec<Digest>) {
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    for seed in 1..=2u8 {
        let bytes: Vec<u8> = (0..100_000u32)
            .map(|i| (i as u8).wrapping_mul(seed))
            .collect();
        let digest = store.write_blob_bytes(&bytes).unwrap();
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest.to_string(), "size": bytes.len()
        }));
        blobs.push(digest);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": blobs.iter().map(|d| d.to_string()).collect::<Vec<_>>() }
    }))
    .unwrap();
    let config_digest = store.write_blob_bytes(&config).unwrap();
    blobs.push(config_digest.clone());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest.to_string(), "size": config.len() },
        "layers": layers,
    }))
    .unwrap();
    let digest = store.write_blob_bytes(&manifest).unwrap();
    store
        .put_image(&Reference::parse(reference).unwrap(), &digest)
        .unwrap();
    (digest, blobs)
}

#[test]
fn login_push_pull_logout_through_the_cli() {
    let registry = start_registry(true);
    let host = registry.addr.to_string();
    let env = Env {
        home: tempfile::tempdir().unwrap(),
    };
    let roots = tempfile::tempdir().unwrap();
    let (source_root, target_root) = (roots.path().join("a"), roots.path().join("b"));

    // A wrong password is refused before anything is saved.
    let out = env.berth(
        &source_root,
        &["login", "-u", USER, "--password-stdin", &host],
        Some("nope\n"),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("wrong username or password"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let config = env.config_dir().join("config.json");
    assert!(!config.exists());

    let out = env.berth(
        &source_root,
        &["login", "-u", USER, "--password-stdin", &host],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Login Succeeded"));
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(saved["auths"][&host]["auth"].is_string(), "{saved}");

    let name = format!("{host}/cli/app:v1");
    let store = Store::open(source_root.join("image")).unwrap();
    let (digest, blobs) = make_image(&store, &name);
    let out = env.berth(&source_root, &["push", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches(": Pushed").count(), 3, "{stdout}");
    assert!(stdout.contains(&digest.to_string()), "{stdout}");

    let out = env.berth(&target_root, &["pull", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for blob in &blobs {
        assert!(
            stdout.contains(&format!("{}: Pull complete", &blob.hex()[..12])),
            "{stdout}"
        );
    }
    assert!(stdout.contains(&format!("Digest: {digest}")), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some(Reference::parse(&name).unwrap().to_string().as_str())
    );
    let pulled = Store::open(target_root.join("image")).unwrap();
    assert_eq!(
        pulled.resolve(&Reference::parse(&name).unwrap()).unwrap(),
        digest
    );

    let out = env.berth(&target_root, &["pull", "-q", &name], None);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 1);

    let out = env.berth(&target_root, &["logout", &host], None);
    assert!(text(&out.stdout).contains("Removing login credentials"));
    let out = env.berth(&roots.path().join("c"), &["pull", &name], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("authentication required") && err.contains("berth login"),
        "{err}"
    );
}

#[test]
fn pull_of_a_bad_reference_or_unreachable_registry_is_one_clear_line() {
    let env = Env {
        home: tempfile::tempdir().unwrap(),
    };
    let root = tempfile::tempdir().unwrap();
    let out = env.berth(root.path(), &["pull", "UPPER/Case"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.starts_with("berth: invalid reference"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // A loopback port nobody listens on: refused quickly, after bounded retries.
    let port = berth_testkit::free_port();
    let out = env.berth(
        root.path(),
        &["pull", &format!("127.0.0.1:{port}/x/y")],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn pull_with_unpack_extracts_the_layers() {
    let Some(_) = berth_image::testing::busybox_path() else {
        panic!("/bin/busybox is missing: install Debian's busybox-static");
    };
    let registry = start_registry(false);
    let env = Env {
        home: tempfile::tempdir().unwrap(),
    };
    let roots = tempfile::tempdir().unwrap();
    let name = format!("{}/test/busybox:1", registry.addr);
    let source = Store::open(roots.path().join("a/image")).unwrap();
    berth_image::testing::import_busybox(&source, &Reference::parse(&name).unwrap()).unwrap();
    let out = env.berth(&roots.path().join("a"), &["push", "-q", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let target_root = roots.path().join("b");
    let out = env.berth(&target_root, &["pull", "--unpack", &name], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Unpacked 1 layers"),
        "{}",
        text(&out.stdout)
    );
    let store = Store::open(target_root.join("image")).unwrap();
    let image = store
        .image(&store.resolve(&Reference::parse(&name).unwrap()).unwrap())
        .unwrap();
    let snapshots = berth_image::snapshot::Snapshotter::new(&store).unwrap();
    let diff_id = image.diff_ids().unwrap().remove(0);
    assert!(snapshots.has_layer(&diff_id));
    assert!(snapshots.layer_dir(&diff_id).join("bin/busybox").is_file());
}
