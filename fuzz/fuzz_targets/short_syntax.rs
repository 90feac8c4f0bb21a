//! Fuzz target: the port (`[ip:][host[-range]:]container[-range][/proto]`) and volume
//! (`src:dst[:opts]`) short-syntax parsers on arbitrary text. Must never panic or hang,
//! and a port range must not expand into an unbounded number of entries.
#![no_main]

use berth_spec::model::mount::parse_volume;
use berth_spec::model::port::parse_port;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(ports) = parse_port(&text) {
        assert!(ports.len() <= 65536, "{} ports from {text:?}", ports.len());
    }
    let _ = parse_volume(&text);
});
