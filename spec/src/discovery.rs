//! Which Compose files a project is made of when no `-f` is given, and the project's name.
//!
//! Default files are looked for in the working directory, then its parents, as Compose
//! does: the first of `compose.yaml`, `compose.yml`, `docker-compose.yml`,
//! `docker-compose.yaml` (a warning when several exist), plus the first override file
//! (`compose.override.yml`, `compose.override.yaml`, `docker-compose.override.yml`,
//! `docker-compose.override.yaml`) next to it. Only existence checks touch the file system here.

use std::path::{Path, PathBuf};

use crate::error::{Error, Warning};

/// In Compose's order of preference.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// Finds the default Compose file (and its override) from `dir` upwards.
pub fn find_default_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Warning>), Error> {
    let mut warnings = Vec::new();
    for candidate_dir in dir.ancestors() {
        let Some(main) = first_existing(candidate_dir, &DEFAULT_FILES, &mut warnings) else {
            continue;
        };
        let mut files = vec![main];
        if let Some(over) = first_existing(candidate_dir, &OVERRIDE_FILES, &mut warnings) {
            files.push(over);
        }
        return Ok((files, warnings));
    }
    Err(Error::Project(format!(
        "no configuration file provided: none of {} found in {} or its parents",
        DEFAULT_FILES.join(", "),
        dir.display()
    )))
}

fn first_existing(dir: &Path, names: &[&str], warnings: &mut Vec<Warning>) -> Option<PathBuf> {
    let found: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    if found.len() > 1 {
        let list: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        warnings.push(Warning {
            location: None,
            message: format!(
                "found multiple config files with supported names: {}; using {}",
                list.join(", "),
                list[0]
            ),
        });
    }
    found.into_iter().next()
}

/// Compose's normalization of a name derived from a directory: lowercase, keep only
/// `[a-z0-9_-]`, drop leading `_` and `-`.
pub fn normalize_project_name(name: &str) -> String {
    let lowered = name.to_lowercase();
    let kept: String = lowered
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// Checks a name given explicitly (`-p`, `COMPOSE_PROJECT_NAME`, top-level `name`).
pub fn validate_project_name(name: &str, source: &str) -> Result<(), Error> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Project(format!(
            "invalid project name {name:?} (from {source}): it must contain only lowercase letters, \
             digits, dashes and underscores, and start with a letter or digit"
        )))
    }
}

/// The project name: `-p`, else `COMPOSE_PROJECT_NAME`, else the top-level `name`, else
/// the project directory's name (normalized).
pub fn project_name(
    flag: Option<&str>,
    env: Option<&str>,
    top_level: Option<&str>,
    project_dir: &Path,
) -> Result<String, Error> {
    for (value, source) in [
        (flag, "-p"),
        (env, "COMPOSE_PROJECT_NAME"),
        (top_level, "the top-level `name`"),
    ] {
        if let Some(name) = value.filter(|v| !v.is_empty()) {
            validate_project_name(name, source)?;
            return Ok(name.to_string());
        }
    }
    let base = project_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = normalize_project_name(&base);
    if name.is_empty() {
        return Err(Error::Project(format!(
            "cannot derive a project name from the directory {}; use -p or a top-level `name`",
            project_dir.display()
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_default_and_override_in_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("docker-compose.yml"), "services: {}\n").unwrap();
        std::fs::write(root.join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::write(root.join("docker-compose.override.yml"), "services: {}\n").unwrap();
        let sub = root.join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        let (files, warnings) = find_default_files(&sub).unwrap();
        assert_eq!(
            files,
            vec![
                root.join("compose.yaml"),
                root.join("docker-compose.override.yml")
            ]
        );
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].message.contains("multiple config files"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn nothing_found_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        // The temp dir's parents (/tmp, /) hold no Compose file on a clean machine; if one
        // does, the error case cannot be observed and the assertion below is skipped.
        match find_default_files(tmp.path()) {
            Err(err) => assert!(err.to_string().contains("no configuration file provided")),
            Ok((files, _)) => assert!(!files[0].starts_with(tmp.path())),
        }
    }

    #[test]
    fn names() {
        assert_eq!(normalize_project_name("My Project.v2"), "myprojectv2");
        assert_eq!(normalize_project_name("__-Foo_bar-"), "foo_bar-");
        assert_eq!(normalize_project_name("ÄÖ"), "");
        assert_eq!(
            project_name(Some("p1"), Some("env"), Some("top"), Path::new("/x/dir")).unwrap(),
            "p1"
        );
        assert_eq!(
            project_name(None, Some("env"), Some("top"), Path::new("/x/dir")).unwrap(),
            "env"
        );
        assert_eq!(
            project_name(None, Some(""), Some("top"), Path::new("/x/dir")).unwrap(),
            "top"
        );
        assert_eq!(
            project_name(None, None, None, Path::new("/x/My_Dir")).unwrap(),
            "my_dir"
        );
        let err = project_name(Some("Bad Name"), None, None, Path::new("/x")).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid project name \"Bad Name\" (from -p)"),
            "{err}"
        );
        assert!(project_name(None, None, Some("-x"), Path::new("/x")).is_err());
        assert!(project_name(None, None, None, Path::new("/")).is_err());
    }
}
