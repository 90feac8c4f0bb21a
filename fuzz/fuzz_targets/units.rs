//! Fuzz target: the duration (`1m30s`, Go syntax) and byte-size (`512m`, `1GiB`) parsers
//! on arbitrary text. Must never panic (no overflow) and a parsed duration must print
//! back into a string that parses to the same value.
#![no_main]

use berth_spec::model::units::{format_duration, parse_bytes, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(d) = parse_duration(&text) {
        let printed = format_duration(d);
        assert_eq!(
            parse_duration(&printed),
            Ok(d),
            "{text:?} printed as {printed:?}"
        );
    }
    let _ = parse_bytes(&text);
});
