//! The typed Compose model and the canonical `App` every later layer consumes.
//!
//! `App::from_document` is the seam with the loader: it takes one merged, interpolated
//! document, types it (every short syntax becomes its long form), normalizes it
//! (`crate::normalize`) and validates it (`crate::validate`). It reads no files.

pub mod build;
pub mod common;
pub mod de;
pub mod deploy;
pub mod emit;
pub mod file_ref;
pub mod mount;
pub mod network;
pub mod port;
pub mod resources;
pub mod service;
pub mod units;

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub use build::Build;
pub use common::{Extensions, External, ExtraHosts, Ulimit};
pub use deploy::{Deploy, DeviceCount, DeviceRequest, Resource, Resources};
pub use file_ref::{FileMode, FileRef};
pub use mount::ServiceVolume;
pub use network::{Network, ServiceNetwork};
pub use port::PortConfig;
pub use resources::{Config, FileObject, Model, Secret, ServiceModel, Volume};
pub use service::{Condition, Dependency, DependencyKind, Healthcheck, Service};
pub use units::{ByteSize, Duration};

use crate::error::{Error, Location, Warning};
use crate::path::{DisplayPath, PathSeg};
use de::{DeError, DeErrorKind};
use network::de_nullable_map;

/// A whole project, canonical: the shape `docker compose config` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct App {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "de_nullable_map")]
    pub services: IndexMap<String, Service>,
    #[serde(
        default,
        deserialize_with = "de_nullable_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub networks: IndexMap<String, Network>,
    #[serde(
        default,
        deserialize_with = "de_nullable_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub volumes: IndexMap<String, Volume>,
    #[serde(
        default,
        deserialize_with = "de_nullable_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub secrets: IndexMap<String, Secret>,
    #[serde(
        default,
        deserialize_with = "de_nullable_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub configs: IndexMap<String, Config>,
    #[serde(
        default,
        deserialize_with = "de_nullable_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub models: IndexMap<String, Model>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// Top-level keys the loader has dealt with: `version` is obsolete, `include` resolved.
const LOADER_KEYS: &[&str] = &["version", "include"];

impl App {
    /// Types, validates and normalizes a merged, interpolated project document.
    /// `locate` maps a key path (e.g. ["services","web","ports",0]) to where it came from.
    pub fn from_document(
        name: &str,
        project_dir: &Path,
        environment: &IndexMap<String, String>,
        document: serde_yaml::Value,
        locate: &dyn Fn(&[PathSeg]) -> Location,
    ) -> Result<(App, Vec<Warning>), Error> {
        let mut app = Self::typed(&document, locate)?;
        app.name = name.to_string();
        let ctx = crate::normalize::Context {
            project_dir,
            environment,
        };
        let warnings = crate::normalize::normalize(&mut app, &ctx)
            .map_err(|e| invalid(locate, &e.path, &e.message))?;
        crate::validate::validate(&app).map_err(|e| invalid(locate, &e.path, &e.message))?;
        if let Err(Error::Cycle { path }) = app.graph() {
            let at = [
                PathSeg::Key("services".into()),
                PathSeg::Key(path[0].clone()),
                PathSeg::Key("depends_on".into()),
            ];
            return Err(invalid(
                locate,
                &at,
                &format!("dependency cycle between services: {}", path.join(" -> ")),
            ));
        }
        let warnings = warnings
            .into_iter()
            .map(|w| Warning {
                location: Some(locate(&w.path)),
                message: w.message,
            })
            .collect();
        Ok((app, warnings))
    }

    /// The services' dependency graph (from `depends_on`, `links`, `network_mode`,
    /// `volumes_from` and `service:` namespaces): start waves, stop order, selections.
    pub fn graph(&self) -> Result<crate::graph::DependencyGraph, Error> {
        use crate::graph::{DependencyGraph, Edge, EdgeKind};
        let edges = self.services.iter().flat_map(|(name, service)| {
            service
                .dependencies()
                .into_iter()
                .map(move |(dependency, kind)| {
                    let (kind, required) = match kind {
                        DependencyKind::DependsOn { required, .. } => {
                            (EdgeKind::DependsOn, required)
                        }
                        DependencyKind::Link => (EdgeKind::Link, true),
                        DependencyKind::NetworkMode => (EdgeKind::NetworkMode, true),
                        DependencyKind::VolumesFrom => (EdgeKind::VolumesFrom, true),
                        DependencyKind::Namespace(_) => (EdgeKind::Namespace, true),
                    };
                    Edge {
                        dependent: name.clone(),
                        dependency,
                        kind,
                        required,
                    }
                })
        });
        DependencyGraph::new(self.services.keys().map(String::as_str), edges)
    }

    /// Types a document without normalizing or validating it.
    pub fn typed(
        document: &serde_yaml::Value,
        locate: &dyn Fn(&[PathSeg]) -> Location,
    ) -> Result<App, Error> {
        match document {
            // An empty file is an empty project.
            serde_yaml::Value::Null => return Ok(App::default()),
            serde_yaml::Value::Mapping(_) => {}
            _ => return Err(invalid(locate, &[], "the top level must be a mapping")),
        }
        let has_loader_keys = document
            .as_mapping()
            .is_some_and(|m| LOADER_KEYS.iter().any(|k| m.contains_key(*k)));
        if has_loader_keys {
            let mut doc = document.clone();
            if let Some(m) = doc.as_mapping_mut() {
                for k in LOADER_KEYS {
                    m.remove(*k);
                }
            }
            return de::from_value(&doc, &[]).map_err(|e| de_error(locate, e));
        }
        de::from_value(document, &[]).map_err(|e| de_error(locate, e))
    }

    /// The canonical YAML, as `docker compose config` prints it.
    pub fn to_yaml(&self) -> String {
        emit::yaml(&self.to_value())
    }

    /// The canonical JSON, as `docker compose config --format json` prints it: top-level
    /// keys sorted, and `command`/`entrypoint` always present (null when unset).
    pub fn to_json(&self) -> String {
        let mut value = self.to_value();
        if let Some(services) = value.get_mut("services").and_then(|s| s.as_object_mut()) {
            for svc in services.values_mut() {
                if let Some(obj) = svc.as_object_mut() {
                    *obj = with_null_commands(std::mem::take(obj));
                }
            }
        }
        if let Some(obj) = value.as_object_mut() {
            obj.sort_keys();
        }
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }

    fn to_value(&self) -> serde_json::Value {
        // Plain data with string keys always converts.
        let mut value = serde_json::to_value(self).unwrap_or_default();
        emit::integral_floats(&mut value);
        value
    }
}

/// Compose always prints `command` and `entrypoint` in JSON; puts them (null when unset) in
/// their place in the field order.
fn with_null_commands(
    obj: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    // The first field that Compose prints after each of them.
    const AFTER: [(&str, &str); 2] = [("command", "configs"), ("entrypoint", "provider")];
    let order = service::FIELD_ORDER;
    let rank = |k: &str| order.iter().position(|f| *f == k).unwrap_or(order.len());
    let mut out = serde_json::Map::new();
    let mut pending: Vec<&str> = AFTER
        .iter()
        .filter(|(k, _)| !obj.contains_key(*k))
        .map(|(k, _)| *k)
        .collect();
    for (k, v) in obj {
        while let Some(p) = pending.first().copied() {
            let after = AFTER.iter().find(|(n, _)| *n == p).map_or("", |(_, a)| a);
            if rank(&k) >= rank(after) {
                out.insert(p.to_string(), serde_json::Value::Null);
                pending.remove(0);
            } else {
                break;
            }
        }
        out.insert(k, v);
    }
    for p in pending {
        out.insert(p.to_string(), serde_json::Value::Null);
    }
    out
}

fn invalid(locate: &dyn Fn(&[PathSeg]) -> Location, path: &[PathSeg], message: &str) -> Error {
    let message = if path.is_empty() {
        message.to_string()
    } else {
        format!("{}: {message}", DisplayPath(path))
    };
    Error::Invalid {
        location: locate(path),
        message,
    }
}

fn de_error(locate: &dyn Fn(&[PathSeg]) -> Location, e: DeError) -> Error {
    let mut path = e.path.unwrap_or_default();
    match e.kind {
        DeErrorKind::UnknownKey(key) => {
            path.push(PathSeg::Key(key));
            Error::UnknownKey {
                location: locate(&path),
                key: DisplayPath(&path).to_string(),
            }
        }
        DeErrorKind::Message(m) => invalid(locate, &path, &m),
    }
}
