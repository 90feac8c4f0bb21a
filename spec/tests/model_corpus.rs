//! The model against the real-world corpus (`/work/shared/corpus/compose`), values left
//! uninterpolated: no attribute a real file uses may be missing from the model (an unknown
//! key is always the file's fault), and every file without variables types cleanly.
//! The full corpus test with interpolation and merging belongs to the loader.

use std::path::{Path, PathBuf};

use berth_spec::{App, Error, Location};

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

/// Files that are genuinely invalid, with the reason.
const BROKEN: &[(&str, &str)] = &[
    (
        "Lockh+stack-wp__docker-compose.yml",
        "services declared at the top level, outside `services:`",
    ),
    (
        "ReTiCh-Corp+ReTiCh-Infrastucture__docker-compose.prod.yml",
        "`build: []` is neither a path nor a mapping",
    ),
];

fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["haxx", "popular", "random"] {
        let Ok(entries) = std::fs::read_dir(corpus_root().join(dir)) else {
            continue;
        };
        files.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    files.sort();
    files
}

#[test]
fn corpus_types_without_model_gaps() {
    let files = corpus_files();
    if files.is_empty() {
        eprintln!(
            "corpus not present at {}; skipping",
            corpus_root().display()
        );
        return;
    }
    let mut problems = Vec::new();
    let mut typed = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(f).unwrap();
        // Multi-document and malformed YAML are the loader's to report.
        let Ok(mut doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
            continue;
        };
        if doc.apply_merge().is_err() {
            continue;
        }
        let broken = BROKEN.iter().any(|(b, _)| *b == name);
        match App::typed(&doc, &|_| Location::file(&name)) {
            Ok(_) => {
                typed += 1;
                if broken {
                    problems.push(format!("{name}: listed as broken but types cleanly"));
                }
            }
            Err(e @ Error::UnknownKey { .. }) if !broken => {
                problems.push(format!("model gap? {e}"))
            }
            Err(e) if !broken && !text.contains('$') => problems.push(format!("{e}")),
            Err(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        typed * 100 >= files.len() * 90,
        "only {typed} of {} files typed",
        files.len()
    );
}
