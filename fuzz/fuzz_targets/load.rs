//! Fuzz target: any bytes as the only Compose file (`-f -`), through the whole public
//! loader — parse, interpolate, include, extends, merge, profiles, typed model,
//! normalization, validation — then the dependency graph, as `berth config` does; a
//! located error or warning is rendered as an excerpt of the input. Must never panic,
//! overflow the stack, hang or exhaust memory.
#![no_main]

use std::path::PathBuf;

use berth_spec::snippet::excerpt;
use berth_spec::{LoadOptions, Location, load_document};
use libfuzzer_sys::fuzz_target;

/// Renders the excerpt of a place in the input, which must be on one of its lines (libyaml
/// reports an error at the end of a text without a final line break one line past it; the
/// loader moves it back — found by this target).
fn show(location: Option<&Location>, text: &str) {
    if let Some(location) = location {
        let _ = excerpt(location, text, location.column % 2 == 0);
        // libyaml also breaks lines at NEL, LS and PS: at most this many lines
        let lines = text
            .split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
            .count();
        assert!(
            location.line <= lines,
            "{location} in a text of {lines} lines"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let input = text.clone();
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
    let raw = match load_document(&options) {
        Ok(raw) => raw,
        Err(err) => return show(err.location(), &input),
    };
    for warning in &raw.warnings {
        show(warning.located(), &input);
    }
    let locate = |p: &[berth_spec::PathSeg]| raw.source_map.locate(p);
    let app = match berth_spec::App::from_document(
        &raw.name,
        &raw.project_dir,
        &raw.environment,
        raw.document.clone(),
        &locate,
    ) {
        Ok((app, warnings)) => {
            for warning in &warnings {
                show(warning.located(), &input);
            }
            app
        }
        Err(err) => return show(err.location(), &input),
    };
    if let Ok(graph) = app.graph() {
        let _ = graph.start_waves();
    }
});
