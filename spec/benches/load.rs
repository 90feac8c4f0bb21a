//! Loading a generated 200-service project: parse + source map + interpolation + merge of
//! an override file (`load_document`), and the same followed by typing, normalization and
//! validation (`load`). Run: `cargo bench -p berth-spec --bench load`. For instruction
//! counts, steadier than time on a shared machine, see `examples/profile_load.rs`.

mod common;

use berth_spec::{load, load_document};
use common::project;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let options = project(dir.path(), 200);
    // Fail loudly rather than time an error path.
    let loaded = load(&options).expect("the generated project loads");
    assert_eq!(loaded.app.services.len(), 200);
    // The minimum over many runs: on a busy machine it is the figure least disturbed by
    // other processes (criterion's mean follows below).
    let min_of = |label: &str, f: &dyn Fn()| {
        let mut best = std::time::Duration::MAX;
        for _ in 0..60 {
            let start = std::time::Instant::now();
            f();
            best = best.min(start.elapsed());
        }
        eprintln!("min of 60: {label}: {:.2} ms", best.as_secs_f64() * 1000.0);
    };
    min_of("load_document", &|| {
        load_document(&options).unwrap();
    });
    min_of("load", &|| {
        load(&options).unwrap();
    });
    let text = std::fs::read_to_string(dir.path().join("compose.yaml")).unwrap();
    let file = dir.path().join("compose.yaml");
    // Paid only when an error or warning asks for a position (the map is lazy).
    c.bench_function("source map index of the 200-service file", |b| {
        b.iter(|| berth_spec::source_map::index(&text, &file).unwrap())
    });
    c.bench_function(
        "parse (serde_yaml with bounds + merge keys) of the 200-service file",
        |b| b.iter(|| berth_spec::yaml::parse(&text, &file).unwrap()),
    );
    c.bench_function("load_document 200 services + override", |b| {
        b.iter(|| load_document(&options).unwrap())
    });
    c.bench_function("load (document + App) 200 services + override", |b| {
        b.iter(|| load(&options).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
