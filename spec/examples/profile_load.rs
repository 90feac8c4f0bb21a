//! Loads the benchmark's generated 200-service project N times (default 20) and prints the
//! wall and CPU time per load. CPU time (from `/proc/self/stat`) is far less disturbed than
//! wall time by other processes on a shared machine; for exact, repeatable figures count
//! instructions instead:
//! `valgrind --tool=callgrind target/release/examples/profile_load 11` minus a run of 1.
//! `profile_load document N` stops at `load_document`.

use std::time::Instant;

#[path = "../benches/common/mod.rs"]
mod common;

/// User + system CPU time of this process so far, in seconds (100 ticks per second, the
/// kernel's fixed USER_HZ).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let document_only = args.first().is_some_and(|a| a == "document");
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = common::project(dir.path(), 200);
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..runs {
        if document_only {
            berth_spec::load_document(&options).expect("the generated project loads");
        } else {
            let loaded = berth_spec::load(&options).expect("the generated project loads");
            assert_eq!(loaded.app.services.len(), 200);
        }
    }
    let per = |total: f64| total * 1000.0 / runs.max(1) as f64;
    eprintln!(
        "{} × {runs}: {:.2} ms wall, {:.2} ms CPU per load",
        if document_only {
            "load_document"
        } else {
            "load"
        },
        per(wall.elapsed().as_secs_f64()),
        per(cpu_seconds() - cpu)
    );
}
