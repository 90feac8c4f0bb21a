//! Every Compose file of the shared corpus (`/work/shared/corpus/compose/*/*`) must load
//! as a document and then as an `App`, or fail with an error that is genuinely the file's
//! fault — rejected by Docker Compose v2 as well. The expected failures are listed below
//! with their reasons (and, with Compose's own check for each, in `docs/compat.md`).
//! Override files are also loaded onto their base file, as Compose users run them.
//! Skips with a message when the corpus directory is absent.
//!
//! Each file is loaded alone, as `docker compose -f FILE config` would load it in an empty
//! directory: no `.env`, no sibling files. Service `env_file`s are not read (they are not
//! part of the corpus). A variable the file marks required (`${VAR:?…}`) is set to a
//! placeholder, as its user would set it; other unset variables stay empty, with a warning.

use std::path::{Path, PathBuf};

use berth_spec::{App, Error, LoadOptions, PathSeg, RawProject, load_document};

/// The shared corpus: `$BERTH_CORPUS`, else `shared/` beside the repository (as CI lays it
/// out), else the development machine's `/work/shared`.
fn corpus_root() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/compose");
    std::env::var_os("BERTH_CORPUS")
        .map(PathBuf::from)
        .into_iter()
        .chain([beside, PathBuf::from("/work/shared/corpus/compose")])
        .find(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/work/shared/corpus/compose"))
}

/// Files whose YAML is invalid.
const DOCUMENT_FAILURES: &[(&str, &str)] = &[(
    "random/Lockelamoree+NiNa__docker-compose.yml",
    "invalid YAML: a quoted scalar followed by more text (`- 'your_pdf_folder_path':/app/pdf`)",
)];

const NEEDS_DOTENV: &str = "needs its project's .env: an unset variable leaves a required part \
     empty (Compose's volume, port and duration parsing rejects it the same way)";
const OVERLAY: &str = "an override file, meant to be merged onto its base file: alone it lacks \
     what the base defines (Compose's consistency check rejects it alone too)";
const REPLICAS: &str = "container_name together with deploy.replicas: 2 (Compose rejects it too)";

/// Files that load as documents but are not valid projects on their own.
const MODEL_FAILURES: &[(&str, &str)] = &[
    ("haxx/examples_immich_docker-compose.yml", NEEDS_DOTENV),
    ("haxx/examples_librephotos_docker-compose.yml", NEEDS_DOTENV),
    ("haxx/examples_mattermost_docker-compose.yml", NEEDS_DOTENV),
    (
        "popular/getsentry+self-hosted__docker-compose.yml",
        NEEDS_DOTENV,
    ),
    (
        "popular/immich-app+immich__docker_docker-compose.yml",
        NEEDS_DOTENV,
    ),
    (
        "popular/penpot+penpot__docker_devenv_docker-compose.main.yml",
        NEEDS_DOTENV,
    ),
    (
        "random/English-Learning-Application+english-learning-back-user__compose.yaml",
        NEEDS_DOTENV,
    ),
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_EXTERNAL_DNS_docker-compose.override.yml",
        OVERLAY,
    ),
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_EXTERNAL_MYSQL_SOCKET_docker-compose.override.yml",
        OVERLAY,
    ),
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_HAPROXY_docker-compose.override.yml",
        OVERLAY,
    ),
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_PROMETHEUS_EXPORTER_docker-compose.override.yml",
        OVERLAY,
    ),
    (
        "popular/netbox-community+netbox-docker__docker-compose.test.override.yml",
        OVERLAY,
    ),
    (
        "popular/plausible+community-edition__reverse-proxy_docker-compose.caddy-gen.yml",
        OVERLAY,
    ),
    (
        "popular/plausible+community-edition__reverse-proxy_traefik_docker-compose.traefik.yml",
        OVERLAY,
    ),
    ("popular/zulip+docker-zulip__compose.yaml", OVERLAY),
    (
        "random/Locutusque+OpenCut-AI-fork__docker-compose.native-ai.yml",
        OVERLAY,
    ),
    (
        "random/Locutusque+OpenCut-AI-fork__docker-compose.native-all.yml",
        OVERLAY,
    ),
    (
        "random/Locutusque+OpenCut-AI-fork__patches_docker-compose.turbo-llm.yml",
        OVERLAY,
    ),
    (
        "random/Realm-101+Kiro-Ghostworks__docker-compose.override.yml",
        OVERLAY,
    ),
    (
        "random/Realm-101+Kiro-Ghostworks__docker-compose.prod.yml",
        OVERLAY,
    ),
    (
        "random/ReTiCh-Corp+ReTiCh-Infrastucture__docker-compose.dev.yml",
        OVERLAY,
    ),
    (
        "random/Razboth+Servicedesk__docker-compose.linux-server.yml",
        REPLICAS,
    ),
    (
        "random/Razboth+Servicedesk__docker-compose.prod.yml",
        REPLICAS,
    ),
    ("random/RealRichai+RA__docker-compose.prod.yml", REPLICAS),
    (
        "random/RebornGhost+EthAI-Guard__docker-compose.prod.yml",
        REPLICAS,
    ),
    (
        "random/Lockh+stack-wp__docker-compose.yml",
        "services written at the top level, outside `services:` (unknown key `nginx-proxy`)",
    ),
    (
        "random/ReTiCh-Corp+ReTiCh-Infrastucture__docker-compose.prod.yml",
        "`build: []` is neither a path nor a mapping",
    ),
];

fn corpus_files() -> Option<Vec<PathBuf>> {
    let root = corpus_root();
    let root = root.as_path();
    if !root.is_dir() {
        return None;
    }
    let mut files = Vec::new();
    for group in std::fs::read_dir(root).ok()? {
        let group = group.ok()?.path();
        if !group.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&group).ok()? {
            let file = file.ok()?.path();
            if file.is_file() {
                files.push(file);
            }
        }
    }
    files.sort();
    Some(files)
}

fn relative(file: &Path) -> String {
    file.strip_prefix(corpus_root())
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Loads one corpus file as a document, setting the variables it requires.
fn load_one(file: &Path) -> Result<(RawProject, Vec<String>), Error> {
    load_files(&[file.to_path_buf()])
}

/// Loads `-f` files in order as one document, setting the variables they require.
fn load_files(files: &[PathBuf]) -> Result<(RawProject, Vec<String>), Error> {
    let mut required = Vec::new();
    loop {
        match load_with(files, &required) {
            Err(Error::RequiredVariable { variable, .. })
                if !required.contains(&variable) && required.len() < 20 =>
            {
                required.push(variable);
            }
            other => return other.map(|raw| (raw, required)),
        }
    }
}

fn load_with(files: &[PathBuf], required: &[String]) -> Result<RawProject, Error> {
    let options = LoadOptions {
        // A relative path: usable as a bind source, a secret or just a string.
        environment: required
            .iter()
            .map(|v| (v.clone(), "./corpus-placeholder".to_string()))
            .collect(),
        files: files.to_vec(),
        working_dir: files[0].parent().unwrap().to_path_buf(),
        resolve_env_files: false,
        project_name: Some("corpus".into()),
        ..Default::default()
    };
    load_document(&options)
}

fn to_app(raw: &RawProject) -> Result<App, Error> {
    let locate = |p: &[PathSeg]| raw.source_map.locate(p);
    App::from_document(
        &raw.name,
        &raw.project_dir,
        &raw.environment,
        raw.document.clone(),
        &locate,
    )
    .map(|(app, _)| app)
}

fn expected(list: &[(&str, &str)], name: &str) -> bool {
    list.iter().any(|(n, _)| *n == name)
}

#[test]
fn corpus_loads() {
    let Some(files) = corpus_files() else {
        eprintln!(
            "corpus directory {} absent: skipping",
            corpus_root().display()
        );
        return;
    };
    let (mut documents, mut apps) = (0, 0);
    let mut with_required = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        let name = relative(file);
        let raw = match load_one(file) {
            Ok((raw, required)) => {
                documents += 1;
                if !required.is_empty() {
                    with_required.push(format!("{name}: {}", required.join(", ")));
                }
                if expected(DOCUMENT_FAILURES, &name) {
                    problems.push(format!("{name}: listed as a document failure but loads"));
                }
                raw
            }
            Err(err) => {
                if expected(DOCUMENT_FAILURES, &name) {
                    eprintln!("expected failure: {name}: {err}");
                } else {
                    problems.push(format!("{name}: {err}"));
                }
                continue;
            }
        };
        match to_app(&raw) {
            Ok(_) => {
                apps += 1;
                if expected(MODEL_FAILURES, &name) {
                    problems.push(format!("{name}: listed as a model failure but loads"));
                }
            }
            Err(err) => {
                if expected(MODEL_FAILURES, &name) {
                    eprintln!("expected failure: {name}: {err}");
                } else {
                    problems.push(format!("{name}: model: {err}"));
                }
            }
        }
    }
    let total = files.len();
    let pct = |n: usize| n as f64 * 100.0 / total as f64;
    eprintln!(
        "corpus: {documents}/{total} load as documents ({:.1}%)",
        pct(documents)
    );
    eprintln!(
        "corpus: {apps}/{total} load as projects ({:.1}%)",
        pct(apps)
    );
    eprintln!(
        "loaded once required variables are set:\n  {}",
        with_required.join("\n  ")
    );
    assert!(
        problems.is_empty(),
        "unexpected results:\n{}",
        problems.join("\n")
    );
    assert!(
        documents * 100 >= total * 98,
        "only {:.1}% of the corpus loads",
        pct(documents)
    );
    // Every file that is not listed as the file's own fault loads completely.
    assert_eq!(apps + MODEL_FAILURES.len() + DOCUMENT_FAILURES.len(), total);
}

/// The override files of the corpus with the base file each is written for (named in the
/// file's own comments, or its project's `-f` convention). Alone they fail as Compose
/// fails them (listed in `MODEL_FAILURES`); merged onto their base, as
/// `docker compose -f BASE -f OVERRIDE config` reads them, they must load completely.
const OVERRIDE_BASES: &[(&str, &str)] = &[
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_EXTERNAL_DNS_docker-compose.override.yml",
        "popular/mailcow+mailcow-dockerized__docker-compose.yml",
    ),
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_EXTERNAL_MYSQL_SOCKET_docker-compose.override.yml",
        "popular/mailcow+mailcow-dockerized__docker-compose.yml",
    ),
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_HAPROXY_docker-compose.override.yml",
        "popular/mailcow+mailcow-dockerized__docker-compose.yml",
    ),
    (
        "popular/mailcow+mailcow-dockerized__helper-scripts_docker-compose.override.yml.d_PROMETHEUS_EXPORTER_docker-compose.override.yml",
        "popular/mailcow+mailcow-dockerized__docker-compose.yml",
    ),
    (
        "popular/netbox-community+netbox-docker__docker-compose.test.override.yml",
        "popular/netbox-community+netbox-docker__docker-compose.test.yml",
    ),
    (
        "popular/plausible+community-edition__reverse-proxy_docker-compose.caddy-gen.yml",
        "popular/plausible+community-edition__docker-compose.yml",
    ),
    (
        "popular/plausible+community-edition__reverse-proxy_traefik_docker-compose.traefik.yml",
        "popular/plausible+community-edition__docker-compose.yml",
    ),
    (
        "random/Locutusque+OpenCut-AI-fork__docker-compose.native-ai.yml",
        "random/Locutusque+OpenCut-AI-fork__docker-compose.yml",
    ),
    (
        "random/Locutusque+OpenCut-AI-fork__docker-compose.native-all.yml",
        "random/Locutusque+OpenCut-AI-fork__docker-compose.yml",
    ),
    (
        "random/Locutusque+OpenCut-AI-fork__patches_docker-compose.turbo-llm.yml",
        "random/Locutusque+OpenCut-AI-fork__docker-compose.yml",
    ),
    (
        "random/Realm-101+Kiro-Ghostworks__docker-compose.override.yml",
        "random/Realm-101+Kiro-Ghostworks__docker-compose.yml",
    ),
    (
        "random/Realm-101+Kiro-Ghostworks__docker-compose.prod.yml",
        "random/Realm-101+Kiro-Ghostworks__docker-compose.yml",
    ),
    (
        "random/ReTiCh-Corp+ReTiCh-Infrastucture__docker-compose.dev.yml",
        "random/ReTiCh-Corp+ReTiCh-Infrastucture__docker-compose.yml",
    ),
];

#[test]
fn override_files_load_onto_their_base() {
    let root = corpus_root();
    if !root.is_dir() {
        eprintln!("corpus directory {} absent: skipping", root.display());
        return;
    }
    let mut problems = Vec::new();
    for (overlay, base) in OVERRIDE_BASES {
        assert!(
            expected(MODEL_FAILURES, overlay),
            "{overlay} is not listed as failing alone"
        );
        let files = [root.join(base), root.join(overlay)];
        let result = load_files(&files).and_then(|(raw, _)| to_app(&raw));
        match result {
            Ok(app) => eprintln!(
                "loads onto its base: {overlay} ({} services)",
                app.services.len()
            ),
            Err(err) => problems.push(format!("{base} + {overlay}: {err}")),
        }
    }
    assert!(
        problems.is_empty(),
        "override files that fail on their base:\n{}",
        problems.join("\n")
    );
}
