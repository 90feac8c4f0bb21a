//! The canonical output of `App` for a small project, compared with golden files written
//! in the shape `docker compose config` prints.

use std::path::Path;

use berth_spec::{App, Location};
use indexmap::IndexMap;

fn load(yaml: &str) -> App {
    let env: IndexMap<String, String> = [
        ("HOME".to_string(), "/home/u".to_string()),
        ("DEBUG".to_string(), "1".to_string()),
    ]
    .into();
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let (app, _) = App::from_document("demo", Path::new("/srv/demo"), &env, doc, &|_| {
        Location::file("compose.yaml")
    })
    .unwrap();
    app
}

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name),
    )
    .unwrap()
}

#[test]
fn yaml_matches_golden() {
    let app = load(&golden("small.input.yaml"));
    let out = app.to_yaml();
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/small.yaml"),
            &out,
        )
        .unwrap();
    }
    assert_eq!(out, golden("small.yaml"));
}

#[test]
fn json_matches_golden() {
    let app = load(&golden("small.input.yaml"));
    let out = app.to_json();
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/small.json"),
            &out,
        )
        .unwrap();
    }
    assert_eq!(out, golden("small.json"));
}
