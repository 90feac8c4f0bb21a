//! `berth config` as a user runs it: the real binary on projects in temporary directories.
//! Checks the facets (`--services`, `--volumes`, `--profiles`, `--images`, `--hash`,
//! `--environment`), `-q`, `-o`, `--no-interpolate`, warnings on stderr, one-line errors
//! and the source excerpt (line and carets) after an error or warning with a place.
//! Every child runs under `timeout`, so a hang fails the test instead of stalling it.

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

/// `berth` bounded in time: `timeout` kills it after 60 s.
fn bounded_berth() -> Command {
    let mut command = Command::new("timeout");
    command.args(["--kill-after=5", "60", env!("CARGO_BIN_EXE_berth")]);
    command
}

fn berth(dir: &Path, args: &[&str]) -> Output {
    bounded_berth()
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
    // one line of error, then the excerpt
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(
        err.lines().next().unwrap().ends_with(
            "compose.yaml:3:12: required variable IMG is missing a value: image required"
        ),
        "{err}"
    );

    let dir = project(&[("compose.yaml", "services:\n  web: [\n")]);
    let o = berth(dir.path(), &["config"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).lines().next().unwrap().contains("compose.yaml:"),
        "{}",
        stderr(&o)
    );

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

#[test]
fn a_dependency_disabled_by_profiles_is_an_error() {
    let dir = project(&[(
        "compose.yaml",
        "services:\n  web:\n    image: a\n    depends_on: [db]\n  db:\n    image: b\n    profiles: [data]\n",
    )]);
    let o = berth(dir.path(), &["config", "-q"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("compose.yaml:4:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("undefined service"), "{}", stderr(&o));
    // Naming db activates its profile.
    let o = berth(dir.path(), &["config", "--services", "db"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "db\n");
    let o = berth(dir.path(), &["--profile", "data", "config", "--services"]);
    assert_eq!(stdout(&o), "db\nweb\n");
}

#[test]
fn compose_file_from_stdin() {
    use std::io::Write as _;
    let dir = project(&[]);
    let mut child = bounded_berth()
        .args(["-f", "-", "-p", "piped", "config", "--services"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"services:\n  b: {image: x}\n  a: {image: y}\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "a\nb\n");
}

/// Runs `berth config -q` on a one-file project and returns stderr with the project
/// directory shown as `/p`.
fn config_stderr(text: &str) -> (bool, String) {
    let dir = project(&[("compose.yaml", text)]);
    let o = berth(dir.path(), &["-p", "p", "config", "-q"]);
    let err = stderr(&o).replace(&dir.path().display().to_string(), "/p");
    (o.status.success(), err)
}

#[test]
fn located_errors_show_the_line_and_carets() {
    let cases = [
        (
            "services:\n  web:\n    image: nginx\n    imagee: x\n",
            "berth: /p/compose.yaml:4:5: unknown key `services.web.imagee`
  |
4 |     imagee: x
  |     ^^^^^^
",
        ),
        (
            "services:\n  web:\n    image: nginx\n    ports:\n      - \"8080:80\"\n      - \"80:80:80:80x\"\n",
            "berth: /p/compose.yaml:6:9: services.web.ports[1]: invalid IP address: 80:80
  |
6 |       - \"80:80:80:80x\"
  |         ^^^^^^^^^^^^^^
",
        ),
        (
            "services:\n  web:\n    image: nginx\n    volumes: [\"./a:/a\", \":/data\"]\n",
            "berth: /p/compose.yaml:4:25: services.web.volumes[1]: invalid spec: :/data: empty section between colons
  |
4 |     volumes: [\"./a:/a\", \":/data\"]
  |                         ^^^^^^^^
",
        ),
        (
            "services:\n  web:\n    image: ${IMG:?set IMG}\n",
            "berth: /p/compose.yaml:3:12: required variable IMG is missing a value: set IMG
  |
3 |     image: ${IMG:?set IMG}
  |            ^^^^^^^^^^^^^^^
",
        ),
        (
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n",
            "berth: /p/compose.yaml:4:5: services.a.depends_on: dependency cycle between services: a -> b -> a
  |
4 |     depends_on: [b]
  |     ^^^^^^^^^^
",
        ),
        (
            "services:\n  web:\n    image: x\n    depends_on:\n      - cache\n      - db\n  cache:\n    image: y\n",
            "berth: /p/compose.yaml:6:9: services.web.depends_on.db: service \"web\" depends on undefined service \"db\"
  |
6 |       - db
  |         ^^
",
        ),
        (
            "services:\n  web:\n\timage: x\n",
            "berth: /p/compose.yaml:3:1: found character that cannot start any token
  |
3 |     image: x
  | ^^^^
",
        ),
    ];
    for (text, expected) in cases {
        let (ok, err) = config_stderr(text);
        assert!(!ok, "{text}");
        assert_eq!(err, expected, "{text}");
    }
}

#[test]
fn warnings_show_the_line_and_carets_and_errors_without_a_place_do_not() {
    let (ok, err) = config_stderr("version: \"3.9\"\nservices:\n  web:\n    image: x\n");
    assert!(ok, "{err}");
    assert_eq!(
        err,
        "warning: /p/compose.yaml:1:1: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion
  |
1 | version: \"3.9\"
  | ^^^^^^^
"
    );
    let dir = project(&[]);
    let o = berth(dir.path(), &["-f", "absent.yaml", "config", "-q"]);
    assert!(!o.status.success());
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn an_error_in_a_file_from_stdin_quotes_stdin() {
    use std::io::Write as _;
    let dir = project(&[]);
    let mut child = bounded_berth()
        .args(["-f", "-", "-p", "piped", "config", "-q"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"services:\n  b:\n    image: x\n    restart: sometimes\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    let mut lines = err.lines();
    assert!(lines.next().unwrap().starts_with("berth: -:4:5: "), "{err}");
    assert_eq!(
        lines.collect::<Vec<_>>(),
        ["  |", "4 |     restart: sometimes", "  |     ^^^^^^^"],
        "{err}"
    );
}

#[test]
fn every_verb_that_loads_a_project_quotes_the_place_of_its_error() {
    let text = "services:\n  web:\n    image: busybox\n    ports:\n      - \"99999:80\"\n";
    let expected = "berth: /p/compose.yaml:5:9: services.web.ports[0]: invalid hostPort: 99999
  |
5 |       - \"99999:80\"
  |         ^^^^^^^^^^
";
    let dir = project(&[("compose.yaml", text)]);
    for verb in [&["up", "-d"][..], &["run", "web", "true"], &["build"]] {
        let mut args = vec!["-p", "p"];
        args.extend_from_slice(verb);
        // the file is refused before any daemon is asked; a socket nobody serves makes sure
        // no test daemon could be started or reached if that ever changed
        let o = bounded_berth()
            .args(&args)
            .current_dir(dir.path())
            .env("BERTH_HOST", "unix:///nonexistent/berth.sock")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROFILES")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{verb:?}");
        let err = stderr(&o).replace(&dir.path().display().to_string(), "/p");
        assert_eq!(err, expected, "{verb:?}");
    }
}

#[test]
fn a_literal_dollar_prints_doubled_and_the_output_loads_back_to_the_same_model() {
    // `$$` is a literal `$` in a Compose file; Compose's `config` prints the interpolated
    // model with every `$` doubled, so its output is a Compose file with the same values
    let dir = project(&[(
        "compose.yaml",
        "name: dollars\nservices:\n  web:\n    image: busybox:${TAG:-1}\n    command: [\"sh\", \"-c\", \"echo $$HOME costs $$5\"]\n    environment:\n      HASH: $$2a$$12$$abc\n      PLAIN: ${TAG:-x}\n",
    )]);
    let o = berth(dir.path(), &["config"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stdout(&o);
    assert!(first.contains("echo $$HOME costs $$5"), "{first}");
    assert!(first.contains("HASH: $$2a$$12$$abc"), "{first}");
    assert!(first.contains("image: busybox:1"), "{first}");
    assert!(first.contains("PLAIN: x"), "{first}");
    let json = berth(dir.path(), &["config", "--format", "json"]);
    assert!(
        stdout(&json).contains("\"$$2a$$12$$abc\""),
        "{}",
        stdout(&json)
    );
    // the output, loaded again, prints the same
    std::fs::write(dir.path().join("printed.yaml"), &first).unwrap();
    let again = berth(dir.path(), &["-f", "printed.yaml", "config"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), first);
    // without interpolation nothing is resolved, so nothing is doubled
    let raw = berth(dir.path(), &["config", "--no-interpolate"]);
    assert!(stdout(&raw).contains("$$2a$$12$$abc"), "{}", stdout(&raw));
    assert!(stdout(&raw).contains("${TAG:-1}"), "{}", stdout(&raw));
}
