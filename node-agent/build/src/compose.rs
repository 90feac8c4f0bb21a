//! Compose `build:` → builds: the options of each service's build section (short syntax =
//! a context path; long syntax: `context`, `dockerfile`, `dockerfile_inline`, `args`,
//! `target`, `labels`, `tags`, `no_cache`, `pull`, `network`, `shm_size`), the image name
//! Compose gives a built image (`image:` if set, else `<project>-<service>`), and
//! [`build_services`], which `berth build` and `berth up --build` call. Options not listed
//! (`secrets`, `ssh`, `cache_from`, `platforms`, …) are refused with a clear error rather
//! than ignored when they would change the result.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_image::Digest;
use berth_spec::App;
use berth_spec::model::build::Build;

use crate::{BuildError, BuildNetwork, BuildOptions, DockerfileSource, Env};

/// Overrides from the command line (`berth build --no-cache --pull --build-arg K=V`).
#[derive(Debug, Clone, Default)]
pub struct ComposeBuildOptions {
    pub no_cache: bool,
    pub pull: bool,
    pub build_args: BTreeMap<String, String>,
}

/// One built service image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub service: String,
    /// The name the service runs (`image:` or `<project>-<service>`).
    pub image: String,
    pub id: Digest,
    pub executed: usize,
    pub cached: usize,
}

/// The image name of a service that builds: its `image:`, else `<project>-<service>`.
pub fn image_name(app: &App, service: &str) -> String {
    app.services
        .get(service)
        .and_then(|s| s.image.clone())
        .unwrap_or_else(|| format!("{}-{}", app.name, service))
}

/// The services that have a `build:` section, in the app's (name) order.
pub fn buildable(app: &App) -> Vec<String> {
    app.services
        .iter()
        .filter(|(_, s)| s.build.is_some())
        .map(|(n, _)| n.clone())
        .collect()
}

/// The build options of one service's `build:` section.
pub fn options_for(
    app: &App,
    service: &str,
    build: &Build,
    over: &ComposeBuildOptions,
) -> Result<BuildOptions, BuildError> {
    let refuse = |what: &str| BuildError::Service {
        service: service.to_owned(),
        message: format!("build.{what} is not supported by berth's builder"),
    };
    if !build.secrets.is_empty() {
        return Err(refuse("secrets"));
    }
    if !build.ssh.is_empty() {
        return Err(refuse("ssh"));
    }
    if !build.additional_contexts.is_empty() {
        return Err(refuse("additional_contexts"));
    }
    if build.privileged {
        return Err(refuse("privileged"));
    }
    let context = PathBuf::from(build.context.clone().unwrap_or_else(|| ".".into()));
    if context.to_string_lossy().contains("://") || context.to_string_lossy().starts_with("git@") {
        return Err(BuildError::Service {
            service: service.to_owned(),
            message: format!(
                "remote build context {} is not supported; clone it and use a local path",
                context.display()
            ),
        });
    }
    let dockerfile = match (&build.dockerfile_inline, &build.dockerfile) {
        (Some(text), _) => DockerfileSource::Inline(text.clone()),
        (None, Some(path)) => DockerfileSource::Path(PathBuf::from(path)),
        (None, None) => DockerfileSource::Path(PathBuf::from("Dockerfile")),
    };
    let mut build_args: BTreeMap<String, String> = build
        .args
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    build_args.extend(over.build_args.clone());
    let network = match build.network.as_deref() {
        None => BuildNetwork::Host,
        Some(n) => BuildNetwork::parse(n).ok_or_else(|| BuildError::Service {
            service: service.to_owned(),
            message: format!("build.network {n:?}: a build runs on the host network or none"),
        })?,
    };
    let image = image_name(app, service);
    let mut tags = vec![image];
    for t in &build.tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Ok(BuildOptions {
        context,
        dockerfile,
        build_args,
        target: build.target.clone(),
        tags,
        labels: build
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        no_cache: build.no_cache || over.no_cache,
        pull: build.pull || over.pull,
        network,
        shm_size: build.shm_size.as_ref().map(|s| s.bytes()),
    })
}

/// Builds `services` (all services with `build:` when empty), one after another, and
/// returns what each produced. A named service without `build:` is an error.
pub fn build_services(
    env: &Env,
    app: &App,
    services: &[String],
    over: &ComposeBuildOptions,
) -> Result<Vec<BuiltImage>, BuildError> {
    let names = if services.is_empty() {
        buildable(app)
    } else {
        services.to_vec()
    };
    let mut out = Vec::new();
    for name in names {
        let svc = app.services.get(&name).ok_or_else(|| BuildError::Service {
            service: name.clone(),
            message: "no such service".into(),
        })?;
        let Some(build) = &svc.build else {
            return Err(BuildError::Service {
                service: name.clone(),
                message: "has no build section".into(),
            });
        };
        let opts = options_for(app, &name, build, over)?;
        let built = crate::build(env, &opts).map_err(|e| BuildError::Service {
            service: name.clone(),
            message: e.to_string(),
        })?;
        out.push(BuiltImage {
            service: name.clone(),
            image: image_name(app, &name),
            id: built.id,
            executed: built.executed,
            cached: built.cached,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        let opts = berth_spec::LoadOptions {
            working_dir: dir.path().to_path_buf(),
            project_name: Some("proj".into()),
            ..Default::default()
        };
        berth_spec::load(&opts).unwrap().app
    }

    #[test]
    fn short_and_long_syntax() {
        let app = app(
            "services:\n  web:\n    build: ./web\n  api:\n    image: registry.local/api:1\n    build:\n      context: api\n      dockerfile: Dockerfile.dev\n      args:\n        MODE: fast\n      target: prod\n      labels:\n        a: b\n      tags: [extra:1]\n      no_cache: true\n      network: none\n      shm_size: 128m\n  db:\n    image: busybox\n",
        );
        assert_eq!(buildable(&app), ["api", "web"]);
        assert_eq!(image_name(&app, "web"), "proj-web");
        let web = options_for(
            &app,
            "web",
            app.services["web"].build.as_ref().unwrap(),
            &Default::default(),
        )
        .unwrap();
        assert!(web.context.ends_with("web") && web.context.is_absolute());
        assert_eq!(web.dockerfile, DockerfileSource::Path("Dockerfile".into()));
        assert_eq!(web.tags, ["proj-web"]);
        let over = ComposeBuildOptions {
            build_args: [("EXTRA".to_owned(), "1".to_owned())].into(),
            ..Default::default()
        };
        let api = options_for(
            &app,
            "api",
            app.services["api"].build.as_ref().unwrap(),
            &over,
        )
        .unwrap();
        assert_eq!(api.tags, ["registry.local/api:1", "extra:1"]);
        assert_eq!(api.build_args.get("MODE").map(String::as_str), Some("fast"));
        assert_eq!(api.build_args.get("EXTRA").map(String::as_str), Some("1"));
        assert_eq!(api.target.as_deref(), Some("prod"));
        assert_eq!(api.labels.get("a").map(String::as_str), Some("b"));
        assert!(api.no_cache);
        assert_eq!(api.network, BuildNetwork::None);
        assert_eq!(api.shm_size, Some(128 * 1024 * 1024));
        assert_eq!(
            api.dockerfile,
            DockerfileSource::Path("Dockerfile.dev".into())
        );
    }
}
