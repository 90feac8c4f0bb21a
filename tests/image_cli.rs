//! `berth image …` end to end through the real binary: the offline busybox script, ls,
//! inspect, tag, save/load round trips in both formats, rm and prune.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn berth(data_root: &Path, args: &[&str]) -> Output {
    Command::new(BERTH)
        .arg("--data-root")
        .arg(data_root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(data_root: &Path, args: &[&str]) -> String {
    let out = berth(data_root, args);
    assert!(
        out.status.success(),
        "berth {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn inspect(data_root: &Path, image: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(data_root, &["image", "inspect", image])).unwrap();
    v[0].clone()
}

#[test]
fn busybox_script_then_save_load_rm_prune() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images/make-busybox.sh");
    let out = Command::new(&script)
        .env("BERTH", BERTH)
        .env("BERTH_DATA_ROOT", &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make-busybox.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    // The applet links are relative to the image, not to where the script built it.
    let store = berth_image::Store::open(data.join("image")).unwrap();
    let image = store.image(&store.lookup("busybox").unwrap()).unwrap();
    let layers = berth_image::Snapshotter::new(&store)
        .unwrap()
        .unpack(&image)
        .unwrap();
    assert_eq!(
        std::fs::read_link(layers[0].join("bin/echo")).unwrap(),
        Path::new("busybox")
    );

    let info = inspect(&data, "busybox");
    assert_eq!(info["Id"], id.as_str());
    assert_eq!(info["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(info["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(info["Os"], "linux");
    let manifest = info["Descriptor"]["digest"].as_str().unwrap().to_owned();

    ok(&data, &["tag", "busybox", "localhost:5000/tools/bb:1"]);
    let listed = ok(&data, &["images", "--format", "json"]);
    let repos: Vec<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Repository"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(repos, ["busybox", "localhost:5000/tools/bb"]);
    assert_eq!(ok(&data, &["images", "-q"]).trim(), &id[7..19]);

    for format in ["docker", "oci"] {
        let archive = dir.path().join(format!("bb-{format}.tar"));
        ok(
            &data,
            &[
                "save",
                "--format",
                format,
                "-o",
                archive.to_str().unwrap(),
                "busybox",
                "localhost:5000/tools/bb:1",
            ],
        );
        let other = dir.path().join(format!("data-{format}"));
        let loaded = ok(&other, &["load", "-i", archive.to_str().unwrap()]);
        assert!(loaded.contains("Loaded image: busybox:latest"), "{loaded}");
        assert!(
            loaded.contains("Loaded image: localhost:5000/tools/bb:1"),
            "{loaded}"
        );
        let again = inspect(&other, "localhost:5000/tools/bb:1");
        assert_eq!(again["Id"], id.as_str(), "{format}: image id kept");
        assert_eq!(
            again["Descriptor"]["digest"],
            manifest.as_str(),
            "{format}: manifest digest kept"
        );
    }

    // Removing one of two names only untags; the last name deletes the image and its blobs.
    let out = ok(&data, &["rmi", "localhost:5000/tools/bb:1"]);
    assert_eq!(out.trim(), "Untagged: localhost:5000/tools/bb:1");
    let blobs = data.join("image/blobs/sha256");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 3);
    let out = ok(&data, &["image", "rm", "busybox"]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);

    // Errors are one line and a non-zero exit.
    let out = berth(&data, &["rmi", "busybox"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "berth: no such image: busybox"
    );

    // `prune -a` removes every image no container uses, with all its names.
    let archive = dir.path().join("bb-oci.tar");
    let out = berth(&data, &["load", "-q", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success());
    ok(&data, &["rmi", "busybox"]);
    ok(&data, &["tag", &id[7..19], "keep:1"]);
    assert!(ok(&data, &["image", "prune", "-a"]).contains("untagged: keep:1"));
    assert_eq!(ok(&data, &["images", "-q"]), "");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
}

#[test]
fn kill_9_during_import_leaves_a_consistent_store() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A first, complete image that must survive untouched.
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hostname"), "a\n").unwrap();
    ok(&data, &["import", rootfs.to_str().unwrap(), "first:1"]);

    let mut child = Command::new(BERTH)
        .arg("--data-root")
        .arg(&data)
        .args(["import", "-", "big:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let ingest = data.join("image/ingest");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Feed data until the import is visibly mid-write, then kill it without warning.
    loop {
        stdin.write_all(&chunk).unwrap();
        let writing = std::fs::read_dir(&ingest).unwrap().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("tmp-") && e.metadata().unwrap().len() > 0
        });
        if writing {
            break;
        }
        assert!(Instant::now() < deadline, "import never started writing");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    // No half-written blob is visible: every blob's content matches its name.
    for entry in std::fs::read_dir(data.join("image/blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let bytes = std::fs::read(entry.path()).unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(
            berth_image::Digest::of(&bytes).hex(),
            name,
            "blob content matches its name"
        );
    }
    let listed = ok(&data, &["images", "--format", "json"]);
    assert_eq!(
        listed.lines().count(),
        1,
        "only the complete image: {listed}"
    );
    assert!(listed.contains("\"first\""));
    // The leftover temp file is garbage that the next collection removes.
    ok(&data, &["image", "prune"]);
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0);
    assert!(
        inspect(&data, "first:1")["Id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn rm_refuses_an_image_a_container_snapshot_uses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("srv")).unwrap();
    std::fs::write(rootfs.join("srv/index.html"), "hi\n").unwrap();
    ok(&data, &["import", rootfs.to_str().unwrap(), "web:1"]);

    let store = berth_image::Store::open(data.join("image")).unwrap();
    let image = store.image(&store.lookup("web:1").unwrap()).unwrap();
    let snapshotter = berth_image::Snapshotter::new(&store).unwrap();
    struct Remove<'a>(&'a berth_image::Snapshotter);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = self.0.remove("cli-rm-test");
        }
    }
    let _guard = Remove(&snapshotter);
    let mounted = snapshotter.prepare("cli-rm-test", &image).unwrap();
    assert_eq!(
        std::fs::read_to_string(mounted.path.join("srv/index.html")).unwrap(),
        "hi\n"
    );

    let out = berth(&data, &["rmi", "web:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("used by container cli-rm-test"), "{err}");
    // prune -a keeps it too; --force removes the name, the container keeps its layers.
    ok(&data, &["image", "prune", "-a"]);
    assert!(ok(&data, &["images", "-q"]).trim().len() == 12);
    ok(&data, &["rmi", "--force", "web:1"]);
    assert_eq!(ok(&data, &["images", "-q"]), "");
    assert_eq!(
        std::fs::read_to_string(mounted.path.join("srv/index.html")).unwrap(),
        "hi\n"
    );
    snapshotter.remove("cli-rm-test").unwrap();
    ok(&data, &["image", "prune"]);
    assert_eq!(
        std::fs::read_dir(data.join("image/snapshots/layers"))
            .unwrap()
            .count(),
        0
    );
}
