//! `POST /build` and `POST /build/prune`: Docker's classic builder API on berth's own
//! builder (`berth-build`). The request body is the build context as a tar; it is unpacked
//! into a private directory under `<data-root>/docker-api/tmp/`, built with the options the
//! query carries, and removed. Progress goes out as Docker's JSON stream (`{"stream":…}`
//! lines per step, `{"aux":{"ID":…}}`, `Successfully built/tagged`, and
//! `{"errorDetail":…,"error":…}` on failure), which the docker CLI (`DOCKER_BUILDKIT=0`),
//! docker-py and docker-compose v1 read. No Dockerfile logic lives here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_build::{BuildError, BuildNetwork, BuildOptions, DockerfileSource, Env};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::backend::{Backend, blocking, random_id};
use crate::error::{ApiError, ApiResult};
use crate::http::{Query, Reply, json_line, ok_json};
use crate::images;

/// What a `/build` query asks for, parsed (pure).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BuildQuery {
    pub tags: Vec<String>,
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
    pub network: BuildNetwork,
    pub shm_size: Option<i64>,
}

/// A JSON object of strings (`buildargs`, `labels`); `null` values are skipped, as Docker
/// does for build args given without a value that the client could not resolve.
fn string_map(q: &Query, key: &str) -> ApiResult<BTreeMap<String, String>> {
    let Some(raw) = q.get(key).filter(|s| !s.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("{key}: not a JSON object: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request(format!("{key}: not a JSON object")))?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        match v {
            Value::Null => {}
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            other => {
                out.insert(k.clone(), other.to_string());
            }
        }
    }
    Ok(out)
}

pub(crate) fn parse_query(q: &Query) -> ApiResult<BuildQuery> {
    if let Some(remote) = q.get("remote").filter(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "building from a remote context ({remote}) is not supported by berth; send the context as a tar"
        )));
    }
    let network = match q.get("networkmode").unwrap_or("default") {
        "" | "default" | "bridge" | "host" => BuildNetwork::Host,
        "none" => BuildNetwork::None,
        other => {
            return Err(ApiError::bad_request(format!(
                "network mode {other:?} is not supported for builds (default, host or none)"
            )));
        }
    };
    let dockerfile = q
        .get("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile")
        .to_string();
    if Path::new(&dockerfile)
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ApiError::bad_request(format!(
            "the Dockerfile ({dockerfile}) must be within the build context"
        )));
    }
    Ok(BuildQuery {
        tags: q.all("t").into_iter().filter(|t| !t.is_empty()).collect(),
        dockerfile,
        build_args: string_map(q, "buildargs")?,
        labels: string_map(q, "labels")?,
        target: q.get("target").filter(|t| !t.is_empty()).map(String::from),
        no_cache: q.flag("nocache"),
        pull: q.flag("pull"),
        quiet: q.flag("q"),
        network,
        shm_size: q.int("shmsize")?.filter(|n| *n > 0),
    })
}

/// The exit code Docker reports for a failed build: the `RUN`'s own code, else 1.
fn error_code(e: &BuildError) -> i32 {
    match e {
        BuildError::RunFailed { code, .. } if *code != 0 => *code,
        BuildError::At { inner, .. } => error_code(inner),
        _ => 1,
    }
}

fn stream_line(text: &str) -> Bytes {
    json_line(&json!({ "stream": text }))
}

/// Turns the builder's progress into `{"stream":…}` lines.
struct StreamProgress {
    tx: mpsc::UnboundedSender<Bytes>,
    quiet: bool,
}

impl berth_build::Progress for StreamProgress {
    fn step(&self, stage: &str, index: usize, total: usize, text: &str, cached: bool) {
        if self.quiet {
            return;
        }
        let stage = if stage.is_empty() || stage.parse::<usize>().is_ok() {
            String::new()
        } else {
            format!("[{stage}] ")
        };
        let _ = self.tx.send(stream_line(&format!(
            "{stage}Step {index}/{total} : {text}"
        )));
        let _ = self.tx.send(stream_line("\n"));
        if cached {
            let _ = self.tx.send(stream_line(" ---> Using cache\n"));
        }
    }

    fn output(&self, _stage: &str, line: &str) {
        if !self.quiet {
            let _ = self.tx.send(stream_line(&format!("{line}\n")));
        }
    }

    fn warning(&self, message: &str) {
        let _ = self.tx.send(stream_line(&format!("[Warning] {message}\n")));
    }
}

/// Unpacks the context tar into `dir`; entries may not leave it (the tar crate refuses
/// `..` and absolute paths on unpack).
fn unpack_context(tar_path: &Path, dir: &Path) -> ApiResult<()> {
    let f = std::fs::File::open(tar_path)
        .map_err(|e| ApiError::internal(format!("open {}: {e}", tar_path.display())))?;
    let mut magic = [0u8; 2];
    {
        use std::io::Read;
        let mut probe = std::fs::File::open(tar_path)
            .map_err(|e| ApiError::internal(format!("open {}: {e}", tar_path.display())))?;
        let _ = probe.read(&mut magic);
    }
    if magic == [0x1f, 0x8b] {
        return Err(ApiError::bad_request(
            "compressed build contexts are not supported by berth; send a plain tar",
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::internal(format!("create {}: {e}", dir.display())))?;
    let mut archive = tar::Archive::new(f);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive
        .unpack(dir)
        .map_err(|e| ApiError::bad_request(format!("reading the build context: {e}")))
}

/// Where `RUN` containers of API builds keep their runtime state: `build` beside the run
/// root, as `berth image build` does.
fn build_run_root(run_root: &Path) -> PathBuf {
    run_root
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/run/berth"))
        .join("build")
}

/// `POST /build`: the context tar was spooled to `tar_path` (removed here).
pub async fn build(b: &Arc<Backend>, q: &Query, tar_path: PathBuf) -> ApiResult<Reply> {
    let query = match parse_query(q) {
        Ok(query) => query,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tar_path).await;
            return Err(e);
        }
    };
    let (tx, reply) = images::progress_stream();
    let b2 = b.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let dir = b2
            .state_dir
            .join("tmp")
            .join(format!("build-{}", &random_id()[..16]));
        let result = unpack_context(&tar_path, &dir)
            .map_err(|e| (e.message.clone(), 1))
            .and_then(|()| {
                run_build(&b2, &handle, &query, &dir, tx.clone())
                    .map_err(|e| (e.to_string(), error_code(&e)))
            });
        let _ = std::fs::remove_file(&tar_path);
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(built) => {
                let id = built.id.to_string();
                let short = &built.id.hex()[..12];
                let _ = tx.send(json_line(&json!({"aux": {"ID": id}})));
                if query.quiet {
                    let _ = tx.send(stream_line(&format!("{id}\n")));
                } else {
                    let _ = tx.send(stream_line(&format!("Successfully built {short}\n")));
                    for t in &query.tags {
                        let _ = tx.send(stream_line(&format!("Successfully tagged {t}\n")));
                    }
                }
                for t in &query.tags {
                    b2.events.publish(
                        "image",
                        "tag",
                        &id,
                        BTreeMap::from([("name".to_string(), t.clone())]),
                    );
                }
            }
            Err((message, code)) => {
                let _ = tx.send(json_line(&json!({
                    "errorDetail": {"code": code, "message": message},
                    "error": message,
                })));
            }
        }
    });
    Ok(reply)
}

fn run_build(
    b: &Arc<Backend>,
    handle: &tokio::runtime::Handle,
    query: &BuildQuery,
    context: &Path,
    tx: mpsc::UnboundedSender<Bytes>,
) -> Result<berth_build::Built, BuildError> {
    let store = b.store.clone();
    let pull_tx = tx.clone();
    let pull_handle = handle.clone();
    // A missing base image (or `pull=1`) comes from its registry, with the credentials
    // `berth login` stored, its progress in the build's own stream.
    let pull = move |image: &str| -> Result<(), String> {
        let reference = berth_image::Reference::parse(image).map_err(|e| e.to_string())?;
        let client = images::registry_client(&reference).map_err(|e| e.message.clone())?;
        let progress = images::pull_observer(pull_tx.clone());
        pull_handle
            .block_on(berth_image::registry::pull::pull(
                &client,
                &store,
                &reference,
                &Default::default(),
                &progress,
            ))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let env = Env {
        data_root: b.config.data_root.clone(),
        runtime: b.config.runtime.clone(),
        run_root: build_run_root(&b.config.run_root),
        progress: Arc::new(StreamProgress {
            tx,
            quiet: query.quiet,
        }),
        pull: Some(Arc::new(pull)),
    };
    let mut opts = BuildOptions::new(context);
    opts.dockerfile = DockerfileSource::Path(PathBuf::from(&query.dockerfile));
    opts.build_args = query.build_args.clone();
    opts.target = query.target.clone();
    opts.tags = query.tags.clone();
    opts.labels = query.labels.clone();
    opts.no_cache = query.no_cache;
    opts.pull = query.pull;
    opts.network = query.network;
    opts.shm_size = query.shm_size;
    berth_build::build(&env, &opts)
}

/// `POST /build/prune`: forgets the build cache (the layers stay while images use them;
/// image garbage collection takes the rest).
pub async fn prune(b: &Arc<Backend>) -> ApiResult<Reply> {
    let root = b.config.data_root.clone();
    let removed = blocking(move || {
        let cache = berth_build::cache::Cache::open(&root)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        cache.prune().map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(ok_json(&json!({
        "CachesDeleted": Value::Null,
        "SpaceReclaimed": 0,
        "BuildCacheRecordsDeleted": removed,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options() {
        let q = Query::parse(Some(
            "t=a%3A1&t=b&dockerfile=sub%2FDockerfile.dev&buildargs=%7B%22V%22%3A%221%22%2C%22N%22%3Anull%7D&labels=%7B%22l%22%3A%22x%22%7D&target=final&nocache=1&pull=true&q=1&rm=1&forcerm=0",
        ));
        let p = parse_query(&q).unwrap();
        assert_eq!(p.tags, vec!["a:1", "b"]);
        assert_eq!(p.dockerfile, "sub/Dockerfile.dev");
        assert_eq!(
            p.build_args,
            BTreeMap::from([("V".to_string(), "1".to_string())])
        );
        assert_eq!(p.labels.get("l").map(String::as_str), Some("x"));
        assert_eq!(p.target.as_deref(), Some("final"));
        assert!(p.no_cache && p.pull && p.quiet);
    }

    #[test]
    fn defaults_and_refusals() {
        let p = parse_query(&Query::parse(None)).unwrap();
        assert_eq!(p.dockerfile, "Dockerfile");
        assert!(p.tags.is_empty() && !p.no_cache && !p.quiet);
        assert!(parse_query(&Query::parse(Some("remote=https%3A%2F%2Fx"))).is_err());
        assert!(parse_query(&Query::parse(Some("dockerfile=..%2Fx"))).is_err());
        assert!(parse_query(&Query::parse(Some("buildargs=%5B1%5D"))).is_err());
    }
}
