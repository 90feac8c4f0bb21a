//! The loader entry: from options (flags and the injected process environment) to one
//! merged Compose document, as Docker Compose builds it.
//!
//! Order, per Compose: the environment (`--env-file`s or the default `.env`, the process
//! environment winning); the files (`-f`, else `COMPOSE_FILE`, else discovery); for each
//! file: parse, interpolate with the environment, apply `include`, apply `extends`; merge
//! the files in order; the project name; profiles; `env_file` folded into `environment`.
//! This is the only module that reads files (and stdin for `-f -`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

use crate::discovery;
use crate::env::{self, EnvMap};
use crate::error::{Error, Location, Warning};
use crate::extends;
use crate::include;
use crate::interpolate::{InterpolateError, interpolate_value};
use crate::merge::{self, scalar_text};
use crate::model::App;
use crate::path::PathSeg;
use crate::profiles;
use crate::rebase::{absolute, rebase_document};
use crate::source_map::SourceMap;
use crate::yaml::{self, Parsed};

/// What to load. `environment` is the process environment, passed in so the loader stays
/// testable; `working_dir` stands for the current directory.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `-f` files in order (`-` is stdin); empty: `COMPOSE_FILE` or discovery.
    pub files: Vec<PathBuf>,
    pub project_name: Option<String>,
    pub project_directory: Option<PathBuf>,
    /// `--env-file`s; when given, the default `.env` is not read.
    pub env_files: Vec<PathBuf>,
    /// `--profile`s; empty: `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    /// Services named on the command line: enabled whatever their profiles.
    pub services: Vec<String>,
    pub environment: IndexMap<String, String>,
    pub working_dir: PathBuf,
    pub interpolate: bool,
    /// Fold each service's `env_file` into its `environment` (reading those files).
    pub resolve_env_files: bool,
    /// The content of stdin for `-f -`; `None` reads the real stdin.
    pub stdin: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            files: Vec::new(),
            project_name: None,
            project_directory: None,
            env_files: Vec::new(),
            profiles: Vec::new(),
            services: Vec::new(),
            environment: IndexMap::new(),
            working_dir: PathBuf::new(),
            interpolate: true,
            resolve_env_files: true,
            stdin: None,
        }
    }
}

impl LoadOptions {
    /// Options for the real process: its environment and current directory.
    pub fn from_process() -> Self {
        LoadOptions {
            environment: std::env::vars().collect(),
            working_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            ..Default::default()
        }
    }
}

/// The merged, untyped project: what the typed model is built from.
#[derive(Debug, Clone)]
pub struct RawProject {
    pub name: String,
    pub project_dir: PathBuf,
    /// The project environment: env files overlaid by the process environment.
    pub environment: EnvMap,
    pub document: Value,
    pub source_map: SourceMap,
    pub warnings: Vec<Warning>,
    pub files: Vec<PathBuf>,
    /// Services left out because none of their profiles is active.
    pub disabled_services: Mapping,
    /// Every profile any service mentions.
    pub all_profiles: Vec<String>,
    /// The active profiles.
    pub active_profiles: Vec<String>,
}

/// A loaded project: the canonical `App` and what the CLI shows besides it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub app: App,
    pub warnings: Vec<Warning>,
    pub files: Vec<PathBuf>,
    pub environment: EnvMap,
    /// Services left out because none of their profiles is active.
    pub disabled_services: Mapping,
    /// Every profile any service mentions.
    pub all_profiles: Vec<String>,
}

/// Loads, types, normalizes and validates the project.
pub fn load(options: &LoadOptions) -> Result<Loaded, Error> {
    let RawProject {
        name,
        project_dir,
        environment,
        document,
        source_map,
        mut warnings,
        files,
        disabled_services,
        all_profiles,
        active_profiles: _,
    } = load_document(options)?;
    let locate = |path: &[PathSeg]| source_map.locate(path);
    let (app, model_warnings) =
        App::from_document(&name, &project_dir, &environment, document, &locate)?;
    warnings.extend(model_warnings);
    Ok(Loaded {
        app,
        warnings,
        files,
        environment,
        disabled_services,
        all_profiles,
    })
}

const STDIN: &str = "-";

struct Session<'a> {
    options: &'a LoadOptions,
    warnings: Vec<Warning>,
    warned: HashSet<String>,
    include_stack: Vec<PathBuf>,
    stdin: Option<String>,
}

/// Loads the project into one merged document.
pub fn load_document(options: &LoadOptions) -> Result<RawProject, Error> {
    let working_dir = if options.working_dir.as_os_str().is_empty() {
        std::env::current_dir().map_err(|source| Error::Io {
            path: PathBuf::from("."),
            source,
        })?
    } else {
        options.working_dir.clone()
    };
    let mut session = Session {
        options,
        warnings: Vec::new(),
        warned: HashSet::new(),
        include_stack: Vec::new(),
        stdin: options.stdin.clone(),
    };
    let resolve = |p: &Path| PathBuf::from(absolute(&working_dir, &p.to_string_lossy()));

    // Where the default `.env` is looked for before the files are known.
    let first_flag_file = options.files.iter().find(|f| f.as_os_str() != STDIN);
    let env_dir = match (&options.project_directory, first_flag_file) {
        (Some(dir), _) => resolve(dir),
        (None, Some(file)) => resolve(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        (None, None) => working_dir.clone(),
    };
    let env_files: Vec<PathBuf> = options.env_files.iter().map(|f| resolve(f)).collect();
    let mut environment = project_environment(&options.environment, &env_files, &env_dir)?;

    let mut files: Vec<PathBuf> = if !options.files.is_empty() {
        options
            .files
            .iter()
            .map(|f| {
                if f.as_os_str() == STDIN {
                    f.clone()
                } else {
                    resolve(f)
                }
            })
            .collect()
    } else if let Some(list) = environment.get("COMPOSE_FILE").filter(|l| !l.is_empty()) {
        let separator = environment
            .get("COMPOSE_PATH_SEPARATOR")
            .cloned()
            .unwrap_or_else(|| ":".into());
        list.split(separator.as_str())
            .filter(|s| !s.is_empty())
            .map(|s| resolve(Path::new(s)))
            .collect()
    } else {
        let (found, warnings) = discovery::find_default_files(&working_dir)?;
        session.warnings.extend(warnings);
        found
    };
    let project_dir = match &options.project_directory {
        Some(dir) => resolve(dir),
        None => files
            .iter()
            .find(|f| f.as_os_str() != STDIN)
            .and_then(|f| f.parent())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| working_dir.clone()),
    };
    // As Compose does once the files are known: the project directory's `.env` (when it
    // is not the one already read) is layered on top, the process environment still
    // winning.
    if options.env_files.is_empty() && project_dir != env_dir {
        let second = project_environment(&options.environment, &[], &project_dir)?;
        environment.extend(second);
    }

    let mut merged: Option<Parsed> = None;
    for file in &files {
        let parsed = session.load_file(file, &environment)?;
        merged = Some(match merged {
            None => Parsed {
                value: merge::resolve_tags(parsed.value).unwrap_or(Value::Mapping(Mapping::new())),
                source_map: parsed.source_map,
            },
            Some(mut acc) => {
                let result = merge::merge_documents(acc.value, parsed.value);
                result.trace.apply(&mut acc.source_map, parsed.source_map);
                Parsed {
                    value: result.value,
                    source_map: acc.source_map,
                }
            }
        });
    }
    let Parsed {
        value: mut document,
        mut source_map,
    } = merged.ok_or_else(|| Error::Project("no Compose file given".into()))?;
    let unique = merge::enforce_unique(&mut document);
    let nothing_later = SourceMap::new(source_map.default_file().to_path_buf());
    unique.apply(&mut source_map, nothing_later);
    if files.iter().any(|f| f.as_os_str() == STDIN) {
        files.retain(|f| f.as_os_str() != STDIN);
    }

    let top_name = document.get("name").map(scalar_text);
    let name = discovery::project_name(
        options.project_name.as_deref(),
        environment.get("COMPOSE_PROJECT_NAME").map(String::as_str),
        top_name.as_deref(),
        &project_dir,
    )?;
    if let Value::Mapping(m) = &mut document {
        m.insert("name".into(), Value::String(name.clone()));
    }

    let active_profiles: Vec<String> = if !options.profiles.is_empty() {
        options.profiles.clone()
    } else {
        environment
            .get("COMPOSE_PROFILES")
            .map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let all_profiles = profiles::all_profiles(&document);
    let disabled_services =
        profiles::apply_profiles(&mut document, &active_profiles, &options.services)?;

    if options.resolve_env_files {
        fold_env_files(&mut document, &source_map, &project_dir, &environment)?;
    }

    Ok(RawProject {
        name,
        project_dir,
        environment,
        document,
        source_map,
        warnings: session.warnings,
        files,
        disabled_services,
        all_profiles,
        active_profiles,
    })
}

/// The project environment: the env files (each may use the variables of the ones before
/// and of the process), then the process environment on top.
pub fn project_environment(
    process: &IndexMap<String, String>,
    env_files: &[PathBuf],
    env_dir: &Path,
) -> Result<EnvMap, Error> {
    let mut from_files = EnvMap::new();
    let read = |path: &Path, from_files: &mut EnvMap| -> Result<(), Error> {
        let known = from_files.clone();
        let outer = |name: &str| known.get(name).or_else(|| process.get(name)).cloned();
        from_files.extend(env::read_env_file(path, false, &outer)?);
        Ok(())
    };
    if env_files.is_empty() {
        let default = env_dir.join(".env");
        if default.is_file() {
            read(&default, &mut from_files)?;
        }
    } else {
        for file in env_files {
            read(file, &mut from_files)?;
        }
    }
    let mut environment = from_files;
    for (k, v) in process {
        environment.insert(k.clone(), v.clone());
    }
    Ok(environment)
}

impl Session<'_> {
    fn read(&mut self, path: &Path) -> Result<String, Error> {
        if path.as_os_str() == STDIN {
            if let Some(text) = &self.stdin {
                return Ok(text.clone());
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            self.stdin = Some(text.clone());
            return Ok(text);
        }
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        String::from_utf8(bytes).map_err(|e| Error::Syntax {
            location: Location::file(path),
            message: format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        })
    }

    /// Parse and interpolate one file (no `include`, no `extends`).
    fn parse_file(&mut self, path: &Path, env: &EnvMap) -> Result<Parsed, Error> {
        let text = self.read(path)?;
        let mut parsed = yaml::parse(&text, path)?;
        if self.options.interpolate {
            self.interpolate(&mut parsed, env)?;
        }
        if let Value::Mapping(m) = &mut parsed.value
            && m.shift_remove("version").is_some()
        {
            self.warnings.push(Warning {
                location: Some(parsed.source_map.locate(&[PathSeg::Key("version".into())])),
                message: "the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion".into(),
            });
        }
        Ok(parsed)
    }

    /// One file with its `include`s and `extends` applied.
    fn load_file(&mut self, path: &Path, env: &EnvMap) -> Result<Parsed, Error> {
        if self.include_stack.iter().any(|p| p == path) {
            let mut chain: Vec<String> = self
                .include_stack
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            chain.push(path.display().to_string());
            return Err(Error::Project(format!(
                "include cycle: {}",
                chain.join(" -> ")
            )));
        }
        let mut parsed = self.parse_file(path, env)?;
        self.include_stack.push(path.to_path_buf());
        let result = self.apply_includes(&mut parsed, path, env);
        self.include_stack.pop();
        result?;
        let mut load = |other: &Path| self.parse_file(other, env);
        extends::apply_extends(&mut parsed, path, &mut load)?;
        Ok(parsed)
    }

    fn apply_includes(
        &mut self,
        parsed: &mut Parsed,
        path: &Path,
        env: &EnvMap,
    ) -> Result<(), Error> {
        let entries = include::entries(parsed, path)?;
        for entry in entries {
            // The included project's env files, under the including environment.
            // The including environment is both the lookup of the env files'
            // interpolation and the winner over their values.
            let included_env =
                project_environment(env, &entry.env_files, &entry.project_directory)?;
            let mut combined: Option<Parsed> = None;
            for file in &entry.paths {
                let loaded = self.load_file(file, &included_env).map_err(|e| match e {
                    // A missing included file is the including file's error, at the entry.
                    Error::Io {
                        path: missing,
                        source,
                    } if missing == *file => Error::Invalid {
                        location: parsed
                            .source_map
                            .locate(&[PathSeg::Key("include".into()), PathSeg::Index(entry.index)]),
                        message: format!(
                            "include[{}]: cannot read {}: {source}",
                            entry.index,
                            missing.display()
                        ),
                    },
                    other => other,
                })?;
                combined = Some(match combined {
                    None => Parsed {
                        value: merge::resolve_tags(loaded.value).unwrap_or(Value::Null),
                        source_map: loaded.source_map,
                    },
                    Some(mut acc) => {
                        let m = merge::merge_documents(acc.value, loaded.value);
                        m.trace.apply(&mut acc.source_map, loaded.source_map);
                        Parsed {
                            value: m.value,
                            source_map: acc.source_map,
                        }
                    }
                });
            }
            if let Some(mut included) = combined {
                rebase_document(&mut included.value, &entry.project_directory);
                include::add_included(parsed, path, included, &entry.paths[0])?;
            }
        }
        include::remove_include_key(parsed);
        Ok(())
    }

    fn interpolate(&mut self, parsed: &mut Parsed, env: &EnvMap) -> Result<(), Error> {
        let lookup = |name: &str| env.get(name).cloned();
        let mut unset: Vec<(String, Vec<PathSeg>)> = Vec::new();
        let result = interpolate_value(&mut parsed.value, &lookup, &mut |name, path| {
            unset.push((name.to_string(), path.to_vec()));
        });
        for (name, path) in unset {
            if self.warned.insert(name.clone()) {
                self.warnings.push(Warning {
                    location: Some(parsed.source_map.locate_value(&path)),
                    message: format!(
                        "the \"{name}\" variable is not set, defaulting to a blank string"
                    ),
                });
            }
        }
        result.map_err(|(err, path)| {
            let location = parsed.source_map.locate_value(&path);
            match err {
                InterpolateError::Required { variable, message } => Error::RequiredVariable {
                    location,
                    variable,
                    message,
                },
                malformed => Error::Invalid {
                    location,
                    message: malformed.to_string(),
                },
            }
        })
    }
}

/// Folds each service's `env_file` entries into its `environment` (which wins), as
/// Compose does, and drops `env_file`.
fn fold_env_files(
    document: &mut Value,
    source_map: &SourceMap,
    project_dir: &Path,
    environment: &EnvMap,
) -> Result<(), Error> {
    let Some(Value::Mapping(services)) = document.get_mut("services") else {
        return Ok(());
    };
    for (name, service) in services.iter_mut() {
        let Value::Mapping(service) = service else {
            continue;
        };
        let Some(env_file) = service.shift_remove("env_file") else {
            continue;
        };
        let entries = match env_file {
            Value::Sequence(items) => items,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let mut vars = EnvMap::new();
        for (i, entry) in entries.iter().enumerate() {
            let at = [
                PathSeg::Key("services".into()),
                PathSeg::Key(scalar_text(name)),
                PathSeg::Key("env_file".into()),
                PathSeg::Index(i),
            ];
            let (path, required, raw) = match entry {
                Value::String(p) => (p.clone(), true, false),
                Value::Mapping(m) => (
                    m.get("path").map(scalar_text).unwrap_or_default(),
                    m.get("required").and_then(Value::as_bool).unwrap_or(true),
                    m.get("format").and_then(Value::as_str) == Some("raw"),
                ),
                _ => {
                    return Err(Error::Invalid {
                        location: source_map.locate(&at),
                        message: "env_file entries must be paths or {path, required, format}"
                            .into(),
                    });
                }
            };
            let path = PathBuf::from(absolute(project_dir, &path));
            if !path.is_file() {
                if required {
                    return Err(Error::Invalid {
                        location: source_map.locate(&at),
                        message: format!("env file {} not found", path.display()),
                    });
                }
                continue;
            }
            let known = vars.clone();
            let outer = |n: &str| known.get(n).or_else(|| environment.get(n)).cloned();
            let read = env::read_env_file(&path, raw, &outer).map_err(|e| match e {
                Error::Io { path, source } => Error::Invalid {
                    location: source_map.locate(&at),
                    message: format!("cannot read env file {}: {source}", path.display()),
                },
                other => other,
            })?;
            vars.extend(read);
        }
        let mut merged = Mapping::new();
        for (k, v) in vars {
            merged.insert(Value::String(k), Value::String(v));
        }
        let own = match service.get("environment") {
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|i| {
                    let text = scalar_text(i);
                    match text.split_once('=') {
                        Some((k, v)) => (Value::String(k.into()), Value::String(v.into())),
                        None => (Value::String(text), Value::Null),
                    }
                })
                .collect::<Vec<_>>(),
            Some(Value::Mapping(m)) => m
                .iter()
                .map(|(k, v)| (Value::String(scalar_text(k)), v.clone()))
                .collect(),
            _ => Vec::new(),
        };
        for (k, v) in own {
            // A bare name (no value) does not hide the env file's value.
            if v.is_null() && merged.contains_key(&k) {
                continue;
            }
            merged.insert(k, v);
        }
        service.insert("environment".into(), Value::Mapping(merged));
    }
    Ok(())
}
