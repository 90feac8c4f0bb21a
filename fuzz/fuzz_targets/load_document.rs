//! Fuzz target: any bytes as a Compose file, through parsing, interpolation, `extends`,
//! merging, profiles and the typed model. Must never panic, overflow the stack or hang.
#![no_main]

use std::path::Path;

use berth_spec::interpolate::interpolate_value;
use berth_spec::merge::merge_documents;
use berth_spec::yaml::{Parsed, parse};
use berth_spec::{Error, extends, profiles};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("/fuzz/compose.yaml");
    let Ok(mut parsed) = parse(&text, file) else {
        return;
    };
    let lookup = |name: &str| name.len().is_multiple_of(2).then(|| format!("v{name}"));
    let _ = interpolate_value(&mut parsed.value, &lookup, &mut |_, _| {});
    let mut load =
        |_: &Path| -> Result<Parsed, Error> { Err(Error::Project("no other files".into())) };
    let _ = extends::apply_extends(&mut parsed, file, &mut load);
    let mut doc = merge_documents(parsed.value.clone(), parsed.value.clone()).value;
    let _ = profiles::apply_profiles(&mut doc, &["p".to_string()], &[]);
    let locate = |p: &[berth_spec::PathSeg]| parsed.source_map.locate(p);
    let _ = berth_spec::App::from_document(
        "fuzz",
        Path::new("/fuzz"),
        &Default::default(),
        doc,
        &locate,
    );
});
