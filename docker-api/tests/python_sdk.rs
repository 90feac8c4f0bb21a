//! The Docker SDK for Python (`docker` from PyPI, pinned in `tests/python/requirements.txt`)
//! drives a scripted lifecycle through berth's Docker API: volumes, networks, run detached
//! with labels, env, a volume and a network, logs, exec with separate streams and an exit
//! code, stop, wait, `run(remove=True)`, removal. The script asserts; it prints OK at the end.

mod support;

use std::path::PathBuf;

use support::Server;

/// `BERTH_DOCKER_PYTHON`, else the CI's venv, else `python3`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_DOCKER_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from("/opt/berth-pysdk/bin/python3");
    if venv.is_file() {
        return venv;
    }
    "python3".into()
}

#[test]
fn python_sdk_lifecycle() {
    let s = Server::start();
    let py = python();
    let check = s
        .client(py.to_str().unwrap())
        .args([
            "-c",
            "import docker, sys; sys.exit(0 if int(docker.__version__.split('.')[0]) >= 7 else 1)",
        ])
        .status()
        .expect("python3");
    assert!(
        check.success(),
        "{} lacks the Docker SDK 7.x: pip install -r docker-api/tests/python/requirements.txt (or set BERTH_DOCKER_PYTHON)",
        py.display()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/lifecycle.py");
    let o = s
        .client("timeout")
        .args(["--kill-after=5", "180"])
        .arg(&py)
        // unbuffered, so a run cut short by the timeout still shows how far it got
        .arg("-u")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .trim_end()
                .ends_with("OK"),
        "the SDK script failed: {}{}\nserver log: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        s.log()
    );
    assert!(s.containers().ids().unwrap().is_empty());
}
