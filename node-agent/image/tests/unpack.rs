//! Layer unpacking and overlay root filesystems on the real kernel: whiteouts and opaque
//! directories seen through an overlay mount, metadata preservation, and hostile layers
//! that must not touch anything outside their snapshot.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_image::unpack::{UnpackError, UnpackOptions, unpack_layer};
use berth_image::{SnapshotError, Snapshotter, Store};
use common::{ContainerGuard, Member::*, gzip, put_image, tar_layer, zstd};

/// Every path under `root` with its kind and content, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            if ft.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &path, out);
            } else if ft.is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    fs::read_link(&path).unwrap().display()
                ));
            } else if ft.is_file() {
                out.push(format!(
                    "{rel} = {}",
                    String::from_utf8_lossy(&fs::read(&path).unwrap())
                ));
            } else if ft.is_char_device() {
                out.push(format!(
                    "{rel} c{}:{}",
                    libc::major(meta.rdev()),
                    libc::minor(meta.rdev())
                ));
            } else {
                out.push(format!("{rel} ?"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn whiteouts_and_opaque_dirs_give_the_expected_overlay_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("image")).unwrap();
    let base = tar_layer(&[
        Dir("a", 0o755),
        File("a/keep", b"keep"),
        File("a/gone", b"gone"),
        Dir("b", 0o755),
        File("b/old1", b"old1"),
        Dir("b/sub", 0o755),
        File("b/sub/old2", b"old2"),
        Dir("c", 0o755),
        File("c/file", b"c1"),
        Symlink("link", "a/keep"),
        Hardlink("a/keep-hard", "a/keep"),
        FileMeta(
            "suid",
            b"#!",
            0o4755,
            1234,
            5678,
            1_500_000_000,
            &[("user.berth", b"yes")],
        ),
    ]);
    let middle = tar_layer(&[
        Dir("a", 0o755),
        File("a/.wh.gone", b""),
        Dir("b", 0o755),
        File("b/.wh..wh..opq", b""),
        File("b/new", b"new"),
        File("c/file", b"c2"),
        Dir("d", 0o700),
        File("d/x", b"x"),
    ]);
    let top = tar_layer(&[
        File(".wh.c", b""),
        Dir("e", 0o755),
        File("e/y", b"y"),
        File("link", b"now a file"),
    ]);
    let target = put_image(
        &store,
        &[
            (base.clone(), base),
            (middle.clone(), gzip(&middle)),
            (top.clone(), zstd(&top)),
        ],
        "layered:1",
    );
    let image = store.image(&target).unwrap();
    let snapshotter = Snapshotter::new(&store).unwrap();

    let guard = ContainerGuard {
        snapshotter: &snapshotter,
        id: "whiteouts-1".into(),
    };
    let rootfs = snapshotter.prepare(&guard.id, &image).unwrap();
    assert_eq!(
        tree(&rootfs.path),
        vec![
            "a/",
            "a/keep = keep",
            "a/keep-hard = keep",
            "b/",
            "b/new = new",
            "d/",
            "d/x = x",
            "e/",
            "e/y = y",
            "link = now a file",
            "suid = #!",
        ]
    );
    let meta = fs::metadata(rootfs.path.join("suid")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4755, "setuid bit kept after chown");
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    assert_eq!(meta.mtime(), 1_500_000_000);
    assert_eq!(
        xattr_get(&rootfs.path.join("suid"), "user.berth").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        fs::metadata(rootfs.path.join("d")).unwrap().mode() & 0o777,
        0o700
    );
    assert_eq!(
        fs::metadata(rootfs.path.join("a")).unwrap().mtime(),
        1_600_000_000,
        "dir times set last"
    );
    let keep = fs::metadata(rootfs.path.join("a/keep")).unwrap();
    assert_eq!(
        keep.ino(),
        fs::metadata(rootfs.path.join("a/keep-hard")).unwrap().ino(),
        "hardlink shares the inode"
    );

    // The lower layers carry overlay's whiteout encoding.
    let middle_dir = snapshotter.layer_dir(&image.diff_ids().unwrap()[1]);
    let wh = fs::symlink_metadata(middle_dir.join("a/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr_get(&middle_dir.join("b"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );

    // Writes land in the container's upper dir, not in the shared layers.
    fs::write(rootfs.path.join("a/keep"), b"changed").unwrap();
    assert_eq!(
        fs::read(
            snapshotter
                .layer_dir(&image.diff_ids().unwrap()[0])
                .join("a/keep")
        )
        .unwrap(),
        b"keep"
    );

    // A second container shares the unpacked layers and sees the original content.
    let guard2 = ContainerGuard {
        snapshotter: &snapshotter,
        id: "whiteouts-2".into(),
    };
    let rootfs2 = snapshotter.prepare(&guard2.id, &image).unwrap();
    assert_eq!(fs::read(rootfs2.path.join("a/keep")).unwrap(), b"keep");
    assert_eq!(
        fs::read_dir(dir.path().join("image/snapshots/layers"))
            .unwrap()
            .count(),
        3
    );

    snapshotter.remove(&guard.id).unwrap();
    assert!(!rootfs.path.exists(), "remove unmounts and deletes");
    assert!(!is_mounted(&rootfs.path));
    snapshotter.remove(&guard2.id).unwrap();

    // Once the image is gone and no container uses them, gc frees the snapshots too.
    store
        .untag(&berth_image::Reference::parse("layered:1").unwrap())
        .unwrap();
    let report = store.gc(&Default::default()).unwrap();
    assert_eq!(report.snapshots_removed.len(), 3);
    assert_eq!(
        fs::read_dir(dir.path().join("image/snapshots/layers"))
            .unwrap()
            .count(),
        0
    );
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn is_mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&p))
}

/// A sandbox: `snap/` (the snapshot) next to `sentinel` and `outside/` that must survive.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("snap")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("sentinel"), b"safe").unwrap();
        fs::write(dir.path().join("outside/sentinel"), b"safe").unwrap();
        Self { dir }
    }
    fn snap(&self) -> std::path::PathBuf {
        self.dir.path().join("snap")
    }
    fn abs(&self, rel: &str) -> String {
        self.dir.path().join(rel).to_string_lossy().into_owned()
    }
    fn assert_untouched(&self, case: &str) {
        assert_eq!(
            fs::read(self.dir.path().join("sentinel")).unwrap(),
            b"safe",
            "{case}"
        );
        assert_eq!(
            fs::read(self.dir.path().join("outside/sentinel")).unwrap(),
            b"safe",
            "{case}"
        );
        let mut names: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["outside", "sentinel", "snap"],
            "{case}: nothing new outside the snapshot"
        );
        assert_eq!(
            fs::read_dir(self.dir.path().join("outside"))
                .unwrap()
                .count(),
            1,
            "{case}"
        );
        assert_eq!(
            fs::metadata(self.dir.path().join("sentinel"))
                .unwrap()
                .nlink(),
            1,
            "{case}: no hardlink to the sentinel"
        );
    }
}

#[test]
fn hostile_layers_cannot_touch_anything_outside_the_snapshot() {
    type Check = fn(&UnpackError) -> bool;
    type Build = fn(&str, &str) -> Vec<u8>;
    let escape: Check = |e| matches!(e, UnpackError::Escape { .. });
    let through: Check = |e| matches!(e, UnpackError::ThroughNonDirectory { .. });
    // Each layer is built from the sandbox's absolute `outside` dir and `sentinel` file.
    let cases: Vec<(&str, Build, Check)> = vec![
        (
            "relative traversal",
            |_, _| tar_layer(&[File("../../etc/x", b"pwned"), File("../sentinel", b"pwned")]),
            escape,
        ),
        (
            "traversal inside a path",
            |_, _| tar_layer(&[Dir("a", 0o755), File("a/../../sentinel", b"pwned")]),
            escape,
        ),
        (
            "absolute path",
            |_, s| tar_layer(&[File(s, b"pwned")]),
            escape,
        ),
        (
            "absolute symlink then write through it",
            |o, _| tar_layer(&[Symlink("esc", o), File("esc/sentinel", b"pwned")]),
            through,
        ),
        (
            "relative symlink then write through it",
            |_, _| tar_layer(&[Symlink("esc", ".."), File("esc/sentinel", b"pwned")]),
            through,
        ),
        (
            "symlink dir then mkdir through it",
            |o, _| tar_layer(&[Symlink("esc", o), Dir("esc/new", 0o755)]),
            through,
        ),
        (
            "hardlink to a host file by traversal",
            |_, _| tar_layer(&[Hardlink("hl", "../sentinel")]),
            escape,
        ),
        (
            "hardlink to a host file by absolute name",
            |_, s| tar_layer(&[Hardlink("hl", s)]),
            escape,
        ),
        (
            "hardlink through a symlink",
            |o, _| tar_layer(&[Symlink("d", o), Hardlink("hl", "d/sentinel")]),
            through,
        ),
        (
            "whiteout of ..",
            |_, _| tar_layer(&[File(".wh...", b"")]),
            escape,
        ),
        (
            "whiteout of .. in a subdir",
            |_, _| tar_layer(&[Dir("a", 0o755), File("a/.wh...", b"")]),
            escape,
        ),
    ];
    for (case, build, check) in cases {
        let sandbox = Sandbox::new();
        let layer = build(&sandbox.abs("outside"), &sandbox.abs("sentinel"));
        let err = unpack_layer(&layer[..], &sandbox.snap(), &UnpackOptions::default()).unwrap_err();
        assert!(check(&err), "{case}: unexpected error {err}");
        let message = err.to_string();
        assert!(
            message.contains("layer entry"),
            "{case}: error names the entry: {message}"
        );
        sandbox.assert_untouched(case);
    }
}

#[test]
fn replacing_a_symlink_with_a_file_writes_inside_the_snapshot() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.abs("sentinel");
    let layer = tar_layer(&[
        Symlink("f", &sentinel),
        File("f", b"inside"),
        Symlink("g", &sentinel),
        Hardlink("h", "g"),
    ]);
    unpack_layer(&layer[..], &sandbox.snap(), &UnpackOptions::default()).unwrap();
    sandbox.assert_untouched("symlink then file");
    let f = sandbox.snap().join("f");
    assert!(fs::symlink_metadata(&f).unwrap().is_file());
    assert_eq!(fs::read(&f).unwrap(), b"inside");
    // A hardlink to a symlink links the symlink itself, not what it points at.
    assert!(
        fs::symlink_metadata(sandbox.snap().join("h"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn device_nodes_are_refused_when_not_allowed() {
    let sandbox = Sandbox::new();
    let layer = tar_layer(&[File("ok", b"1"), CharDev("dev/mem", 1, 1)]);
    let unprivileged = UnpackOptions {
        allow_devices: false,
        preserve_ownership: false,
    };
    let err = unpack_layer(&layer[..], &sandbox.snap(), &unprivileged).unwrap_err();
    assert!(matches!(err, UnpackError::DeviceNotAllowed { .. }), "{err}");
    assert!(err.to_string().contains("dev/mem"));
    assert!(!sandbox.snap().join("dev/mem").exists());
    sandbox.assert_untouched("device");

    // Where allowed (root), the node is created with its numbers; FIFOs are always fine.
    let sandbox = Sandbox::new();
    let layer = tar_layer(&[CharDev("null", 1, 3), Fifo("pipe")]);
    unpack_layer(
        &layer[..],
        &sandbox.snap(),
        &UnpackOptions {
            allow_devices: true,
            preserve_ownership: true,
        },
    )
    .unwrap();
    let meta = fs::symlink_metadata(sandbox.snap().join("null")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!((libc::major(meta.rdev()), libc::minor(meta.rdev())), (1, 3));
    assert!(
        fs::symlink_metadata(sandbox.snap().join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn tampered_layer_or_wrong_diff_id_fails_and_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("image")).unwrap();
    let layer = tar_layer(&[File("f", b"original content")]);
    let target = put_image(&store, &[(layer.clone(), layer.clone())], "tamper:1");
    let image = store.image(&target).unwrap();
    let blob = store.blob_path(&berth_image::Digest::from_oci(image.layers()[0].digest()).unwrap());
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.windows(8).position(|w| w == b"original").unwrap();
    bytes[at] = b'O';
    fs::write(&blob, &bytes).unwrap();
    let snapshotter = Snapshotter::new(&store).unwrap();
    let err = snapshotter.unpack(&image).unwrap_err();
    assert!(matches!(err, SnapshotError::Unpack { .. }), "{err}");
    assert!(err.to_string().contains("verification failed"), "{err}");
    assert_eq!(
        fs::read_dir(dir.path().join("image/snapshots/layers"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        fs::read_dir(dir.path().join("image/snapshots/tmp"))
            .unwrap()
            .count(),
        0
    );

    // A config whose diff_id does not match the layer is caught too.
    let good = tar_layer(&[File("g", b"g")]);
    let lying = tar_layer(&[File("g", b"h")]);
    let target = put_image(&store, &[(lying, gzip(&good))], "lying:1");
    let err = snapshotter
        .unpack(&store.image(&target).unwrap())
        .unwrap_err();
    assert!(matches!(err, SnapshotError::DiffIdMismatch { .. }), "{err}");
    assert_eq!(
        fs::read_dir(dir.path().join("image/snapshots/layers"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn concurrent_unpacks_of_the_same_image_share_one_copy_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("image")).unwrap();
    let layers: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
        .map(|i| {
            let name = format!("f{i}");
            let content = vec![b'a' + i as u8; 200_000];
            let tar = tar_layer(&[File(&name, &content)]);
            (tar.clone(), gzip(&tar))
        })
        .collect();
    let target = put_image(&store, &layers, "race:1");
    let image = store.image(&target).unwrap();
    let results: Vec<Vec<std::path::PathBuf>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                let image = image.clone();
                s.spawn(move || Snapshotter::new(&store).unwrap().unpack(&image).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        fs::read_dir(dir.path().join("image/snapshots/layers"))
            .unwrap()
            .count(),
        4
    );
    assert_eq!(
        fs::read_dir(dir.path().join("image/snapshots/tmp"))
            .unwrap()
            .count(),
        0,
        "losers cleaned up"
    );
    for (i, layer_dir) in results[0].iter().enumerate() {
        assert_eq!(
            fs::read(layer_dir.join(format!("f{i}"))).unwrap().len(),
            200_000
        );
    }
}

#[test]
fn deep_images_mount_beyond_one_page_of_overlay_options() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("image")).unwrap();
    let mut layers = Vec::new();
    for i in 0..60 {
        let name = format!("l{i}");
        let tar = if i == 30 {
            tar_layer(&[File(&name, b"x"), File(".wh.l0", b"")])
        } else {
            tar_layer(&[File(&name, b"x")])
        };
        layers.push((tar.clone(), tar));
    }
    let target = put_image(&store, &layers, "deep:1");
    let image = store.image(&target).unwrap();
    let snapshotter = Snapshotter::new(&store).unwrap();
    let guard = ContainerGuard {
        snapshotter: &snapshotter,
        id: "deep-1".into(),
    };
    let lowers_len: usize = snapshotter
        .unpack(&image)
        .unwrap()
        .iter()
        .map(|p| p.as_os_str().len() + 1)
        .sum();
    assert!(
        lowers_len > 4096,
        "the test must exceed one page of options ({lowers_len})"
    );
    match snapshotter.prepare(&guard.id, &image) {
        Ok(rootfs) => {
            let mut names: Vec<String> = fs::read_dir(&rootfs.path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let mut expected: Vec<String> = (1..60).map(|i| format!("l{i}")).collect();
            expected.sort();
            assert_eq!(
                names, expected,
                "every layer visible, l0 whited out by layer 30"
            );
        }
        // Kernels before 6.8 have no `lowerdir+`: the error must say so, nothing mounted.
        Err(SnapshotError::TooManyLayers { layers }) if !kernel_at_least(6, 8) => {
            assert_eq!(layers, 60);
            assert!(!is_mounted(
                &dir.path().join("image/snapshots/containers/deep-1/rootfs")
            ));
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}
