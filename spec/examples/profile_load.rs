//! Loads the benchmark's generated 200-service project N times (default 20), for
//! instruction-level profiling where wall time is too noisy:
//! `valgrind --tool=callgrind target/release/examples/profile_load 20`.
//! `profile_load document N` stops at `load_document`.

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let document_only = args.first().is_some_and(|a| a == "document");
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = common::project(dir.path(), 200);
    for _ in 0..runs {
        if document_only {
            berth_spec::load_document(&options).expect("the generated project loads");
        } else {
            let loaded = berth_spec::load(&options).expect("the generated project loads");
            assert_eq!(loaded.app.services.len(), 200);
        }
    }
}
