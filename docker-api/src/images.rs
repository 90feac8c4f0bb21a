//! `/images/…`: list, inspect, history, tag, remove, prune, load, get (save), create (pull
//! from a registry, or import a root filesystem tar) and push — over berth's image store,
//! registry client and archive code. Pull and push stream Docker's JSON progress messages,
//! which the CLI renders as its usual progress bars.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_image::archive::{self, ImportOptions, SaveFormat};
use berth_image::registry::progress::{BlobOutcome, Event, Observer};
use berth_image::registry::pull::{PullOptions, pull};
use berth_image::registry::push::{PushOptions, push};
use berth_image::registry::{
    ClientOptions, CredentialStore, Credentials, RegistryClient, TransportPolicy,
};
use berth_image::{Digest, Image, Reference};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::backend::{Backend, blocking};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{self, Query, Reply, json_line, ok_json};
use crate::time;

fn created_of(image: &Image) -> String {
    image.config.created().clone().unwrap_or_default()
}

/// Image entries grouped by image id: (target, image, names).
fn grouped(b: &Backend) -> ApiResult<Vec<(Digest, Image, Vec<Reference>)>> {
    let mut by_target: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
    for rec in b.store.list_images()? {
        let names = by_target.entry(rec.target.clone()).or_default();
        if let Some(r) = rec.reference {
            names.push(r);
        }
    }
    let mut out = Vec::new();
    for (target, names) in by_target {
        if let Ok(img) = b.store.image(&target) {
            out.push((target, img, names));
        }
    }
    Ok(out)
}

fn repo_tags(names: &[Reference]) -> Vec<String> {
    names
        .iter()
        .filter(|r| r.tag().is_some())
        .map(Reference::familiar)
        .collect()
}

fn repo_digests(target: &Digest, names: &[Reference]) -> Vec<String> {
    let set: BTreeSet<String> = names
        .iter()
        .map(|r| format!("{}@{target}", r.familiar_name()))
        .collect();
    set.into_iter().collect()
}

fn labels_of(image: &Image) -> BTreeMap<String, String> {
    image
        .config
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default()
}

pub async fn list(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let b2 = b.clone();
    let out = blocking(move || {
        let used: BTreeSet<String> = b2
            .containers
            .records()?
            .into_iter()
            .map(|r| r.image_id)
            .collect();
        let mut out = Vec::new();
        for (target, img, names) in grouped(&b2)? {
            let labels = labels_of(&img);
            let dangling = names.is_empty();
            let keep = f.any("dangling", |d| (d == "true" || d == "1") == dangling)
                && f.labels_match(&labels)
                && f.any("reference", |r| {
                    names.iter().any(|n| {
                        let fam = n.familiar();
                        fam == r || n.familiar_name() == r || glob(r, &fam)
                    })
                });
            if !keep {
                continue;
            }
            let id = img.id().to_string();
            out.push(json!({
                "Id": id,
                "ParentId": "",
                "RepoTags": repo_tags(&names),
                "RepoDigests": repo_digests(&target, &names),
                "Created": time::unix_seconds(&created_of(&img)),
                "Size": img.size(),
                "SharedSize": -1,
                "VirtualSize": img.size(),
                "Labels": labels,
                "Containers": if used.contains(&id) { 1 } else { 0 },
            }));
        }
        Ok(out)
    })
    .await?;
    Ok(ok_json(&Value::Array(out)))
}

/// `*` matching for `reference=` filters (`busy*`).
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((pre, post)) => {
            s.len() >= pre.len() + post.len() && s.starts_with(pre) && s.ends_with(post)
        }
    }
}

fn inspect_json(b: &Backend, query: &str) -> ApiResult<Value> {
    let target = b.store.lookup(query)?;
    let img = b.store.image(&target)?;
    let names = b.store.names_of(&target)?;
    let raw: Value = serde_json::from_slice(&b.store.read_blob(img.id())?)
        .map_err(|e| ApiError::internal(format!("image config: {e}")))?;
    let cfg = &raw["config"];
    let config = json!({
        "Hostname": "", "Domainname": "", "User": cfg["User"].as_str().unwrap_or(""),
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "ExposedPorts": cfg["ExposedPorts"], "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": cfg["Env"], "Cmd": cfg["Cmd"], "Image": "", "Volumes": cfg["Volumes"],
        "WorkingDir": cfg["WorkingDir"].as_str().unwrap_or(""), "Entrypoint": cfg["Entrypoint"],
        "OnBuild": null, "Labels": cfg["Labels"], "StopSignal": cfg["StopSignal"],
        "Healthcheck": cfg["Healthcheck"],
    });
    Ok(json!({
        "Id": img.id().to_string(),
        "RepoTags": repo_tags(&names),
        "RepoDigests": repo_digests(&target, &names),
        "Parent": "",
        "Comment": raw["comment"].as_str().unwrap_or(""),
        "Created": created_of(&img),
        "DockerVersion": "",
        "Author": raw["author"].as_str().unwrap_or(""),
        "Config": config,
        "ContainerConfig": config,
        "Architecture": raw["architecture"],
        "Variant": raw["variant"],
        "Os": raw["os"],
        "Size": img.size(),
        "VirtualSize": img.size(),
        "GraphDriver": {"Name": "overlay2", "Data": null},
        "RootFS": {"Type": "layers", "Layers": raw["rootfs"]["diff_ids"]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        "Descriptor": {"mediaType": img.manifest.media_type().as_ref().map(|m| m.to_string()), "digest": target.to_string()},
    }))
}

pub async fn inspect(b: &Arc<Backend>, name: &str) -> ApiResult<Reply> {
    let b2 = b.clone();
    let name = name.to_string();
    let v = blocking(move || inspect_json(&b2, &name)).await?;
    Ok(ok_json(&v))
}

pub async fn history(b: &Arc<Backend>, name: &str) -> ApiResult<Reply> {
    let b2 = b.clone();
    let name = name.to_string();
    let v = blocking(move || {
        let target = b2.store.lookup(&name)?;
        let img = b2.store.image(&target)?;
        let names = repo_tags(&b2.store.names_of(&target)?);
        let layers = img.layers();
        let mut layer = 0usize;
        let mut out = Vec::new();
        for h in img.config.history().clone().unwrap_or_default() {
            let empty = h.empty_layer().unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = layers.get(layer).map_or(0, |l| l.size());
                layer += 1;
                s
            };
            out.push(json!({
                "Id": "<missing>",
                "Created": time::unix_seconds(h.created().as_deref().unwrap_or("")),
                "CreatedBy": h.created_by().clone().unwrap_or_default(),
                "Tags": null,
                "Size": size,
                "Comment": h.comment().clone().unwrap_or_default(),
            }));
        }
        out.reverse();
        if let Some(first) = out.first_mut() {
            first["Id"] = json!(img.id().to_string());
            first["Tags"] = json!(names);
        }
        Ok(Value::Array(out))
    })
    .await?;
    Ok(ok_json(&v))
}

pub async fn tag(b: &Arc<Backend>, name: &str, q: &Query) -> ApiResult<Reply> {
    let repo = q
        .get("repo")
        .ok_or_else(|| ApiError::bad_request("no repository given"))?;
    let full = match q.get("tag") {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let reference = Reference::parse(&full)
        .map_err(|e| ApiError::bad_request(format!("invalid reference {full:?}: {e}")))?;
    if reference.digest().is_some() {
        return Err(ApiError::bad_request("refusing to tag with a digest"));
    }
    let b2 = b.clone();
    let name = name.to_string();
    let target = blocking(move || {
        let target = b2.store.lookup(&name)?;
        b2.store.put_image(&reference, &target)?;
        Ok(target)
    })
    .await?;
    b.events.publish(
        "image",
        "tag",
        &target.to_string(),
        BTreeMap::from([("name".to_string(), full)]),
    );
    Ok(http::status_only(StatusCode::CREATED))
}

pub async fn remove(b: &Arc<Backend>, name: &str, q: &Query) -> ApiResult<Reply> {
    let force = q.flag("force");
    let b2 = b.clone();
    let query = name.to_string();
    let lines = blocking(move || remove_one(&b2, &query, force)).await?;
    for l in &lines {
        if let Some(id) = l["Deleted"].as_str() {
            b.events.publish("image", "delete", id, BTreeMap::new());
        }
        if let Some(n) = l["Untagged"].as_str() {
            b.events.publish("image", "untag", n, BTreeMap::new());
        }
    }
    let _ = b.store.try_gc(&Default::default());
    Ok(ok_json(&Value::Array(lines)))
}

fn ensure_unused(b: &Backend, img: &Image, force: bool) -> ApiResult<()> {
    if force {
        return Ok(());
    }
    let id = img.id().to_string();
    if let Some(r) = b
        .containers
        .records()?
        .into_iter()
        .find(|r| r.image_id == id)
    {
        return Err(ApiError::conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
            img.id().short(),
            &r.id[..12]
        )));
    }
    Ok(())
}

fn remove_one(b: &Backend, query: &str, force: bool) -> ApiResult<Vec<Value>> {
    let mut lines = Vec::new();
    if let Ok(reference) = Reference::parse(query) {
        if let Ok(target) = b.store.resolve(&reference) {
            let img = b.store.image(&target)?;
            let remaining = b
                .store
                .names_of(&target)?
                .into_iter()
                .filter(|n| n != &reference)
                .count();
            if remaining == 0 {
                ensure_unused(b, &img, force)?;
            }
            b.store.untag(&reference)?;
            lines.push(json!({"Untagged": reference.familiar()}));
            if remaining == 0 {
                b.store.remove_image(&target)?;
                lines.push(json!({"Deleted": img.id().to_string()}));
            }
            return Ok(lines);
        }
    }
    let target = b.store.lookup(query)?;
    let img = b.store.image(&target)?;
    let names = b.store.names_of(&target)?;
    if names.len() > 1 && !force {
        return Err(ApiError::conflict(format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            img.id().short()
        )));
    }
    ensure_unused(b, &img, force)?;
    for n in b.store.remove_image(&target)? {
        lines.push(json!({"Untagged": n.familiar()}));
    }
    lines.push(json!({"Deleted": img.id().to_string()}));
    Ok(lines)
}

pub async fn prune(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let only_dangling = !f.get("dangling").iter().any(|d| d == "false" || d == "0");
    let b2 = b.clone();
    let (deleted, freed) = blocking(move || {
        let used: BTreeSet<String> = b2
            .containers
            .records()?
            .into_iter()
            .map(|r| r.image_id)
            .collect();
        let mut deleted = Vec::new();
        for (target, img, names) in grouped(&b2)? {
            let id = img.id().to_string();
            if used.contains(&id) || (only_dangling && !names.is_empty()) {
                continue;
            }
            if !f.labels_match(&labels_of(&img)) {
                continue;
            }
            for n in b2.store.remove_image(&target)? {
                deleted.push(json!({"Untagged": n.familiar()}));
            }
            deleted.push(json!({"Deleted": id}));
        }
        let freed = b2
            .store
            .try_gc(&Default::default())?
            .map_or(0, |r| r.bytes_freed);
        Ok((deleted, freed))
    })
    .await?;
    Ok(ok_json(
        &json!({"ImagesDeleted": deleted, "SpaceReclaimed": freed}),
    ))
}

/// Credentials from `X-Registry-Auth` (base64url JSON), else those `berth login` saved.
fn credentials(header: Option<&str>, registry: &str) -> Option<Credentials> {
    use base64::Engine as _;
    if let Some(h) = header.filter(|h| !h.is_empty()) {
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
        ];
        for e in engines {
            if let Ok(bytes) = e.decode(h.trim()) {
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    let user = v["username"].as_str().unwrap_or("");
                    if !user.is_empty() {
                        return Some(Credentials {
                            username: user.to_string(),
                            password: v["password"].as_str().unwrap_or("").to_string(),
                        });
                    }
                }
                break;
            }
        }
    }
    CredentialStore::from_env()
        .ok()
        .and_then(|s| s.get(registry).ok().flatten())
}

fn client(reference: &Reference, auth: Option<&str>) -> ApiResult<RegistryClient> {
    RegistryClient::new(
        reference.domain(),
        ClientOptions {
            policy: TransportPolicy::from_env_and(Vec::<String>::new()),
            credentials: credentials(auth, reference.domain()),
            certs_dirs: berth_image::registry::transport::default_certs_dirs(),
            ..ClientOptions::default()
        },
    )
    .map_err(|e| ApiError::internal(e.to_string()))
}

/// A registry client for `reference` with `berth login`'s credentials (builds' base images).
pub(crate) fn registry_client(reference: &Reference) -> ApiResult<RegistryClient> {
    client(reference, None)
}

/// Pull progress as Docker's JSON lines on `tx` (a build's stream).
pub(crate) fn pull_observer(tx: mpsc::UnboundedSender<Bytes>) -> impl Observer {
    Progress { tx, push: false }
}

/// Turns pull/push events into Docker's JSON progress lines.
struct Progress {
    tx: mpsc::UnboundedSender<Bytes>,
    push: bool,
}

fn short(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex[..hex.len().min(12)].to_string()
}

fn bar(done: u64, size: u64) -> String {
    let width = 50usize;
    let filled = if size == 0 {
        width
    } else {
        ((done.min(size) as f64 / size as f64) * width as f64) as usize
    };
    let mut s = "=".repeat(filled.saturating_sub(1));
    if filled > 0 && filled < width {
        s.push('>');
    } else if filled == width {
        s.push('=');
    }
    format!("[{s:<width$}] {}/{}", human_bytes(done), human_bytes(size))
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i])
    }
}

impl Observer for Progress {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::BlobStart { digest, .. } => json!({
                "status": if self.push { "Preparing" } else { "Pulling fs layer" }, "progressDetail": {}, "id": short(digest),
            }),
            Event::BlobProgress { digest, done, size } => json!({
                "status": if self.push { "Pushing" } else { "Downloading" },
                "progressDetail": {"current": done, "total": size},
                "progress": bar(*done, *size),
                "id": short(digest),
            }),
            Event::BlobDone {
                digest, outcome, ..
            } => {
                let status = match outcome {
                    BlobOutcome::AlreadyPresent if self.push => "Layer already exists",
                    BlobOutcome::AlreadyPresent => "Already exists",
                    BlobOutcome::Downloaded => "Pull complete",
                    BlobOutcome::Uploaded => "Pushed",
                    BlobOutcome::Mounted => "Mounted from another repository",
                };
                json!({"status": status, "progressDetail": {}, "id": short(digest)})
            }
            Event::BlobRestart { digest } => {
                json!({"status": "Retrying", "progressDetail": {}, "id": short(digest)})
            }
            Event::Resolved { .. } | Event::ManifestPushed { .. } => return,
        };
        let _ = self.tx.send(json_line(&line));
    }
}

fn error_line(message: &str) -> Bytes {
    json_line(&json!({"errorDetail": {"message": message}, "error": message}))
}

/// A JSON-lines stream fed from an unbounded channel (progress observers cannot await).
pub(crate) fn progress_stream() -> (mpsc::UnboundedSender<Bytes>, Reply) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let (btx, body) = http::channel();
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if btx.send(b).await.is_err() {
                return;
            }
        }
    });
    (tx, http::stream_reply("application/json", body))
}

/// `POST /images/create?fromImage=…&tag=…` (pull) or `?fromSrc=-&repo=…` (import the
/// request body as a one-layer image).
pub async fn create(
    b: &Arc<Backend>,
    q: &Query,
    auth: Option<String>,
    body: Option<std::path::PathBuf>,
) -> ApiResult<Reply> {
    if let Some(src) = q.get("fromSrc") {
        if src != "-" {
            return Err(ApiError::bad_request(
                "importing from a URL is not supported by berth; send the tar as the body",
            ));
        }
        let path = body.ok_or_else(|| ApiError::bad_request("no tar in the body"))?;
        return import(b, q, path).await;
    }
    let from = q
        .get("fromImage")
        .ok_or_else(|| ApiError::bad_request("fromImage or fromSrc is required"))?;
    let full = match q.get("tag") {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let reference = Reference::parse(&full)
        .map_err(|e| ApiError::bad_request(format!("invalid reference format {full:?}: {e}")))?;
    let options = match q.get("platform") {
        Some(p) => PullOptions {
            platform: berth_image::registry::pull::parse_platform(p)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ..PullOptions::default()
        },
        None => PullOptions::default(),
    };
    let client = client(&reference, auth.as_deref())?;
    let (tx, reply) = progress_stream();
    let b2 = b.clone();
    tokio::spawn(async move {
        let tag = reference.tag().map(String::from).unwrap_or_else(|| {
            reference
                .digest()
                .map(|d| d.to_string())
                .unwrap_or_default()
        });
        let _ = tx.send(json_line(&json!({
            "status": format!("Pulling from {}", reference.repository()), "id": tag,
        })));
        let before = b2.store.resolve(&reference).ok();
        let progress = Progress {
            tx: tx.clone(),
            push: false,
        };
        match pull(&client, &b2.store, &reference, &options, &progress).await {
            Ok(report) => {
                let _ = tx.send(json_line(
                    &json!({"status": format!("Digest: {}", report.digest)}),
                ));
                let fresh = before.as_ref() != Some(&report.digest);
                let status = if fresh {
                    format!(
                        "Status: Downloaded newer image for {}",
                        reference.familiar()
                    )
                } else {
                    format!("Status: Image is up to date for {}", reference.familiar())
                };
                let _ = tx.send(json_line(&json!({"status": status})));
                b2.events.publish(
                    "image",
                    "pull",
                    &reference.familiar(),
                    BTreeMap::from([("name".to_string(), reference.familiar())]),
                );
            }
            Err(e) => {
                let _ = tx.send(error_line(&e.to_string()));
            }
        }
    });
    Ok(reply)
}

async fn import(b: &Arc<Backend>, q: &Query, path: std::path::PathBuf) -> ApiResult<Reply> {
    let reference = match q.get("repo") {
        Some(repo) => {
            let full = match q.get("tag") {
                Some(t) => format!("{repo}:{t}"),
                None => repo.to_string(),
            };
            Some(
                Reference::parse(&full)
                    .map_err(|e| ApiError::bad_request(format!("invalid reference: {e}")))?,
            )
        }
        None => None,
    };
    let changes: Vec<String> = q.all("changes");
    let message = q.get("message").map(String::from);
    let b2 = b.clone();
    let imported = blocking(move || {
        let f = std::fs::File::open(&path)
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
        let r = archive::import_tar(
            &b2.store,
            f,
            &ImportOptions {
                reference,
                changes,
                message,
            },
        )
        .map_err(|e| ApiError::bad_request(e.to_string()));
        let _ = std::fs::remove_file(&path);
        r
    })
    .await?;
    let id = b
        .store
        .image(&imported.target)
        .map(|i| i.id().to_string())
        .unwrap_or_default();
    Ok(ok_json(&json!({"status": id})))
}

pub async fn push_image(
    b: &Arc<Backend>,
    name: &str,
    q: &Query,
    auth: Option<String>,
) -> ApiResult<Reply> {
    let full = match q.get("tag") {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let reference = Reference::parse(&full)
        .map_err(|e| ApiError::bad_request(format!("invalid reference {full:?}: {e}")))?;
    if b.store.resolve(&reference).is_err() {
        return Err(ApiError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            reference.familiar_name()
        )));
    }
    let client = client(&reference, auth.as_deref())?;
    let (tx, reply) = progress_stream();
    let b2 = b.clone();
    tokio::spawn(async move {
        let _ = tx.send(json_line(&json!({
            "status": format!("The push refers to repository [{}]", reference.name()),
        })));
        let progress = Arc::new(Progress {
            tx: tx.clone(),
            push: true,
        });
        match push(
            &client,
            &b2.store,
            &reference,
            &PushOptions::default(),
            progress,
        )
        .await
        {
            Ok(report) => {
                let tag = reference.tag().unwrap_or("latest").to_string();
                let digest = report.digest.map(|d| d.to_string()).unwrap_or_default();
                let size = Digest::parse(&digest)
                    .ok()
                    .and_then(|d| b2.store.blob_size(&d).ok())
                    .unwrap_or(0);
                let _ = tx.send(json_line(&json!({
                    "status": format!("{tag}: digest: {digest} size: {size}"),
                })));
                let _ = tx.send(json_line(&json!({
                    "progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": size},
                })));
                b2.events.publish(
                    "image",
                    "push",
                    &reference.familiar(),
                    BTreeMap::from([("name".to_string(), reference.familiar())]),
                );
            }
            Err(e) => {
                let _ = tx.send(error_line(&e.to_string()));
            }
        }
    });
    Ok(reply)
}

/// `POST /images/load`: a `docker save` or OCI layout tar in the body.
/// `quiet` only silences progress, which berth's load does not report: the names of the
/// loaded images are always sent, as Docker does.
pub async fn load(b: &Arc<Backend>, path: std::path::PathBuf) -> ApiResult<Reply> {
    let b2 = b.clone();
    let loaded = blocking(move || {
        let f = std::fs::File::open(&path)
            .map_err(|e| ApiError::internal(format!("{}: {e}", path.display())))?;
        let r = archive::load_tar(&b2.store, f).map_err(|e| ApiError::bad_request(e.to_string()));
        let _ = std::fs::remove_file(&path);
        let mut lines = Vec::new();
        for img in r? {
            match &img.reference {
                Some(r) => lines.push(format!("Loaded image: {}\n", r.familiar())),
                None => {
                    let id = b2
                        .store
                        .image(&img.target)
                        .map(|i| i.id().to_string())
                        .unwrap_or_default();
                    lines.push(format!("Loaded image ID: {id}\n"));
                }
            }
        }
        Ok(lines)
    })
    .await?;
    let mut out = Vec::new();
    for l in loaded {
        out.extend_from_slice(&json_line(&json!({"stream": l})));
    }
    Ok(http::stream_reply("application/json", http::full(out)))
}

/// `GET /images/{name}/get` and `GET /images/get?names=…`: a `docker save` tar.
pub async fn get(b: &Arc<Backend>, names: Vec<String>) -> ApiResult<Reply> {
    let b2 = b.clone();
    let images = blocking(move || {
        let mut images = Vec::new();
        for n in &names {
            let target = b2.store.lookup(n)?;
            let refs = match Reference::parse(n) {
                Ok(r) if b2.store.resolve(&r).is_ok() => vec![r],
                _ => b2.store.names_of(&target)?,
            };
            images.push((target, refs));
        }
        Ok(images)
    })
    .await?;
    let (tx, body) = http::channel();
    let b2 = b.clone();
    tokio::task::spawn_blocking(move || {
        struct Sink(mpsc::Sender<Bytes>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .blocking_send(Bytes::copy_from_slice(buf))
                    .map_err(|_| std::io::Error::other("client went away"))?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = std::io::BufWriter::with_capacity(64 * 1024, Sink(tx));
        let _ = archive::save(&b2.store, &images, SaveFormat::Docker, out);
    });
    Ok(http::stream_reply("application/x-tar", body))
}
