//! `berth config` as a user runs it: the real binary on projects in temporary directories.
//! Checks the facets (`--services`, `--volumes`, `--profiles`, `--images`, `--hash`,
//! `--environment`), `-q`, `-o`, `--no-interpolate`, warnings on stderr and one-line errors.

use std::path::Path;
use std::process::{Command, Output};

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn berth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROFILES")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const APP: &str = "name: demo\nservices:\n  web:\n    image: nginx:${TAG:-1}\n  api:\n    build: ./api\n    profiles: [backend]\n  tools:\n    image: busybox\n    profiles: [tools]\n    depends_on: [web]\nvolumes:\n  data: {}\n  cache: {}\n";

#[test]
fn facets() {
    let dir = project(&[("compose.yaml", APP)]);
    let o = berth(dir.path(), &["config", "--services"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "web\n");
    let o = berth(
        dir.path(),
        &["--profile", "backend", "config", "--services"],
    );
    assert_eq!(stdout(&o), "api\nweb\n");
    // Naming a service enables its profile and selects what it depends on.
    let o = berth(dir.path(), &["config", "--services", "tools"]);
    assert_eq!(stdout(&o), "tools\nweb\n");
    let o = berth(dir.path(), &["config", "--volumes"]);
    assert_eq!(stdout(&o), "cache\ndata\n");
    let o = berth(dir.path(), &["config", "--profiles"]);
    assert_eq!(stdout(&o), "backend\ntools\n");
    let o = berth(dir.path(), &["--profile", "*", "config", "--images"]);
    assert_eq!(stdout(&o), "demo-api\nbusybox\nnginx:1\n");
    let o = berth(dir.path(), &["--profile", "*", "config", "--hash", "*"]);
    let hashes = stdout(&o);
    let lines: Vec<&str> = hashes.lines().collect();
    assert_eq!(lines.len(), 3, "{hashes}");
    assert!(
        lines[2].starts_with("web ") && lines[2].len() == "web ".len() + 64,
        "{hashes}"
    );
    // The hash follows the configuration.
    let o2 = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["config", "--hash", "web"])
        .current_dir(dir.path())
        .env("TAG", "2")
        .output()
        .unwrap();
    assert_ne!(stdout(&o2).trim(), lines[2]);
}

#[test]
fn environment_quiet_output_and_no_interpolate() {
    let dir = project(&[("compose.yaml", APP), (".env", "TAG=7\nZZ_BERTH_TEST=1\n")]);
    let o = berth(dir.path(), &["config", "--environment"]);
    assert!(stdout(&o).lines().any(|l| l == "TAG=7"), "{}", stdout(&o));
    let o = berth(dir.path(), &["config", "-q"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    let out = dir.path().join("out.yaml");
    let o = berth(dir.path(), &["config", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&out).unwrap().contains("nginx:7"));
    let o = berth(
        dir.path(),
        &["config", "--no-interpolate", "--format", "json"],
    );
    assert!(stdout(&o).contains("nginx:${TAG:-1}"), "{}", stdout(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(json["name"], "demo");
}

#[test]
fn warnings_do_not_fail_and_errors_are_one_line() {
    let dir = project(&[(
        "compose.yaml",
        "version: '3'\nservices:\n  web:\n    image: $UNSET_BERTH_VAR\n",
    )]);
    let o = berth(dir.path(), &["config", "-q"]);
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("warning: ") && err.contains("`version` is obsolete"),
        "{err}"
    );
    assert!(
        err.contains("\"UNSET_BERTH_VAR\" variable is not set"),
        "{err}"
    );

    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: ${IMG:?image required}\n",
    )]);
    let o = berth(dir.path(), &["config"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("compose.yaml:3:5: required variable IMG is missing a value: image required"),
        "{err}"
    );

    let dir = project(&[("compose.yaml", "services:\n  web: [\n")]);
    let o = berth(dir.path(), &["config"]);
    assert!(!o.status.success());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("compose.yaml:"), "{}", stderr(&o));

    let o = berth(dir.path(), &["-f", "missing.yaml", "config"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.yaml"), "{}", stderr(&o));

    let dir = project(&[("compose.yaml", APP)]);
    let o = berth(dir.path(), &["config", "nope"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no such service: nope"),
        "{}",
        stderr(&o)
    );
}
