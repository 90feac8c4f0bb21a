//! Loading a generated 200-service project: parse + source map + interpolation + merge of
//! an override file (`load_document`), and the same followed by typing, normalization and
//! validation (`load`). Run: `cargo bench -p berth-spec --bench load`.

use std::fmt::Write;
use std::path::Path;

use berth_spec::{LoadOptions, load, load_document};
use criterion::{Criterion, criterion_group, criterion_main};

fn project(dir: &Path, services: usize) -> LoadOptions {
    let mut base = String::from(
        "name: bench\nx-common: &common\n  restart: unless-stopped\n  logging:\n    driver: json-file\n    options: {max-size: 10m}\nservices:\n",
    );
    let mut over = String::from("services:\n");
    for i in 0..services {
        let dep = if i > 0 {
            format!("    depends_on: [svc{}]\n", i - 1)
        } else {
            String::new()
        };
        write!(
            base,
            "  svc{i}:\n    <<: *common\n    image: \"registry.local/app{i}:${{TAG:-1.0}}\"\n    command: [\"serve\", \"--port\", \"{port}\"]\n    environment:\n      - MODE=${{MODE:-prod}}\n      - INDEX={i}\n    ports:\n      - \"{port}:{port}\"\n    volumes:\n      - data{i}:/data\n      - ./conf/{i}:/etc/app:ro\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 10s\n{dep}",
            port = 10000 + i
        )
        .unwrap();
        write!(
            over,
            "  svc{i}:\n    environment:\n      EXTRA: \"{i}\"\n    labels: [\"tier=t{}\"]\n",
            i % 3
        )
        .unwrap();
    }
    base.push_str("volumes:\n");
    for i in 0..services {
        writeln!(base, "  data{i}: {{}}").unwrap();
    }
    std::fs::write(dir.join("compose.yaml"), base).unwrap();
    std::fs::write(dir.join("compose.override.yaml"), over).unwrap();
    LoadOptions {
        working_dir: dir.to_path_buf(),
        ..Default::default()
    }
}

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
    c.bench_function("source map index of the 200-service file", |b| {
        b.iter(|| berth_spec::source_map::index(&text, &file).unwrap())
    });
    c.bench_function(
        "parse (index + serde_yaml + merge keys) of the 200-service file",
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
