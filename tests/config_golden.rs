//! Golden tests of `berth config`: each fixture project under `spec/tests/fixtures/` is
//! loaded by the real binary (YAML and JSON), and the output, with the fixture's own
//! directory replaced by `$FIXTURE`, must equal the `expected.yaml` / `expected.json` /
//! `expected.stderr` files next to it. An optional `args` file holds global flags.
//! Regenerate with `BERTH_BLESS=1 cargo test --test config_golden` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn run(dir: &Path, extra: &[&str]) -> (String, String, bool) {
    let mut args: Vec<String> = match std::fs::read_to_string(dir.join("args")) {
        Ok(text) => text.split_whitespace().map(str::to_string).collect(),
        Err(_) => Vec::new(),
    };
    args.push("config".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    // A clean environment: only what the fixture's files define.
    // bounded: `timeout` kills a hung berth, so the test fails instead of stalling
    let out = Command::new("timeout")
        .args(["--kill-after=5", "60", env!("CARGO_BIN_EXE_berth")])
        .args(&args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap();
    let fixture = dir.display().to_string();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&fixture, "$FIXTURE");
    (clean(&out.stdout), clean(&out.stderr), out.status.success())
}

fn check(dir: &Path, name: &str, actual: &str, failures: &mut Vec<String>) {
    let path = dir.join(name);
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{}: output differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn config_output_matches_golden_files() {
    let mut failures = Vec::new();
    for dir in fixtures() {
        let (yaml, stderr, ok) = run(&dir, &[]);
        assert!(ok, "{}: berth config failed: {stderr}", dir.display());
        check(&dir, "expected.yaml", &yaml, &mut failures);
        check(&dir, "expected.stderr", &stderr, &mut failures);
        let (json, _, ok) = run(&dir, &["--format", "json"]);
        assert!(ok, "{}: berth config --format json failed", dir.display());
        // What scripts do with it: the JSON parses and names the project.
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(parsed["name"].is_string(), "{json}");
        check(&dir, "expected.json", &json, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
