//! The generated 200-service project shared by the `load` bench and the `profile_load`
//! example (which runs it under callgrind).

use std::fmt::Write;
use std::path::Path;

use berth_spec::LoadOptions;

/// Writes `compose.yaml` (with `services` services) and `compose.override.yaml` into
/// `dir` and returns the options that load them.
pub fn project(dir: &Path, services: usize) -> LoadOptions {
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
