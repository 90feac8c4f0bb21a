//! berth-shim: the per-container supervisor. See `berth_shim::supervisor` and docs/shim.md.

use berth_shim::options::{ShimArgs, USAGE};

fn main() {
    let args = match ShimArgs::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    std::process::exit(berth_shim::supervisor::main(args));
}
