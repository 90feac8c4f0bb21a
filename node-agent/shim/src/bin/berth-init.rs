//! berth-init: PID 1 for containers with `init: true`. See `berth_shim::init`.

fn main() {
    let code = berth_shim::init::run(std::env::args_os().skip(1).collect());
    std::process::exit(code);
}
