//! The loader end to end on real files in temporary directories: several `-f` files,
//! `.env` and `--env-file`, `COMPOSE_FILE`, `COMPOSE_PROFILES`, discovery, `include`,
//! `extends` across files, `env_file` folding, warnings and error locations.

use std::path::PathBuf;

use berth_spec::{Error, LoadOptions, PathSeg, RawProject, load_document};
use indexmap::IndexMap;
use serde_yaml::Value;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Project { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            working_dir: self.dir.path().to_path_buf(),
            ..Default::default()
        }
    }

    fn load(&self, f: impl FnOnce(&mut LoadOptions)) -> Result<RawProject, Error> {
        let mut options = self.options();
        f(&mut options);
        load_document(&options)
    }
}

fn y(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

fn keys(path: &str) -> Vec<PathSeg> {
    path.split('.')
        .map(|k| PathSeg::Key(k.to_string()))
        .collect()
}

fn env(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn several_files_merge_and_locations_follow() {
    let p = Project::new(&[
        (
            "app/compose.yaml",
            "name: demo\nservices:\n  web:\n    image: nginx\n    ports: ['80:80']\n",
        ),
        (
            "app/override.yaml",
            "services:\n  web:\n    image: nginx:2\n    ports: ['443:443']\n",
        ),
    ]);
    let raw = p
        .load(|o| o.files = vec!["app/compose.yaml".into(), "app/override.yaml".into()])
        .unwrap();
    assert_eq!(raw.name, "demo");
    assert_eq!(raw.project_dir, p.path("app"));
    assert_eq!(
        raw.document["services"]["web"]["image"],
        Value::from("nginx:2")
    );
    assert_eq!(
        raw.document["services"]["web"]["ports"],
        y("['80:80', '443:443']")
    );
    let loc = raw.source_map.locate(&keys("services.web.image"));
    assert_eq!(
        (loc.file.clone(), loc.line),
        (p.path("app/override.yaml"), 3)
    );
    let mut port0 = keys("services.web.ports");
    port0.push(PathSeg::Index(0));
    assert_eq!(
        raw.source_map.locate(&port0).file,
        p.path("app/compose.yaml")
    );
    let mut port1 = keys("services.web.ports");
    port1.push(PathSeg::Index(1));
    assert_eq!(
        raw.source_map.locate(&port1).file,
        p.path("app/override.yaml")
    );
    assert_eq!(
        raw.files,
        vec![p.path("app/compose.yaml"), p.path("app/override.yaml")]
    );
}

#[test]
fn dotenv_env_file_and_process_precedence() {
    let p = Project::new(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: \"${IMAGE}:${TAG:-latest}\"\n    environment: [\"MODE=${MODE}\"]\n",
        ),
        (".env", "IMAGE=from-dotenv\nMODE=dotenv\n"),
        ("other.env", "IMAGE=from-other\n"),
    ]);
    let raw = p.load(|_| {}).unwrap();
    assert_eq!(
        raw.document["services"]["web"]["image"],
        Value::from("from-dotenv:latest")
    );
    // Process environment wins over the .env file.
    let raw = p
        .load(|o| o.environment = env(&[("MODE", "shell"), ("TAG", "1")]))
        .unwrap();
    assert_eq!(
        raw.document["services"]["web"]["image"],
        Value::from("from-dotenv:1")
    );
    assert_eq!(
        raw.document["services"]["web"]["environment"],
        y("['MODE=shell']")
    );
    assert_eq!(
        raw.environment.get("MODE").map(String::as_str),
        Some("shell")
    );
    // --env-file replaces the default .env: MODE is now unset, with one warning.
    let raw = p.load(|o| o.env_files = vec!["other.env".into()]).unwrap();
    assert_eq!(
        raw.document["services"]["web"]["image"],
        Value::from("from-other:latest")
    );
    let warning = raw
        .warnings
        .iter()
        .find(|w| w.message.contains("\"MODE\" variable is not set"))
        .unwrap();
    let location = warning.location.clone().unwrap();
    assert_eq!((location.file, location.line), (p.path("compose.yaml"), 4));
    // A missing --env-file is an error.
    let err = p
        .load(|o| o.env_files = vec!["gone.env".into()])
        .unwrap_err();
    assert!(err.to_string().contains("gone.env"), "{err}");
}

#[test]
fn unset_variable_warns_once() {
    let p = Project::new(&[(
        "compose.yaml",
        "services:\n  a: {image: $X}\n  b: {image: $X}\n",
    )]);
    let raw = p.load(|_| {}).unwrap();
    assert_eq!(
        raw.warnings
            .iter()
            .filter(|w| w.message.contains("\"X\""))
            .count(),
        1
    );
    assert_eq!(raw.document["services"]["b"]["image"], Value::from(""));
}

#[test]
fn required_variable_error_names_variable_file_and_line() {
    let p = Project::new(&[(
        "compose.yaml",
        "services:\n  web:\n    image: ${IMAGE:?set IMAGE}\n",
    )]);
    let err = p.load(|_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:12: required variable IMAGE is missing a value: set IMAGE",
            p.path("compose.yaml").display()
        )
    );
    let p = Project::new(&[("compose.yaml", "services:\n  web:\n    image: ${IMAGE\n")]);
    let err = p.load(|_| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("compose.yaml:3:12: invalid interpolation format"),
        "{err}"
    );
}

#[test]
fn no_interpolate_keeps_dollars() {
    let p = Project::new(&[(
        "compose.yaml",
        "services:\n  web:\n    image: ${IMAGE:?x}\n",
    )]);
    let raw = p.load(|o| o.interpolate = false).unwrap();
    assert_eq!(
        raw.document["services"]["web"]["image"],
        Value::from("${IMAGE:?x}")
    );
}

#[test]
fn compose_file_and_profiles_from_dotenv() {
    let p = Project::new(&[
        (
            "a.yaml",
            "services:\n  web: {image: a}\n  debug: {image: d, profiles: [debug]}\n",
        ),
        ("b.yaml", "services:\n  web: {image: b}\n"),
        (
            ".env",
            "COMPOSE_FILE=a.yaml:b.yaml\nCOMPOSE_PROFILES=debug\nCOMPOSE_PROJECT_NAME=fromenv\n",
        ),
    ]);
    let raw = p.load(|_| {}).unwrap();
    assert_eq!(raw.name, "fromenv");
    assert_eq!(raw.document["services"]["web"]["image"], Value::from("b"));
    assert!(raw.document["services"].get("debug").is_some());
    assert_eq!(raw.active_profiles, vec!["debug"]);
    // --profile wins over COMPOSE_PROFILES; -p over COMPOSE_PROJECT_NAME.
    let raw = p
        .load(|o| {
            o.profiles = vec!["other".into()];
            o.project_name = Some("flag".into());
        })
        .unwrap();
    assert_eq!(raw.name, "flag");
    assert!(raw.document["services"].get("debug").is_none());
    assert!(raw.disabled_services.get("debug").is_some());
    assert_eq!(raw.all_profiles, vec!["debug"]);
    // Naming the service enables it.
    let raw = p
        .load(|o| {
            o.profiles = vec!["other".into()];
            o.services = vec!["debug".into()];
        })
        .unwrap();
    assert!(raw.document["services"].get("debug").is_some());
}

#[test]
fn discovery_from_a_subdirectory_with_override_and_version_warning() {
    let p = Project::new(&[
        (
            "My Project/compose.yaml",
            "version: '3.8'\nservices:\n  web: {image: a}\n",
        ),
        (
            "My Project/compose.override.yaml",
            "services:\n  web: {init: true}\n",
        ),
        ("My Project/.env", "TAG=x\n"),
        ("My Project/deep/er/.keep", ""),
    ]);
    let raw = p
        .load(|o| o.working_dir = p.path("My Project/deep/er"))
        .unwrap();
    assert_eq!(raw.name, "myproject");
    assert_eq!(raw.project_dir, p.path("My Project"));
    assert_eq!(raw.document["services"]["web"], y("{image: a, init: true}"));
    assert!(raw.document.get("version").is_none());
    let w = raw
        .warnings
        .iter()
        .find(|w| w.message.contains("`version` is obsolete"))
        .unwrap();
    assert_eq!(w.location.as_ref().unwrap().line, 1);
    assert_eq!(raw.environment.get("TAG").map(String::as_str), Some("x"));
}

#[test]
fn env_file_folds_into_environment() {
    let p = Project::new(&[
        (
            "compose.yaml",
            "services:\n  web:\n    image: a\n    env_file: [base.env, {path: missing.env, required: false}, {path: raw.env, format: raw}]\n    environment: {B: own, C: null, D: }\n",
        ),
        ("base.env", "A=1\nB=2\nC=3\nREF=${SHELL_VAR}\n"),
        ("raw.env", "R='quoted' $NOT\n"),
    ]);
    let raw = p
        .load(|o| o.environment = env(&[("SHELL_VAR", "s")]))
        .unwrap();
    let web = &raw.document["services"]["web"];
    assert!(web.get("env_file").is_none());
    assert_eq!(
        web["environment"],
        y("{A: '1', B: own, C: '3', REF: s, R: \"'quoted' $NOT\", D: null}")
    );
    // Without folding, env_file stays for the model.
    let raw = p.load(|o| o.resolve_env_files = false).unwrap();
    assert!(raw.document["services"]["web"].get("env_file").is_some());
    // A required env file that is missing names the entry.
    let p = Project::new(&[(
        "compose.yaml",
        "services:\n  web:\n    image: a\n    env_file:\n      - nope.env\n",
    )]);
    let err = p.load(|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("compose.yaml:5:9: env file"),
        "{err}"
    );
    assert!(err.to_string().contains("nope.env not found"), "{err}");
}

#[test]
fn include_with_its_own_env_and_conflicts() {
    let p = Project::new(&[
        (
            "compose.yaml",
            "include:\n  - path: lib/compose.yaml\nservices:\n  web: {image: web, depends_on: [db]}\n",
        ),
        (
            "lib/compose.yaml",
            "services:\n  db:\n    image: \"pg:${PG_TAG}\"\n    volumes: ['./data:/var/lib/pg']\n    env_file: db.env\n",
        ),
        ("lib/.env", "PG_TAG=16\n"),
        ("lib/db.env", "POSTGRES_DB=app\n"),
    ]);
    let raw = p.load(|_| {}).unwrap();
    let db = &raw.document["services"]["db"];
    assert_eq!(db["image"], Value::from("pg:16"));
    let data = format!("{}:/var/lib/pg", p.path("lib/data").display());
    assert_eq!(db["volumes"], Value::Sequence(vec![Value::String(data)]));
    assert_eq!(db["environment"], y("{POSTGRES_DB: app}"));
    assert!(raw.document.get("include").is_none());
    assert_eq!(
        raw.source_map.locate(&keys("services.db.image")).file,
        p.path("lib/compose.yaml")
    );

    let p = Project::new(&[
        (
            "compose.yaml",
            "include: [lib.yaml]\nservices:\n  db: {image: mine}\n",
        ),
        ("lib.yaml", "services:\n  db: {image: theirs}\n"),
    ]);
    let err = p.load(|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("services.db is defined in"),
        "{err}"
    );
    assert!(err.to_string().contains("lib.yaml"), "{err}");

    let p = Project::new(&[
        ("compose.yaml", "include: [b.yaml]\n"),
        ("b.yaml", "include: [compose.yaml]\n"),
    ]);
    let err = p.load(|_| {}).unwrap_err();
    assert!(err.to_string().contains("include cycle"), "{err}");

    let p = Project::new(&[("compose.yaml", "services: {}\ninclude:\n  - gone.yaml\n")]);
    let err = p.load(|_| {}).unwrap_err().to_string();
    assert!(
        err.contains("compose.yaml:3:5: include[0]: cannot read"),
        "{err}"
    );
    assert!(err.contains("gone.yaml"), "{err}");
}

#[test]
fn extends_from_another_file_across_directories() {
    let p = Project::new(&[
        (
            "compose.yaml",
            "services:\n  web:\n    extends: {file: common/base.yaml, service: app}\n    environment: {B: '2'}\n",
        ),
        (
            "common/base.yaml",
            "services:\n  app:\n    build: ./ctx\n    environment: {A: '1'}\n",
        ),
    ]);
    let raw = p.load(|_| {}).unwrap();
    let web = &raw.document["services"]["web"];
    assert_eq!(
        web["build"],
        Value::String(p.path("common/ctx").display().to_string())
    );
    assert_eq!(web["environment"], y("{A: '1', B: '2'}"));
}

#[test]
fn stdin_file() {
    let p = Project::new(&[]);
    let raw = p
        .load(|o| {
            o.files = vec!["-".into()];
            o.stdin = Some("services:\n  s: {image: x}\n".into());
        })
        .unwrap();
    assert_eq!(raw.project_dir, p.dir.path());
    assert!(raw.files.is_empty());
    assert_eq!(raw.document["services"]["s"]["image"], Value::from("x"));
}

#[test]
fn syntax_and_io_errors() {
    let p = Project::new(&[("compose.yaml", "services:\n  web:\n    image: [\n")]);
    let err = p.load(|_| {}).unwrap_err();
    assert!(matches!(err, Error::Syntax { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&p.path("compose.yaml").display().to_string()),
        "{err}"
    );
    let err = p
        .load(|o| o.files = vec!["absent.yaml".into()])
        .unwrap_err();
    assert!(err.to_string().contains("absent.yaml"), "{err}");
}

#[test]
fn several_env_files_in_order_and_path_separator() {
    let p = Project::new(&[
        ("sub/a.yaml", "services:\n  a: {image: \"${IMG}:${TAG}\"}\n"),
        ("sub/b.yaml", "services:\n  b: {image: x}\n"),
        ("one.env", "IMG=first\nTAG=1\n"),
        (
            "two.env",
            "TAG=${TAG}-two\nCOMPOSE_FILE=sub/a.yaml;sub/b.yaml\nCOMPOSE_PATH_SEPARATOR=;\n",
        ),
    ]);
    let raw = p
        .load(|o| o.env_files = vec!["one.env".into(), "two.env".into()])
        .unwrap();
    // The second file sees the first one's variables.
    assert_eq!(
        raw.document["services"]["a"]["image"],
        Value::from("first:1-two")
    );
    assert!(raw.document["services"].get("b").is_some());
    // Files from COMPOSE_FILE: the project directory is the first one's.
    assert_eq!(raw.project_dir, p.path("sub"));
    assert_eq!(raw.name, "sub");
}

#[test]
fn relative_paths_of_later_files_stay_relative_to_the_project() {
    let p = Project::new(&[
        (
            "app/compose.yaml",
            "services:\n  web: {image: a, build: .}\n",
        ),
        (
            "overrides/dev.yaml",
            "services:\n  web: {build: {context: ./src}}\n",
        ),
    ]);
    let raw = p
        .load(|o| o.files = vec!["app/compose.yaml".into(), "overrides/dev.yaml".into()])
        .unwrap();
    // Compose resolves every file's relative paths against the project directory.
    assert_eq!(raw.project_dir, p.path("app"));
    assert_eq!(
        raw.document["services"]["web"]["build"],
        y("{context: ./src}")
    );
}

#[test]
fn invalid_explicit_project_names_are_errors() {
    let p = Project::new(&[("compose.yaml", "name: My App\nservices: {}\n")]);
    let err = p.load(|_| {}).unwrap_err();
    assert!(
        err.to_string().contains("invalid project name \"My App\""),
        "{err}"
    );
    let raw = p.load(|o| o.project_name = Some("ok-1".into())).unwrap();
    assert_eq!(raw.name, "ok-1");
}

#[test]
fn dotenv_of_the_working_dir_and_of_the_project_dir_layer() {
    let p = Project::new(&[
        (".env", "COMPOSE_FILE=app/compose.yaml\nA=root\nB=root\n"),
        (
            "app/compose.yaml",
            "services:\n  s: {image: \"$A-$B-$C\"}\n",
        ),
        ("app/.env", "B=app\nC=app\n"),
    ]);
    let raw = p.load(|o| o.environment = env(&[("C", "shell")])).unwrap();
    assert_eq!(raw.project_dir, p.path("app"));
    assert_eq!(
        raw.document["services"]["s"]["image"],
        Value::from("root-app-shell")
    );
}

#[test]
fn a_dependency_cycle_names_the_whole_path_and_the_file() {
    let project = Project::new(&[(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    depends_on: [api]\n  api:\n    image: x\n    links: [db]\n  db:\n    image: x\n    depends_on:\n      web:\n        condition: service_started\n",
    )]);
    let err = berth_spec::load(&project.options()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("dependency cycle between services: api -> db -> web -> api"),
        "{text}"
    );
    assert!(
        text.contains("compose.yaml:"),
        "the error names the file: {text}"
    );
}

#[test]
fn the_graph_of_a_loaded_project_gives_start_waves_and_selections() {
    let project = Project::new(&[(
        "compose.yaml",
        "services:\n  web:\n    image: x\n    depends_on: [api]\n  api:\n    image: x\n    network_mode: service:vpn\n  vpn:\n    image: x\n  tool:\n    image: x\n    volumes_from: [api]\n",
    )]);
    let loaded = berth_spec::load(&project.options()).unwrap();
    let graph = loaded.app.graph().unwrap();
    assert_eq!(
        graph.start_waves(),
        vec![vec!["vpn"], vec!["api"], vec!["tool", "web"]]
    );
    let mut selected: Vec<_> = graph
        .with_dependencies(&["web"])
        .unwrap()
        .into_iter()
        .collect();
    selected.sort();
    assert_eq!(selected, ["api", "vpn", "web"]);
}
