//! The rendered form of located errors and warnings: the one-line message, then the
//! offending line of the file with carets under the place (`berth_spec::snippet`). Each
//! test loads a real project from a temporary directory and compares the whole text.

use std::path::Path;

use berth_spec::snippet::excerpt;
use berth_spec::{Error, LoadOptions, Warning, load};

/// Loads `compose.yaml` with `text` and returns the error as the CLI prints it, with the
/// temporary directory shown as `/p`.
fn error_text(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
    let err = match load(&options(dir.path())) {
        Ok(_) => panic!("loaded: {text}"),
        Err(err) => err,
    };
    render_error(&err, text, dir.path())
}

fn options(dir: &Path) -> LoadOptions {
    LoadOptions {
        working_dir: dir.to_path_buf(),
        project_name: Some("p".into()),
        ..Default::default()
    }
}

fn render_error(err: &Error, text: &str, dir: &Path) -> String {
    let location = err.location().expect("a located error");
    let out = format!("{err}\n{}", excerpt(location, text, false).unwrap());
    out.replace(&dir.display().to_string(), "/p")
}

fn render_warning(warning: &Warning, text: &str, dir: &Path) -> String {
    let location = warning.located().expect("a located warning");
    let out = format!("{warning}\n{}", excerpt(location, text, false).unwrap());
    out.replace(&dir.display().to_string(), "/p")
}

#[test]
fn unknown_key() {
    assert_eq!(
        error_text("services:\n  web:\n    image: nginx\n    imagee: x\n"),
        "/p/compose.yaml:4:5: unknown key `services.web.imagee`
  |
4 |     imagee: x
  |     ^^^^^^
"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        error_text("services:\n  web:\n    image: nginx\n    mem_limit: [1]\n"),
        "/p/compose.yaml:4:5: services.web.mem_limit: expected a string, found a list
  |
4 |     mem_limit: [1]
  |     ^^^^^^^^^
"
    );
}

#[test]
fn bad_port_and_volume_short_syntax() {
    assert_eq!(
        error_text("services:\n  web:\n    image: nginx\n    ports:\n      - \"80:80:80:80x\"\n"),
        "/p/compose.yaml:5:9: services.web.ports[0]: invalid IP address: 80:80
  |
5 |       - \"80:80:80:80x\"
  |         ^^^^^^^^^^^^^^
"
    );
    assert_eq!(
        error_text("services:\n  web:\n    image: nginx\n    volumes:\n      - ./a:/a\n      - :/data\n"),
        "/p/compose.yaml:6:9: services.web.volumes[1]: invalid spec: :/data: empty section between colons
  |
6 |       - :/data
  |         ^^^^^^
"
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        error_text("services:\n  web:\n    image: x\n    healthcheck:\n      interval: 10x\n"),
        "/p/compose.yaml:5:7: services.web.healthcheck.interval: invalid duration \"10x\": unknown unit \"x\"
  |
5 |       interval: 10x
  |       ^^^^^^^^
"
    );
}

#[test]
fn required_and_malformed_interpolation() {
    // an error about a value points at the value, not at its key
    assert_eq!(
        error_text("services:\n  web:\n    image: ${IMG:?need an image}\n"),
        "/p/compose.yaml:3:12: required variable IMG is missing a value: need an image
  |
3 |     image: ${IMG:?need an image}
  |            ^^^^^^^^^^^^^^^^^^^^^
"
    );
    assert_eq!(
        error_text("services:\n  web:\n    image: x\n    environment:\n      - A=${B\n"),
        "/p/compose.yaml:5:9: invalid interpolation format for \"A=${B\": missing closing brace; you may need to escape any $ with another $
  |
5 |       - A=${B
  |         ^^^^^
"
    );
    assert_eq!(
        error_text("services:\n  web:\n    image: x\n    command: [\"a\", \"${B:?say}\", c]\n"),
        "/p/compose.yaml:4:20: required variable B is missing a value: say
  |
4 |     command: [\"a\", \"${B:?say}\", c]
  |                    ^^^^^^^^^^^
"
    );
}

#[test]
fn dependency_cycle_and_undefined_dependency() {
    assert_eq!(
        error_text(
            "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on:\n      - a\n"
        ),
        "/p/compose.yaml:4:5: services.a.depends_on: dependency cycle between services: a -> b -> a
  |
4 |     depends_on: [b]
  |     ^^^^^^^^^^
"
    );
    assert_eq!(
        error_text("services:\n  web:\n    image: x\n    depends_on:\n      - db\n"),
        "/p/compose.yaml:5:9: services.web.depends_on.db: service \"web\" depends on undefined service \"db\"
  |
5 |       - db
  |         ^^
"
    );
    assert_eq!(
        error_text("services:\n  web:\n    image: x\n    networks: [back, front]\nnetworks:\n  back:\n"),
        "/p/compose.yaml:4:22: services.web.networks.front: service \"web\" refers to undefined network front
  |
4 |     networks: [back, front]
  |                      ^^^^^
"
    );
}

#[test]
fn yaml_syntax_error_at_the_end_of_the_file() {
    assert_eq!(
        error_text("services:\n  web:\n    image: x\n    ports: [80\n"),
        "/p/compose.yaml:5:1: did not find expected ',' or ']'
  |
5 | 
  | ^
"
    );
}

#[test]
fn warnings_have_excerpts_too() {
    let dir = tempfile::tempdir().unwrap();
    let text = "version: '3'\nservices:\n  web:\n    image: nginx:${TAG_UNSET_IN_TEST}\n";
    std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
    let loaded = load(&options(dir.path())).unwrap();
    let shown: Vec<String> = loaded
        .warnings
        .iter()
        .map(|w| render_warning(w, text, dir.path()))
        .collect();
    assert_eq!(
        shown,
        [
            "/p/compose.yaml:4:12: the \"TAG_UNSET_IN_TEST\" variable is not set, defaulting to a blank string
  |
4 |     image: nginx:${TAG_UNSET_IN_TEST}
  |            ^^^^^^^^^^^^^^^^^^^^^^^^^^
",
            "/p/compose.yaml:1:1: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion
  |
1 | version: '3'
  | ^^^^^^^
",
        ]
    );
}

/// Found by the `load` fuzz target: libyaml reports an error at the end of a text without
/// a final line break one line past the text; the loader places it at the end of the last
/// line.
#[test]
fn error_at_the_end_of_a_text_without_a_final_line_break() {
    assert_eq!(
        error_text("services:\n 00:8080\"\n$"),
        "/p/compose.yaml:3:2: could not find expected ':'
  |
3 | $
  |  ^
"
    );
}
