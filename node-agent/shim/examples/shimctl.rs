//! A tiny command-line client for one shim's control socket, for debugging and for
//! `bench/shim-memory.sh`: `shimctl STATE_DIR state|start|wait|kill SIGNAL|delete [--force]
//! |shutdown`. The agent uses the library directly.

use std::path::Path;
use std::process::ExitCode;

use berth_shim::ShimHandle;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(op)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: shimctl STATE_DIR state|start|wait|kill SIGNAL|delete [--force]|shutdown"
        );
        return ExitCode::from(2);
    };
    let shim = ShimHandle::connect(Path::new(dir));
    let result = shim.and_then(|s| match op.as_str() {
        "state" => s
            .state()
            .map(|st| println!("{}", serde_json::to_string(&st).unwrap_or_default())),
        "start" => s.start(),
        "wait" => s
            .wait()
            .map(|e| println!("{}", serde_json::to_string(&e).unwrap_or_default())),
        "kill" => s.kill(
            args.get(2).and_then(|v| v.parse().ok()).unwrap_or(15),
            false,
        ),
        "delete" => s.delete(args.get(2).is_some_and(|f| f == "--force")),
        "shutdown" => s.shutdown(),
        other => {
            eprintln!("shimctl: unknown operation {other}");
            std::process::exit(2);
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shimctl: {e}");
            ExitCode::FAILURE
        }
    }
}
