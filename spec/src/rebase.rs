//! Making the relative paths of a service absolute, for definitions that come from a file
//! in another directory (`extends: {file: ../x.yaml}`, `include`). Relative paths in a
//! Compose file are relative to that file's project directory; once its service is moved
//! into another project they would point elsewhere, so they are fixed up then.
//! Pure: lexical path arithmetic only, the file system is never consulted.

use std::path::{Component, Path, PathBuf};

use serde_yaml::Value;

/// `base.join(rel)` with `.` and `..` resolved lexically; absolute `rel` stays as is.
pub fn absolute(base: &Path, rel: &str) -> String {
    let joined = base.join(rel);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.to_string_lossy().into_owned()
}

/// Is this a remote build context rather than a directory?
fn is_remote(context: &str) -> bool {
    context.contains("://") || context.starts_with("git@") || context.starts_with("github.com/")
}

/// Is this the source of a bind mount in the short volume syntax (not a named volume)?
fn is_local_source(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}

fn rebase_str(value: &mut Value, dir: &Path) {
    if let Value::String(s) = value
        && !s.starts_with('~')
        && !is_remote(s)
    {
        *s = absolute(dir, s);
    }
}

fn rebase_files(value: &mut Value, dir: &Path) {
    match value {
        Value::String(_) => rebase_str(value, dir),
        Value::Sequence(items) => {
            for item in items {
                match item {
                    Value::Mapping(m) => {
                        if let Some(p) = m.get_mut("path") {
                            rebase_str(p, dir);
                        }
                    }
                    other => rebase_str(other, dir),
                }
            }
        }
        _ => {}
    }
}

/// Rebases the relative paths of one service definition against `dir`.
pub fn rebase_service(service: &mut Value, dir: &Path) {
    let Value::Mapping(service) = service else {
        return;
    };
    match service.get_mut("build") {
        Some(build @ Value::String(_)) => rebase_str(build, dir),
        Some(Value::Mapping(build)) => match build.get_mut("context") {
            Some(context) => rebase_str(context, dir),
            None => {
                build.insert("context".into(), Value::String(absolute(dir, ".")));
            }
        },
        _ => {}
    }
    for key in ["env_file", "label_file"] {
        if let Some(v) = service.get_mut(key) {
            rebase_files(v, dir);
        }
    }
    if let Some(Value::Mapping(extends)) = service.get_mut("extends")
        && let Some(file) = extends.get_mut("file")
    {
        rebase_str(file, dir);
    }
    if let Some(Value::Sequence(volumes)) = service.get_mut("volumes") {
        for volume in volumes {
            match volume {
                Value::String(spec) => {
                    if let Some((source, rest)) = spec.split_once(':')
                        && is_local_source(source)
                        && !source.starts_with('~')
                    {
                        *spec = format!("{}:{rest}", absolute(dir, source));
                    }
                }
                Value::Mapping(m) => {
                    let is_bind = m.get("type").and_then(Value::as_str) == Some("bind");
                    if is_bind && let Some(source) = m.get_mut("source") {
                        rebase_str(source, dir);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Rebases a whole included document: every service, and the `file` of top-level
/// secrets and configs.
pub fn rebase_document(document: &mut Value, dir: &Path) {
    if let Some(Value::Mapping(services)) = document.get_mut("services") {
        for service in services.values_mut() {
            rebase_service(service, dir);
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(Value::Mapping(items)) = document.get_mut(section) {
            for item in items.values_mut() {
                if let Some(file) = item.get_mut("file") {
                    rebase_str(file, dir);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebases_service_paths() {
        let mut s: Value = serde_yaml::from_str(
            "build: ./app\nenv_file: [a.env, {path: ../b.env, required: false}]\nvolumes: ['./data:/data:ro', 'named:/n', '/abs:/abs', '~/x:/x', {type: bind, source: ../src, target: /s}, {type: volume, source: v, target: /v}]\n",
        )
        .unwrap();
        rebase_service(&mut s, Path::new("/p/sub"));
        let want: Value = serde_yaml::from_str(
            "build: /p/sub/app\nenv_file: [/p/sub/a.env, {path: /p/b.env, required: false}]\nvolumes: ['/p/sub/data:/data:ro', 'named:/n', '/abs:/abs', '~/x:/x', {type: bind, source: /p/src, target: /s}, {type: volume, source: v, target: /v}]\n",
        )
        .unwrap();
        assert_eq!(s, want);
        let mut s: Value =
            serde_yaml::from_str("build: {context: 'https://github.com/x/y.git'}").unwrap();
        rebase_service(&mut s, Path::new("/p"));
        assert_eq!(
            s["build"]["context"],
            Value::from("https://github.com/x/y.git")
        );
        assert_eq!(absolute(Path::new("/a/b"), "../../../c"), "/c");
    }
}
