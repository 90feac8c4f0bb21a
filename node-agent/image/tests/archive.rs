//! Import, save and load on real stores: round trips keep every digest in both formats,
//! OCI layout directories and legacy `docker save` archives load, and an imported busybox
//! root filesystem actually runs from its overlay mount.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use berth_image::archive::{self, ImportOptions, SaveFormat, load_dir, load_tar, save};
use berth_image::testing::import_busybox;
use berth_image::{Digest, Reference, Snapshotter, Store};
use common::{ContainerGuard, Member::*, gzip, tar_layer};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("image")).unwrap();
    (dir, store)
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

#[test]
fn import_save_load_round_trip_keeps_digests_in_both_formats() {
    let (_a_dir, a) = store();
    let imported = import_busybox(&a, &reference("busybox:latest")).unwrap();
    let image = a.image(&imported.target).unwrap();
    assert_eq!(image.id(), &imported.id);
    let names = vec![
        reference("busybox:latest"),
        reference("localhost:5000/tools/busybox:1"),
    ];
    a.put_image(&names[1], &imported.target).unwrap();

    for format in [SaveFormat::Oci, SaveFormat::Docker] {
        let mut tarball = Vec::new();
        save(
            &a,
            &[(imported.target.clone(), names.clone())],
            format,
            &mut tarball,
        )
        .unwrap();
        let (_b_dir, b) = store();
        let loaded = load_tar(&b, &tarball[..]).unwrap();
        let loaded_names: BTreeSet<String> = loaded
            .iter()
            .map(|l| l.reference.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(
            loaded_names,
            names.iter().map(|n| n.to_string()).collect(),
            "{format:?}"
        );
        assert!(
            loaded.iter().all(|l| l.target == imported.target),
            "{format:?}: manifest digest kept"
        );
        let again = b.image(&imported.target).unwrap();
        assert_eq!(again.id(), image.id(), "{format:?}: image id kept");
        assert_eq!(again.diff_ids().unwrap(), image.diff_ids().unwrap());
        assert_eq!(
            b.reachable_blobs(&imported.target).unwrap(),
            a.reachable_blobs(&imported.target).unwrap()
        );
        for blob in b.list_blobs().unwrap() {
            b.verify_blob(&blob).unwrap();
        }
        // Saving from the second store gives byte-identical output: saves are deterministic.
        let mut second = Vec::new();
        save(
            &b,
            &[(imported.target.clone(), names.clone())],
            format,
            &mut second,
        )
        .unwrap();
        assert_eq!(Digest::of(&second), Digest::of(&tarball), "{format:?}");
        if format == SaveFormat::Docker {
            let entries = tar_paths(&tarball);
            assert!(entries.contains("manifest.json") && entries.contains("repositories"));
        }
    }
}

fn tar_paths(tarball: &[u8]) -> BTreeSet<String> {
    let mut archive = tar::Archive::new(tarball);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn oci_layout_directory_loads() {
    let (_a_dir, a) = store();
    let layer = tar_layer(&[Dir("etc", 0o755), File("etc/hostname", b"berth\n")]);
    let imported = archive::import_tar(
        &a,
        &gzip(&layer)[..],
        &ImportOptions {
            reference: Some(reference("ghcr.io/org/tiny:v1")),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        imported.diff_id,
        Digest::of(&layer),
        "diff_id is the uncompressed input tar"
    );
    let mut tarball = Vec::new();
    save(
        &a,
        &[(
            imported.target.clone(),
            vec![reference("ghcr.io/org/tiny:v1")],
        )],
        SaveFormat::Oci,
        &mut tarball,
    )
    .unwrap();
    let layout = tempfile::tempdir().unwrap();
    tar::Archive::new(&tarball[..])
        .unpack(layout.path())
        .unwrap();
    assert!(layout.path().join("oci-layout").is_file());
    let (_b_dir, b) = store();
    let loaded = load_dir(&b, layout.path()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].target, imported.target);
    assert_eq!(
        b.resolve(&reference("ghcr.io/org/tiny:v1")).unwrap(),
        imported.target
    );
}

#[test]
fn legacy_docker_archive_loads_and_round_trips() {
    let layer1 = tar_layer(&[Dir("bin", 0o755), File("bin/tool", b"tool")]);
    let layer2 = tar_layer(&[File("bin/.wh.tool", b""), File("hello", b"hi")]);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello"], "Env": ["A=1"]},
        "container_config": {"Hostname": "docker-only field"},
        "docker_version": "20.10.24",
        "rootfs": {"type": "layers", "diff_ids": [
            Digest::of(&layer1).to_string(), Digest::of(&layer2).to_string(), Digest::of(&layer1).to_string()
        ]},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", Digest::of(&config_bytes).hex());
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["legacy:1", "registry.local:5000/legacy:stable"],
        // The third layer repeats the first through a symlink, as docker save writes it.
        "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
    }]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("aaa/layer.tar", &layer1);
    add("aaa/VERSION", b"1.0");
    add("bbb/layer.tar", &layer2);
    add(&config_name, &config_bytes);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("repositories", b"{}");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "ccc/layer.tar", "../aaa/layer.tar")
        .unwrap();
    let tarball = b.into_inner().unwrap();

    let (_dir, s) = store();
    let loaded = load_tar(&s, &tarball[..]).unwrap();
    assert_eq!(loaded.len(), 2);
    let target = loaded[0].target.clone();
    let image = s.image(&target).unwrap();
    assert_eq!(
        image.id(),
        &Digest::of(&config_bytes),
        "config kept byte for byte"
    );
    assert_eq!(image.layers().len(), 3);
    assert_eq!(
        image
            .config
            .config()
            .as_ref()
            .unwrap()
            .cmd()
            .as_ref()
            .unwrap(),
        &vec!["/hello".to_string()]
    );
    assert_eq!(
        s.resolve(&reference("registry.local:5000/legacy:stable"))
            .unwrap(),
        target
    );

    // It unpacks: the whiteout in layer 2 hides bin/tool, layer 3 brings it back.
    let snapshotter = Snapshotter::new(&s).unwrap();
    assert_eq!(snapshotter.unpack(&image).unwrap().len(), 3);
    assert_eq!(
        fs::read_dir(s.root().join("snapshots/layers"))
            .unwrap()
            .count(),
        2,
        "identical layers unpacked once"
    );

    // A repeated layer mounts once (overlayfs refuses duplicate lowerdirs), topmost copy.
    let guard = ContainerGuard {
        snapshotter: &snapshotter,
        id: "legacy-dup".into(),
    };
    let rootfs = snapshotter.prepare(&guard.id, &image).unwrap();
    assert_eq!(fs::read(rootfs.path.join("bin/tool")).unwrap(), b"tool");
    assert_eq!(fs::read(rootfs.path.join("hello")).unwrap(), b"hi");
    drop(guard);

    // Round trip through berth's docker format keeps the manifest digest.
    let mut saved = Vec::new();
    save(
        &s,
        &[(target.clone(), vec![reference("legacy:1")])],
        SaveFormat::Docker,
        &mut saved,
    )
    .unwrap();
    let (_dir2, s2) = store();
    assert_eq!(load_tar(&s2, &saved[..]).unwrap()[0].target, target);
}

#[test]
fn import_applies_changes_and_unnamed_loads_are_dangling() {
    let (_dir, s) = store();
    let layer = tar_layer(&[File("app", b"#!/bin/sh\n")]);
    let options = ImportOptions {
        reference: None,
        changes: vec![
            r#"ENTRYPOINT ["/app"]"#.into(),
            "CMD --serve".into(),
            "ENV MODE=prod".into(),
            "WORKDIR /srv".into(),
        ],
        message: None,
    };
    let imported = archive::import_tar(&s, &layer[..], &options).unwrap();
    let image = s.image(&imported.target).unwrap();
    let config = image.config.config().clone().unwrap();
    assert_eq!(
        config.entrypoint().clone().unwrap(),
        vec!["/app".to_string()]
    );
    assert_eq!(
        config.cmd().clone().unwrap(),
        vec!["/bin/sh".to_string(), "-c".into(), "--serve".into()]
    );
    assert_eq!(config.env().clone().unwrap(), vec!["MODE=prod".to_string()]);
    assert_eq!(config.working_dir().clone().unwrap(), "/srv");
    let records = s.list_images().unwrap();
    assert_eq!(records.len(), 1);
    assert!(
        records[0].reference.is_none(),
        "an import without a name is dangling"
    );

    let bad = ImportOptions {
        changes: vec!["RUN rm -rf /".into()],
        ..Default::default()
    };
    let err = archive::import_tar(&s, &layer[..], &bad).unwrap_err();
    assert!(err.to_string().contains("RUN rm -rf /"), "{err}");
    assert!(load_tar(&s, &b"not a tar at all, definitely not"[..]).is_err());
}

#[test]
fn imported_busybox_runs_from_its_overlay_rootfs() {
    if berth_image::testing::busybox_path().is_none() {
        panic!("busybox-static is required: apt-get install busybox-static");
    }
    let (_dir, s) = store();
    let imported = import_busybox(&s, &reference("busybox:latest")).unwrap();
    let image = s.image(&imported.target).unwrap();
    let snapshotter = Snapshotter::new(&s).unwrap();
    let guard = ContainerGuard {
        snapshotter: &snapshotter,
        id: "busybox-run".into(),
    };
    let rootfs = snapshotter.prepare(&guard.id, &image).unwrap();
    let out = Command::new("chroot")
        .arg(&rootfs.path)
        .args([
            "/bin/sh",
            "-c",
            "echo hello > /tmp/x && cat /tmp/x && ls /bin | grep -c .",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("hello"));
    let applets: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(applets > 100, "busybox applet symlinks present: {applets}");
    // The write went to the container's upper dir.
    assert!(
        s.root()
            .join("snapshots/containers/busybox-run/upper/tmp/x")
            .is_file()
    );
}

/// An index over two platforms, both present or only the host's.
fn put_index(s: &Store, with_other_platform: bool) -> (Digest, Digest) {
    let host = berth_image::Platform::host();
    let layer = tar_layer(&[File("host", b"1")]);
    let host_manifest = common::put_image(s, &[(layer.clone(), layer)], "tmp-host:1");
    let other_layer = tar_layer(&[File("other", b"2")]);
    let other_manifest = common::put_image(s, &[(other_layer.clone(), other_layer)], "tmp-other:1");
    s.untag(&reference("tmp-host:1")).unwrap();
    s.untag(&reference("tmp-other:1")).unwrap();
    let size = |d: &Digest| s.blob_size(d).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other_manifest.to_string(), "size": size(&other_manifest),
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": host_manifest.to_string(), "size": size(&host_manifest),
             "platform": {"os": host.os, "architecture": host.architecture}},
        ],
    });
    let index_digest = s
        .write_blob_bytes(&serde_json::to_vec(&index).unwrap())
        .unwrap();
    if !with_other_platform {
        // As after a pull: only this platform's manifest was fetched.
        for blob in s.reachable_blobs(&other_manifest).unwrap() {
            std::fs::remove_file(s.blob_path(&blob)).unwrap();
        }
    }
    s.put_image(&reference("multi:1"), &index_digest).unwrap();
    (index_digest, host_manifest)
}

#[test]
fn indexes_resolve_to_the_host_platform_and_save_whole_or_in_part() {
    for complete in [true, false] {
        let (_dir, s) = store();
        let (index, host_manifest) = put_index(&s, complete);
        let image = s.image(&index).unwrap();
        assert_eq!(image.manifest_digest, host_manifest, "host platform chosen");
        // gc keeps the index and whatever children are present.
        s.gc(&Default::default()).unwrap();
        assert!(s.has_blob(&index) && s.has_blob(&host_manifest));
        assert_eq!(s.list_blobs().unwrap().len(), if complete { 7 } else { 4 });

        let mut oci = Vec::new();
        save(
            &s,
            &[(index.clone(), vec![reference("multi:1")])],
            SaveFormat::Oci,
            &mut oci,
        )
        .unwrap();
        let (_dir2, s2) = store();
        let loaded = load_tar(&s2, &oci[..]).unwrap();
        let expected = if complete { &index } else { &host_manifest };
        assert_eq!(&loaded[0].target, expected, "complete={complete}");

        let mut docker = Vec::new();
        save(
            &s,
            &[(index.clone(), vec![reference("multi:1")])],
            SaveFormat::Docker,
            &mut docker,
        )
        .unwrap();
        let (_dir3, s3) = store();
        assert_eq!(
            load_tar(&s3, &docker[..]).unwrap()[0].target,
            host_manifest,
            "docker format: platform manifest"
        );
    }
}

#[test]
fn import_accepts_zstd_and_plain_tar_alike() {
    let (_dir, s) = store();
    let layer = tar_layer(&[Dir("d", 0o755), File("d/f", b"zstd please")]);
    let plain = archive::import_tar(&s, &layer[..], &ImportOptions::default()).unwrap();
    let zstd =
        archive::import_tar(&s, &common::zstd(&layer)[..], &ImportOptions::default()).unwrap();
    assert_eq!(plain.diff_id, Digest::of(&layer));
    assert_eq!(zstd.diff_id, plain.diff_id);
}

#[test]
fn import_of_a_directory_keeps_links_modes_owners_and_xattrs() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    // chown clears setuid, so the mode goes second.
    std::os::unix::fs::chown(root.join("usr/bin/tool"), Some(123), Some(456)).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-again")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("usr/bin/alias")).unwrap();
    rustix::fs::setxattr(
        root.join("usr/bin/tool"),
        "user.origin",
        b"berth",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();

    let (_dir, s) = store();
    let options = ImportOptions {
        reference: Some(reference("dir:1")),
        ..Default::default()
    };
    let first = archive::import_dir(&s, root, &options).unwrap();
    let second = archive::import_dir(&s, root, &options).unwrap();
    assert_eq!(
        first.diff_id, second.diff_id,
        "directory archives are deterministic"
    );

    let image = s.image(&second.target).unwrap();
    let layer = &Snapshotter::new(&s).unwrap().unpack(&image).unwrap()[0];
    let tool = fs::metadata(layer.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!((tool.uid(), tool.gid()), (123, 456));
    assert_eq!(
        tool.ino(),
        fs::metadata(layer.join("usr/bin/tool-again"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        fs::read_link(layer.join("usr/bin/alias")).unwrap(),
        std::path::Path::new("tool")
    );
    let mut buf = [0u8; 16];
    let n = rustix::fs::getxattr(layer.join("usr/bin/tool"), "user.origin", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"berth");
}
