//! Unpack throughput: generates a multi-layer image (≥ 50 MB uncompressed, gzip layers, big
//! and small files), then times berth's parallel unpack of all layers into fresh snapshots.
//! Writes the image as an OCI layout too, so `bench/unpack.sh` can time other tools on the
//! very same bytes.
//!
//!   cargo run --release -p berth-image --example unpack_bench -- WORKDIR [RUNS]

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use berth_image::archive::{SaveFormat, save};
use berth_image::{Reference, Snapshotter, Store};
use serde_json::json;

const LAYERS: usize = 4;
const BIG_FILES_PER_LAYER: usize = 12;
const BIG_FILE: usize = 1 << 20;
const SMALL_FILES_PER_LAYER: usize = 1000;
const SMALL_FILE: usize = 4096;

/// Text-like bytes (compresses about 3:1 with gzip, like typical layers).
fn filler(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&[u8]; 16] = [
        b"container ",
        b"layer ",
        b"overlay ",
        b"berth ",
        b"image ",
        b"digest ",
        b"sha256 ",
        b"manifest ",
        b"\n",
        b"0x7f3a ",
        b"lib/x86_64 ",
        b"usr/share ",
        b"config ",
        b"{\"a\":1} ",
        b"ELF ",
        b"\t",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state & 15) as usize]);
        if state & 0x300 == 0 {
            out.extend_from_slice(&state.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn layer_tar(index: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8], kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, path, data).unwrap();
    };
    add(format!("layer{index}/"), b"", tar::EntryType::Directory);
    add(format!("layer{index}/big/"), b"", tar::EntryType::Directory);
    for i in 0..BIG_FILES_PER_LAYER {
        add(
            format!("layer{index}/big/blob{i}.bin"),
            &filler((index * 1000 + i) as u64, BIG_FILE),
            tar::EntryType::Regular,
        );
    }
    for d in 0..10 {
        add(
            format!("layer{index}/small/d{d}/"),
            b"",
            tar::EntryType::Directory,
        );
        for i in 0..SMALL_FILES_PER_LAYER / 10 {
            let data = filler((index * 100_000 + d * 1000 + i) as u64, SMALL_FILE);
            add(
                format!("layer{index}/small/d{d}/f{i}.txt"),
                &data,
                tar::EntryType::Regular,
            );
        }
    }
    b.into_inner().unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let work = PathBuf::from(args.next().expect("usage: unpack_bench WORKDIR [RUNS]"));
    let runs: usize = args
        .next()
        .map_or(3, |r| r.parse().expect("RUNS must be a number"));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let store = Store::open(work.join("store")).unwrap();

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut uncompressed = 0u64;
    let mut compressed = 0u64;
    for i in 0..LAYERS {
        let tar = layer_tar(i);
        uncompressed += tar.len() as u64;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        compressed += gz.len() as u64;
        let digest = store.write_blob_bytes(&gz).unwrap();
        diff_ids.push(berth_image::Digest::of(&tar).to_string());
        layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest.to_string(), "size": gz.len()}));
    }
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
    let config_digest = store.write_blob_bytes(&config).unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
        "layers": layers,
    });
    let target = store
        .write_blob_bytes(&serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    let reference = Reference::parse("bench/unpack:latest").unwrap();
    store.put_image(&reference, &target).unwrap();
    let mut layout = Vec::new();
    save(
        &store,
        &[(target.clone(), vec![reference])],
        SaveFormat::Oci,
        &mut layout,
    )
    .unwrap();
    fs::write(work.join("image-oci.tar"), &layout).unwrap();

    let image = store.image(&target).unwrap();
    let snapshotter = Snapshotter::new(&store).unwrap();
    let mut times = Vec::new();
    for _ in 0..runs {
        let layers_dir = work.join("store/snapshots/layers");
        fs::remove_dir_all(&layers_dir).unwrap();
        fs::create_dir(&layers_dir).unwrap();
        let start = Instant::now();
        snapshotter.unpack(&image).unwrap();
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mb = uncompressed as f64 / 1e6;
    println!(
        "layers={LAYERS} uncompressed_mb={mb:.1} compressed_mb={:.1} files={}",
        compressed as f64 / 1e6,
        LAYERS * (BIG_FILES_PER_LAYER + SMALL_FILES_PER_LAYER)
    );
    println!(
        "berth_unpack_median_s={median:.3} berth_unpack_mb_per_s={:.1} runs={runs}",
        mb / median
    );
    let blobs: Vec<String> = image
        .layers()
        .iter()
        .map(|l| l.digest().digest().to_owned())
        .collect();
    println!("layer_blobs={}", blobs.join(","));
}
