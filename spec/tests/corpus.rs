//! Every Compose file of the shared corpus (`/work/shared/corpus/compose/*/*`) must load
//! as a document, or fail with an error that is genuinely the file's fault. The expected
//! failures are listed below with their reasons (and in `docs/compat.md`).
//! Skips with a message when the corpus directory is absent.

use std::path::{Path, PathBuf};

use berth_spec::{LoadOptions, load_document};

const CORPUS: &str = "/work/shared/corpus/compose";

/// Files that fail to load, and why it is the file's fault.
const EXPECTED_FAILURES: &[(&str, &str)] = &[(
    "random/Lockelamoree+NiNa__docker-compose.yml",
    "invalid YAML: a quoted scalar followed by more text (`- 'your_pdf_folder_path':/app/pdf`)",
)];

fn corpus_files() -> Option<Vec<PathBuf>> {
    let root = Path::new(CORPUS);
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
    file.strip_prefix(CORPUS)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Loads one corpus file. A `${VAR:?message}` the file requires is an error, as in
/// Compose; the user would set it, so it is set to a placeholder and the load retried
/// (counted as loading, and reported).
pub fn load_one(file: &Path) -> Result<(berth_spec::RawProject, Vec<String>), berth_spec::Error> {
    let mut required = Vec::new();
    loop {
        match load_with(file, &required) {
            Err(berth_spec::Error::RequiredVariable { variable, .. })
                if !required.contains(&variable) && required.len() < 20 =>
            {
                required.push(variable);
            }
            other => return other.map(|raw| (raw, required)),
        }
    }
}

fn load_with(
    file: &Path,
    required: &[String],
) -> Result<berth_spec::RawProject, berth_spec::Error> {
    let options = LoadOptions {
        environment: required
            .iter()
            .map(|v| (v.clone(), "corpus-placeholder".to_string()))
            .collect(),
        files: vec![file.to_path_buf()],
        working_dir: file.parent().unwrap().to_path_buf(),
        // The corpus holds single files: the env files and extended files they name are
        // not part of it. Env files are left for the model instead of being read.
        resolve_env_files: false,
        project_name: Some("corpus".into()),
        ..Default::default()
    };
    load_document(&options)
}

#[test]
fn corpus_loads() {
    let Some(files) = corpus_files() else {
        eprintln!("corpus directory {CORPUS} absent: skipping");
        return;
    };
    let mut loaded = 0;
    let mut with_required = Vec::new();
    let mut unexpected = Vec::new();
    let mut expected_seen = Vec::new();
    for file in &files {
        let name = relative(file);
        match load_one(file) {
            Ok((_, required)) => {
                loaded += 1;
                if !required.is_empty() {
                    with_required.push(format!("{name}: {}", required.join(", ")));
                }
                if EXPECTED_FAILURES.iter().any(|(n, _)| *n == name) {
                    unexpected.push(format!("{name}: listed as an expected failure but loads"));
                }
            }
            Err(err) => match EXPECTED_FAILURES.iter().find(|(n, _)| *n == name) {
                Some(_) => expected_seen.push(name),
                None => unexpected.push(format!("{name}: {err}")),
            },
        }
    }
    let ratio = loaded as f64 / files.len() as f64;
    eprintln!(
        "corpus: {loaded}/{} files load ({:.1}%)",
        files.len(),
        ratio * 100.0
    );
    eprintln!(
        "loaded once required variables are set:\n  {}",
        with_required.join("\n  ")
    );
    assert!(
        unexpected.is_empty(),
        "unexpected results:\n{}",
        unexpected.join("\n")
    );
    assert!(
        ratio >= 0.98,
        "only {:.1}% of the corpus loads",
        ratio * 100.0
    );
}
