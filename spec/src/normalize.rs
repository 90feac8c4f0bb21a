//! Normalization of a typed `App` into the canonical form later layers consume, with the
//! defaults Docker Compose fills in: the implicit `default` network, project-scoped resource
//! names, absolute paths, implicit dependencies from `links`/`network_mode`/`volumes_from`,
//! port and secret defaults, `scale` and `deploy.replicas` reconciled, maps sorted.
//!
//! Pure: paths are resolved lexically against the project directory; nothing is read.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;

use crate::model::deploy::DeviceCount;
use crate::model::service::{Condition, Dependency};
use crate::model::{App, FileObject, Service};
use crate::path::PathSeg;

pub struct Context<'a> {
    pub project_dir: &'a Path,
    /// The project's environment (process environment plus `.env`), for `~` and bare keys.
    pub environment: &'a IndexMap<String, String>,
}

/// A normalization failure at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeError {
    pub path: Vec<PathSeg>,
    pub message: String,
}

/// Something to tell the user, at a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeWarning {
    pub path: Vec<PathSeg>,
    pub message: String,
}

/// Lexical cleaning like Go's `path.Clean`: no `.`, `..` folded, no trailing slash.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

impl Context<'_> {
    fn home(&self) -> Option<&str> {
        self.environment.get("HOME").map(String::as_str)
    }

    /// `~` expanded from HOME, then made absolute against the project directory.
    pub fn absolute(&self, p: &str) -> String {
        let expanded = match (p.strip_prefix('~'), self.home()) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                format!("{home}{rest}")
            }
            _ => p.to_string(),
        };
        if expanded.is_empty() {
            return expanded;
        }
        // Windows absolute paths and named pipes are left alone.
        if is_windows_abs(&expanded) {
            return expanded;
        }
        let joined = if expanded.starts_with('/') {
            PathBuf::from(&expanded)
        } else {
            self.project_dir.join(&expanded)
        };
        let s = joined
            .components()
            .map(|c| match c {
                Component::RootDir => String::new(),
                other => other.as_os_str().to_string_lossy().into_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        clean_path(&if s.is_empty() { "/".into() } else { s })
    }
}

fn is_windows_abs(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with(r"\\")
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && (b[2] == b'\\' || b[2] == b'/'))
}

fn is_remote_context(c: &str) -> bool {
    c.contains("://")
        || c.starts_with("service:")
        || [
            "https://",
            "http://",
            "git://",
            "ssh://",
            "github.com/",
            "git@",
        ]
        .iter()
        .any(|p| c.starts_with(p))
}

fn sort<V>(m: &mut IndexMap<String, V>) {
    m.sort_unstable_keys();
}

/// Normalizes `app` in place. Returns the warnings; fails on a conflict that only shows once
/// syntaxes are combined (for example `name` and the deprecated `external.name`).
pub fn normalize(
    app: &mut App,
    ctx: &Context<'_>,
) -> Result<Vec<NormalizeWarning>, NormalizeError> {
    let mut warnings = Vec::new();
    sort(&mut app.services);

    // The implicit `default` network exists only when some service uses it.
    let mut uses_default = false;
    for svc in app.services.values_mut() {
        if svc.provider.is_some() || svc.network_mode.is_some() {
            continue;
        }
        if svc.networks.is_empty() {
            svc.networks.insert("default".into(), None);
        }
        uses_default |= svc.networks.contains_key("default");
    }
    if uses_default && !app.networks.contains_key("default") {
        app.networks.insert("default".into(), Default::default());
    }

    let project = app.name.clone();
    let scoped = |kind: &str,
                  key: &str,
                  name: &mut Option<String>,
                  ext: &mut crate::model::External,
                  warnings: &mut Vec<NormalizeWarning>| {
        let path = vec![PathSeg::key(kind), PathSeg::key(key)];
        if let Some(ext_name) = ext.name.take() {
            warnings.push(NormalizeWarning {
                path: path.clone(),
                message: format!(
                    "{kind}.{key}: external.name is deprecated. Please set name and external: true"
                ),
            });
            match name {
                Some(n) if *n != ext_name => {
                    return Err(NormalizeError {
                        path,
                        message: "name and external.name conflict; only use name".into(),
                    });
                }
                _ => *name = Some(ext_name),
            }
        }
        if name.is_none() {
            *name = Some(if ext.external {
                key.to_string()
            } else {
                format!("{project}_{key}")
            });
        }
        Ok(())
    };
    for (key, n) in app.networks.iter_mut() {
        scoped("networks", key, &mut n.name, &mut n.external, &mut warnings)?;
        sort(&mut n.labels);
        sort(&mut n.driver_opts);
    }
    for (key, v) in app.volumes.iter_mut() {
        scoped("volumes", key, &mut v.name, &mut v.external, &mut warnings)?;
        sort(&mut v.labels);
        // A local volume bound to a host directory names that directory.
        if v.driver.as_deref() == Some("local")
            && v.driver_opts.get("o").map(String::as_str) == Some("bind")
        {
            if let Some(dev) = v.driver_opts.get_mut("device") {
                *dev = ctx.absolute(dev);
            }
        }
        sort(&mut v.driver_opts);
    }
    for (kind, map) in [("secrets", &mut app.secrets), ("configs", &mut app.configs)] {
        for (key, obj) in map.iter_mut() {
            let FileObject {
                name,
                external,
                file,
                labels,
                ..
            } = obj;
            scoped(kind, key, name, external, &mut warnings)?;
            if let Some(f) = file {
                *f = ctx.absolute(f);
            }
            sort(labels);
        }
    }
    sort(&mut app.networks);
    sort(&mut app.volumes);
    sort(&mut app.secrets);
    sort(&mut app.configs);
    sort(&mut app.models);

    for (name, svc) in app.services.iter_mut() {
        normalize_service(name, svc, ctx, &mut warnings)?;
    }
    Ok(warnings)
}

fn normalize_service(
    name: &str,
    svc: &mut Service,
    ctx: &Context<'_>,
    _warnings: &mut [NormalizeWarning],
) -> Result<(), NormalizeError> {
    let at = |rest: &[PathSeg]| {
        let mut p = vec![PathSeg::key("services"), PathSeg::key(name)];
        p.extend_from_slice(rest);
        p
    };

    if svc.pull_policy.as_deref() == Some("if_not_present") {
        svc.pull_policy = Some("missing".into());
    }

    if let Some(build) = &mut svc.build {
        let context = build.context.get_or_insert_with(|| ".".into());
        if !is_remote_context(context) {
            *context = ctx.absolute(context);
        }
        if build.dockerfile.is_none() && build.dockerfile_inline.is_none() {
            build.dockerfile = Some("Dockerfile".into());
        }
        for c in build.additional_contexts.values_mut() {
            if !is_remote_context(c) {
                *c = ctx.absolute(c);
            }
        }
        // Unset bare build args are dropped; set ones take the environment's value.
        let args = std::mem::take(&mut build.args);
        for (k, v) in args {
            match v {
                Some(v) => {
                    build.args.insert(k, Some(v));
                }
                None => {
                    if let Some(val) = ctx.environment.get(&k) {
                        build.args.insert(k, Some(val.clone()));
                    }
                }
            }
        }
        sort(&mut build.args);
        sort(&mut build.labels);
        sort(&mut build.ulimits);
    }

    // A bare `KEY` takes its value from the environment when set there.
    for (k, v) in svc.environment.iter_mut() {
        if v.is_none() {
            if let Some(val) = ctx.environment.get(k) {
                *v = Some(val.clone());
            }
        }
    }
    sort(&mut svc.environment);
    sort(&mut svc.labels);
    sort(&mut svc.annotations);
    sort(&mut svc.sysctls);
    sort(&mut svc.storage_opt);
    sort(&mut svc.ulimits);
    sort(&mut svc.networks);
    sort(&mut svc.models);
    if let Some(l) = &mut svc.logging {
        sort(&mut l.options);
    }
    for ef in &mut svc.env_file {
        ef.path = ctx.absolute(&ef.path);
    }
    for lf in &mut svc.label_file {
        *lf = ctx.absolute(lf);
    }
    if let Some(ext) = &mut svc.extends {
        if let Some(f) = &mut ext.file {
            *f = ctx.absolute(f);
        }
    }
    if let Some(dev) = &mut svc.develop {
        for w in &mut dev.watch {
            w.path = ctx.absolute(&w.path);
        }
    }

    // Implicit dependencies, as Compose adds them.
    let implicit = |svc: &mut Service, target: &str, restart: bool| {
        svc.depends_on
            .entry(target.to_string())
            .or_insert(Dependency {
                condition: Condition::ServiceStarted,
                restart,
                required: true,
                extensions: Default::default(),
            });
    };
    for link in svc.links.clone() {
        let target = link
            .split_once(':')
            .map_or(link.as_str(), |(n, _)| n)
            .to_string();
        implicit(svc, &target, true);
    }
    for ns in [&svc.network_mode, &svc.ipc, &svc.pid, &svc.uts, &svc.cgroup]
        .into_iter()
        .filter_map(|v| {
            v.as_deref()
                .and_then(|m| m.strip_prefix("service:"))
                .map(str::to_string)
        })
        .collect::<Vec<_>>()
    {
        implicit(svc, &ns, true);
    }
    for from in svc.volumes_from.clone() {
        if !from.starts_with("container:") {
            let target = from.split(':').next().unwrap_or(&from).to_string();
            implicit(svc, &target, false);
        }
    }
    sort(&mut svc.depends_on);

    for p in &mut svc.ports {
        p.protocol.get_or_insert_with(|| "tcp".into());
        p.mode.get_or_insert_with(|| "ingress".into());
    }

    for (i, v) in svc.volumes.iter_mut().enumerate() {
        if let Some(t) = &mut v.target {
            *t = clean_path(t);
        }
        if v.kind == "bind" {
            match &mut v.source {
                Some(src) => *src = ctx.absolute(src),
                None => {
                    return Err(NormalizeError {
                        path: at(&[PathSeg::key("volumes"), PathSeg::Index(i)]),
                        message:
                            "invalid mount config for type \"bind\": field Source must not be empty"
                                .into(),
                    });
                }
            }
            if let Some(b) = &mut v.bind {
                b.create_host_path.get_or_insert(true);
            }
        }
    }

    for s in &mut svc.secrets {
        if s.target.is_none() {
            s.target = Some(format!("/run/secrets/{}", s.source));
        }
    }

    let device_defaults = |reqs: &mut Vec<crate::model::DeviceRequest>| {
        for r in reqs {
            if r.count.is_none() && r.device_ids.is_empty() {
                r.count = Some(DeviceCount::All);
            }
        }
    };
    device_defaults(&mut svc.gpus);
    if let Some(deploy) = &mut svc.deploy {
        if let Some(res) = &mut deploy.resources.reservations {
            device_defaults(&mut res.devices);
        }
        sort(&mut deploy.labels);
    }

    // `scale` wins over `deploy.replicas` once validation has checked they agree.
    if let (Some(scale), Some(deploy)) = (svc.scale, &mut svc.deploy) {
        match deploy.replicas {
            Some(r) if r != scale => {
                return Err(NormalizeError {
                    path: at(&[]),
                    message: "can't set distinct values on 'scale' and 'deploy.replicas'".into(),
                });
            }
            _ => deploy.replicas = Some(scale),
        }
    }

    // Inherit the service image in pre_start hooks that name none.
    if let Some(image) = &svc.image {
        for h in &mut svc.pre_start {
            h.image.get_or_insert_with(|| image.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths_like_go() {
        for (i, o) in [
            ("/a/b/../c/", "/a/c"),
            ("a/./b", "a/b"),
            ("../x", "../x"),
            ("/..", "/"),
            ("", "."),
            ("/data//x", "/data/x"),
        ] {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }

    #[test]
    fn absolute_paths_expand_home_and_join_project() {
        let env: IndexMap<String, String> = [("HOME".to_string(), "/home/u".to_string())].into();
        let ctx = Context {
            project_dir: Path::new("/srv/app"),
            environment: &env,
        };
        assert_eq!(ctx.absolute("./data"), "/srv/app/data");
        assert_eq!(ctx.absolute("../up"), "/srv/up");
        assert_eq!(ctx.absolute("~/cfg"), "/home/u/cfg");
        assert_eq!(ctx.absolute("~"), "/home/u");
        assert_eq!(ctx.absolute("/abs/./x"), "/abs/x");
        assert_eq!(ctx.absolute("."), "/srv/app");
    }
}
