//! `extends`: a service built on another one, from the same file (`extends: base` or
//! `{service: base}`) or another file (`{service: base, file: other.yaml}`), in chains.
//! The base is merged under the child with the ordinary merge rules. Relative paths of a
//! base from another directory are made absolute first. Cycles are errors naming the chain.
//!
//! Files other than the current one come from the caller's `load` function; this module
//! does no I/O itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml::Value;

use crate::error::Error;
use crate::merge::{merge_service, scalar_text};
use crate::path::PathSeg;
use crate::rebase::{absolute, rebase_service};
use crate::source_map::SourceMap;
use crate::yaml::Parsed;

/// Loads another file for `extends` (parsed and interpolated, `extends` not yet applied).
pub type LoadFn<'a> = dyn FnMut(&Path) -> Result<Parsed, Error> + 'a;

fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_string())
}

fn service_path(name: &str) -> Vec<PathSeg> {
    vec![key("services"), key(name)]
}

/// Longest `extends` chain followed: each link is a recursion.
pub const MAX_CHAIN: usize = 64;

/// Resolves every `extends` of the document of `file` in place.
pub fn apply_extends(parsed: &mut Parsed, file: &Path, load: &mut LoadFn<'_>) -> Result<(), Error> {
    let Some(Value::Mapping(services)) = parsed.value.get("services") else {
        return Ok(());
    };
    let names: Vec<String> = services
        .iter()
        .filter(|(_, s)| s.get("extends").is_some())
        .map(|(k, _)| scalar_text(k))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let mut resolver = Resolver {
        files: HashMap::new(),
        done: HashMap::new(),
        load,
    };
    resolver.add_file(file.to_path_buf(), parsed.clone());
    let mut resolved = Vec::with_capacity(names.len());
    for name in names {
        let mut stack = Vec::new();
        let (service, map) = resolver.resolve(file, &name, &mut stack)?;
        resolved.push((name, service, map));
    }
    let prefixes: Vec<Vec<PathSeg>> = resolved.iter().map(|(n, _, _)| service_path(n)).collect();
    parsed.source_map.remove_prefixes(&prefixes);
    for (name, service, map) in resolved {
        if let Some(Value::Mapping(services)) = parsed.value.get_mut("services") {
            services.insert(Value::String(name), service);
        }
        parsed.source_map.absorb(map);
    }
    Ok(())
}

/// A file taking part in `extends`, with its source map split by service once.
struct FileEntry {
    parsed: Parsed,
    /// The file's whole map, shared by the error paths of every service resolved in it.
    source_map: Arc<SourceMap>,
    service_maps: HashMap<String, SourceMap>,
}

struct Resolver<'a, 'l> {
    files: HashMap<PathBuf, FileEntry>,
    /// Services already resolved, so long chains are walked once.
    done: HashMap<(PathBuf, String), (Value, SourceMap)>,
    load: &'a mut LoadFn<'l>,
}

impl Resolver<'_, '_> {
    fn add_file(&mut self, file: PathBuf, parsed: Parsed) {
        let names: Vec<String> = match parsed.value.get("services") {
            Some(Value::Mapping(services)) => services.keys().map(scalar_text).collect(),
            _ => Vec::new(),
        };
        let service_maps = parsed.source_map.split_services(&names);
        let source_map = Arc::new(parsed.source_map.clone());
        self.files.insert(
            file,
            FileEntry {
                parsed,
                source_map,
                service_maps,
            },
        );
    }

    fn resolve(
        &mut self,
        file: &Path,
        name: &str,
        stack: &mut Vec<(PathBuf, String)>,
    ) -> Result<(Value, SourceMap), Error> {
        let memo_key = (file.to_path_buf(), name.to_string());
        if let Some(done) = self.done.get(&memo_key) {
            return Ok(done.clone());
        }
        let entry = &self.files[file];
        let path = service_path(name);
        let service = entry
            .parsed
            .value
            .get("services")
            .and_then(|s| s.get(name))
            .cloned()
            .unwrap_or(Value::Null);
        let map = entry
            .service_maps
            .get(name)
            .cloned()
            .unwrap_or_else(|| SourceMap::new(file));
        let Some(extends) = service.get("extends") else {
            return Ok((service, map));
        };
        let mut extends_path = path.clone();
        extends_path.push(key("extends"));
        // Located only when an error needs it (a lookup indexes the file).
        let source_map = entry.source_map.clone();
        let invalid = |message: String| Error::Invalid {
            location: source_map.locate(&extends_path),
            message,
        };
        let (base_name, base_file) = match extends {
            Value::String(s) => (s.clone(), None),
            Value::Mapping(m) => {
                let base = m.get("service").and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!("services.{name}.extends: `service` is required"))
                })?;
                let other = m.get("file").and_then(Value::as_str).map(|f| {
                    let dir = file.parent().unwrap_or(Path::new("/"));
                    PathBuf::from(absolute(dir, f))
                });
                (base.to_string(), other)
            }
            _ => {
                return Err(invalid(format!(
                    "services.{name}.extends must be a service name or a mapping"
                )));
            }
        };
        let target = base_file.clone().unwrap_or_else(|| file.to_path_buf());
        stack.push((file.to_path_buf(), name.to_string()));
        if stack.iter().any(|(f, n)| *f == target && *n == base_name) {
            let mut chain: Vec<String> = stack.iter().map(|(_, n)| n.clone()).collect();
            chain.push(base_name.clone());
            return Err(invalid(format!("circular extends: {}", chain.join(" -> "))));
        }
        if stack.len() > MAX_CHAIN {
            return Err(invalid(format!(
                "services.{name}.extends: chain longer than {MAX_CHAIN} services"
            )));
        }
        if !self.files.contains_key(&target) {
            let loaded = (self.load)(&target).map_err(|e| match e {
                Error::Io { path, source } => invalid(format!(
                    "services.{name}.extends: cannot read {}: {source}",
                    path.display()
                )),
                other => other,
            })?;
            self.add_file(target.clone(), loaded);
        }
        let exists = self.files[&target]
            .parsed
            .value
            .get("services")
            .and_then(|s| s.get(base_name.as_str()))
            .is_some();
        if !exists {
            return Err(invalid(format!(
                "services.{name}.extends: no service {base_name:?} in {}",
                target.display()
            )));
        }
        let (mut base, mut base_map) = self.resolve(&target, &base_name, stack)?;
        stack.pop();
        let target_dir = target.parent().unwrap_or(Path::new("/"));
        if base_file.is_some() && Some(target_dir) != file.parent() {
            rebase_service(&mut base, target_dir);
        }
        base_map.apply_moves(&[(service_path(&base_name), path.clone())]);
        let mut child = service;
        if let Value::Mapping(m) = &mut child {
            m.shift_remove("extends");
        }
        let merged = merge_service(name, base, child);
        merged.trace.apply(&mut base_map, map);
        self.done
            .insert(memo_key, (merged.value.clone(), base_map.clone()));
        Ok((merged.value, base_map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn load_files(files: &[(&str, &str)]) -> impl FnMut(&Path) -> Result<Parsed, Error> + use<> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        move |path: &Path| match files.get(path) {
            Some(text) => parse(text, path),
            None => Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }

    fn run(main: &str, others: &[(&str, &str)]) -> Result<Parsed, Error> {
        let file = Path::new("/p/compose.yaml");
        let mut parsed = parse(main, file)?;
        let mut load = load_files(others);
        apply_extends(&mut parsed, file, &mut load)?;
        Ok(parsed)
    }

    fn y(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn same_file_and_chain() {
        let p = run(
            "services:\n  base: {image: a, environment: {A: '1'}, ports: ['80:80']}\n  mid: {extends: base, environment: {B: '2'}}\n  web: {extends: {service: mid}, image: b, ports: ['81:81']}\n",
            &[],
        )
        .unwrap();
        let web = &p.value["services"]["web"];
        assert_eq!(
            web,
            &y("{image: b, environment: {A: '1', B: '2'}, ports: ['80:80', '81:81']}")
        );
        assert!(p.value["services"]["mid"].get("extends").is_none());
        // `image` of web points at web's own line, `environment.A` at base's.
        let loc = p
            .source_map
            .locate(&[key("services"), key("web"), key("image")]);
        assert_eq!(loc.line, 4);
        let loc = p
            .source_map
            .locate(&[key("services"), key("web"), key("environment"), key("A")]);
        assert_eq!(loc.line, 2);
    }

    #[test]
    fn other_file_rebases_paths() {
        let p = run(
            "services:\n  web: {extends: {file: ../common/base.yaml, service: app}, command: [run]}\n",
            &[(
                "/common/base.yaml",
                "services:\n  app: {build: ./src, env_file: app.env, volumes: ['./data:/data'], command: [old]}\n",
            )],
        )
        .unwrap();
        assert_eq!(
            p.value["services"]["web"],
            y(
                "{build: /common/src, env_file: /common/app.env, volumes: ['/common/data:/data'], command: [run]}"
            )
        );
        let loc = p
            .source_map
            .locate(&[key("services"), key("web"), key("build")]);
        assert_eq!(loc.file, Path::new("/common/base.yaml"));
    }

    #[test]
    fn cycles_are_errors() {
        let err = run(
            "services:\n  a: {extends: b}\n  b: {extends: c}\n  c: {extends: a}\n",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("circular extends: a -> b -> c -> a"),
            "{err}"
        );
        assert!(err.to_string().starts_with("/p/compose.yaml:4:"), "{err}");
        let err = run("services:\n  a: {extends: a}\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("circular extends: a -> a"),
            "{err}"
        );
    }

    #[test]
    fn long_chains_are_bounded_and_walked_once() {
        let mut text = String::from("services:\n  s0: {image: x, environment: {A: '0'}}\n");
        for i in 1..=40 {
            text.push_str(&format!(
                "  s{i}: {{extends: s{}, labels: {{l{i}: v}}}}\n",
                i - 1
            ));
        }
        let p = run(&text, &[]).unwrap();
        let last = &p.value["services"]["s40"];
        assert_eq!(last["image"], Value::from("x"));
        assert_eq!(last["labels"].as_mapping().unwrap().len(), 40);
        // Defined in chain order, each link reuses the one before: no deep recursion,
        // and 5000 links resolve in linear time.
        let mut text = String::from("services:\n  s0: {image: x}\n");
        for i in 1..=5000 {
            text.push_str(&format!("  s{i}: {{extends: s{}}}\n", i - 1));
        }
        let p = run(&text, &[]).map_err(|e| e.to_string()).unwrap();
        assert_eq!(p.value["services"]["s5000"]["image"], Value::from("x"));
        // Defined the other way round, the first service would recurse 5000 deep: bounded.
        let mut text = String::from("services:\n");
        for i in (1..=5000).rev() {
            text.push_str(&format!("  s{i}: {{extends: s{}}}\n", i - 1));
        }
        text.push_str("  s0: {image: x}\n");
        let Err(err) = run(&text, &[]) else {
            panic!("a 5000-link chain defined backwards must be rejected")
        };
        assert!(err.to_string().contains("chain longer than 64"), "{err}");
    }

    #[test]
    fn missing_base_and_file() {
        let err = run("services:\n  a: {extends: nope}\n", &[]).unwrap_err();
        assert!(err.to_string().contains("no service \"nope\""), "{err}");
        let err = run(
            "services:\n  a: {extends: {service: x, file: gone.yaml}}\n",
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("cannot read /p/gone.yaml"),
            "{err}"
        );
    }
}
