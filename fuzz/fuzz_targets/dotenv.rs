//! Fuzz target: `.env` / `env_file` text (quotes, escapes, `export`, comments,
//! interpolation of earlier keys and of an outer environment), dotenv and raw formats.
//! Must never panic or hang; a located error must be on a line of the input.
#![no_main]

use std::path::Path;

use berth_spec::env::{parse_dotenv, parse_raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let outer = |name: &str| (name.len() % 3 != 0).then(|| format!("${{{name}}}"));
    if let Err(err) = parse_dotenv(&text, Path::new("/fuzz/.env"), &outer)
        && let Some(location) = err.location()
    {
        let lines = text.split(['\n', '\r']).count();
        assert!(
            location.line <= lines,
            "{location} in a text of {lines} lines"
        );
    }
    let _ = parse_raw(&text);
});
