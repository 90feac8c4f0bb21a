//! Top-level `include`: other Compose projects pulled into this one. Each entry is a path
//! string or `{path: string|list, project_directory, env_file: string|list}`; the included
//! files are loaded (by the loader, recursively, each interpolated with its own
//! environment) and their resources added here. A resource defined both here and in an
//! included file is an error naming both files, unless the two definitions are identical.
//! This module parses entries and merges results; it reads no files.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::error::Error;
use crate::merge::scalar_text;
use crate::path::PathSeg;
use crate::rebase::absolute;
use crate::yaml::Parsed;

/// One `include` entry with its paths made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct IncludeEntry {
    pub paths: Vec<PathBuf>,
    pub project_directory: PathBuf,
    /// Explicit `env_file`s; empty means the default `.env` of `project_directory`.
    pub env_files: Vec<PathBuf>,
    /// Where the entry is written, for errors.
    pub index: usize,
}

const SECTIONS: [&str; 6] = [
    "services", "networks", "volumes", "secrets", "configs", "models",
];

fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Sequence(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

/// Reads the `include` entries of the document of `file`.
pub fn entries(parsed: &Parsed, file: &Path) -> Result<Vec<IncludeEntry>, Error> {
    let Some(include) = parsed.value.get("include") else {
        return Ok(Vec::new());
    };
    let dir = file.parent().unwrap_or(Path::new("/"));
    let items = match include {
        Value::Sequence(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    };
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = vec![PathSeg::Key("include".into()), PathSeg::Index(index)];
        let invalid = |message: &str| Error::Invalid {
            location: parsed.source_map.locate(&at),
            message: format!("include[{index}]: {message}"),
        };
        let (paths, project_directory, env_files) = match item {
            Value::String(p) => (vec![p.clone()], None, Vec::new()),
            Value::Mapping(m) => {
                let paths = m
                    .get("path")
                    .and_then(strings)
                    .ok_or_else(|| invalid("`path` must be a string or a list of strings"))?;
                let project_directory = match m.get("project_directory") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(invalid("`project_directory` must be a string")),
                };
                let env_files = match m.get("env_file") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(v) => strings(v)
                        .ok_or_else(|| invalid("`env_file` must be a string or a list"))?,
                };
                (paths, project_directory, env_files)
            }
            _ => return Err(invalid("must be a path or a mapping with `path`")),
        };
        if paths.is_empty() {
            return Err(invalid("`path` is empty"));
        }
        let paths: Vec<PathBuf> = paths
            .iter()
            .map(|p| PathBuf::from(absolute(dir, p)))
            .collect();
        let project_directory = match project_directory {
            Some(d) => PathBuf::from(absolute(dir, &d)),
            None => paths[0].parent().unwrap_or(Path::new("/")).to_path_buf(),
        };
        let env_files = env_files
            .iter()
            .map(|p| PathBuf::from(absolute(dir, p)))
            .collect();
        out.push(IncludeEntry {
            paths,
            project_directory,
            env_files,
            index,
        });
    }
    Ok(out)
}

/// Adds the resources of an included document (already loaded and rebased) to `parsed`.
pub fn add_included(
    parsed: &mut Parsed,
    file: &Path,
    included: Parsed,
    included_file: &Path,
) -> Result<(), Error> {
    let Value::Mapping(target) = &mut parsed.value else {
        return Ok(());
    };
    let Value::Mapping(source) = included.value else {
        return Ok(());
    };
    for section in SECTIONS {
        let Some(Value::Mapping(items)) = source.get(section) else {
            continue;
        };
        let entry = target
            .entry(Value::String(section.into()))
            .or_insert_with(|| Value::Mapping(Default::default()));
        if entry.is_null() {
            *entry = Value::Mapping(Default::default());
        }
        let Value::Mapping(existing) = entry else {
            continue;
        };
        for (name, definition) in items {
            let path = vec![
                PathSeg::Key(section.into()),
                PathSeg::Key(scalar_text(name)),
            ];
            match existing.get(name) {
                Some(mine) if mine == definition => {}
                Some(_) => {
                    return Err(Error::Invalid {
                        location: parsed.source_map.locate(&path),
                        message: format!(
                            "{section}.{} is defined in {} and also in the included {}",
                            scalar_text(name),
                            file.display(),
                            included_file.display()
                        ),
                    });
                }
                None => {
                    existing.insert(name.clone(), definition.clone());
                    parsed
                        .source_map
                        .copy_prefix_from(&included.source_map, &path, &path);
                }
            }
        }
    }
    Ok(())
}

/// Drops the `include` key once its entries are applied.
pub fn remove_include_key(parsed: &mut Parsed) {
    if let Value::Mapping(m) = &mut parsed.value {
        m.shift_remove("include");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    #[test]
    fn entry_forms() {
        let p = parse(
            "include:\n  - a/compose.yaml\n  - path: [../b.yaml, ../b.override.yaml]\n    project_directory: ../bdir\n    env_file: [x.env]\n",
            Path::new("/p/compose.yaml"),
        )
        .unwrap();
        let e = entries(&p, Path::new("/p/compose.yaml")).unwrap();
        assert_eq!(e[0].paths, vec![PathBuf::from("/p/a/compose.yaml")]);
        assert_eq!(e[0].project_directory, PathBuf::from("/p/a"));
        assert!(e[0].env_files.is_empty());
        assert_eq!(
            e[1].paths,
            vec![PathBuf::from("/b.yaml"), PathBuf::from("/b.override.yaml")]
        );
        assert_eq!(e[1].project_directory, PathBuf::from("/bdir"));
        assert_eq!(e[1].env_files, vec![PathBuf::from("/p/x.env")]);
        let p = parse(
            "include:\n  - {project_directory: x}\n",
            Path::new("/p/c.yaml"),
        )
        .unwrap();
        let err = entries(&p, Path::new("/p/c.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("include[0]: `path` must be"),
            "{err}"
        );
    }

    #[test]
    fn conflicts_name_both_files() {
        let mut main = parse("services:\n  web: {image: a}\n", Path::new("/p/c.yaml")).unwrap();
        let inc = parse(
            "services:\n  web: {image: b}\n  db: {image: pg}\n",
            Path::new("/q/i.yaml"),
        )
        .unwrap();
        let err = add_included(
            &mut main,
            Path::new("/p/c.yaml"),
            inc,
            Path::new("/q/i.yaml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/p/c.yaml:2:3: services.web is defined in /p/c.yaml and also in the included /q/i.yaml"
        );
        let mut main = parse("services:\n  web: {image: a}\n", Path::new("/p/c.yaml")).unwrap();
        let inc = parse(
            "services:\n  web: {image: a}\n  db: {image: pg}\nvolumes: {v: {}}\n",
            Path::new("/q/i.yaml"),
        )
        .unwrap();
        add_included(
            &mut main,
            Path::new("/p/c.yaml"),
            inc,
            Path::new("/q/i.yaml"),
        )
        .unwrap();
        assert!(main.value["services"].get("db").is_some());
        assert!(main.value["volumes"].get("v").is_some());
        let loc = main
            .source_map
            .locate(&[PathSeg::Key("services".into()), PathSeg::Key("db".into())]);
        assert_eq!(loc.file, Path::new("/q/i.yaml"));
    }
}
