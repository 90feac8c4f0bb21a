//! Fuzz target: any bytes as the only Compose file (`-f -`), through the whole public
//! loader — parse, interpolate, include, extends, merge, profiles, typed model,
//! normalization, validation — then the dependency graph and a position lookup, as
//! `berth config` does. Must never panic, overflow the stack, hang or exhaust memory.
#![no_main]

use std::path::PathBuf;

use berth_spec::{LoadOptions, load_document};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let options = LoadOptions {
        files: vec![PathBuf::from("-")],
        project_name: Some("fuzz".into()),
        // a directory that does not exist: no `.env`, `include` or `extends: file:` is read
        working_dir: PathBuf::from("/nonexistent/berth-fuzz"),
        environment: [("SET", "value"), ("EMPTY", ""), ("PORT", "8080")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        resolve_env_files: false,
        stdin: Some(text),
        ..Default::default()
    };
    let Ok(raw) = load_document(&options) else { return };
    let locate = |p: &[berth_spec::PathSeg]| raw.source_map.locate(p);
    let Ok((app, _)) = berth_spec::App::from_document(
        &raw.name,
        &raw.project_dir,
        &raw.environment,
        raw.document.clone(),
        &locate,
    ) else {
        return;
    };
    if let Ok(graph) = app.graph() {
        let _ = graph.start_waves();
    }
});
