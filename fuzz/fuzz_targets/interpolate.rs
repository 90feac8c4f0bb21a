//! Fuzz target: interpolation of arbitrary text (`$VAR`, `${VAR:-d}`, `${VAR:?e}`, nesting,
//! `$$`), with some variables set, some empty and some unset. Must never panic or hang.
#![no_main]

use berth_spec::interpolate::interpolate_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lookup = |name: &str| match name.len() % 3 {
        0 => None,
        1 => Some(String::new()),
        _ => Some(format!("${{{name}}}")),
    };
    let _ = interpolate_str(&text, &lookup, &mut |_| {});
});
