//! `/volumes/…`: berth's named volumes (directories under `<data-root>/volumes`), with
//! labels, creation time and whether the volume is anonymous kept in a side record.
//! A volume in use by a container is not removed (409), as Docker refuses too.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::{Backend, blocking, random_id};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{self, Query, Reply, ok_json};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub anonymous: bool,
}

pub(crate) fn mark_anonymous(b: &Backend, name: &str) {
    let meta = VolumeMeta {
        created: berth_shim::time::now_rfc3339(),
        anonymous: true,
        ..VolumeMeta::default()
    };
    let _ = b.put_meta("volumes", name, &meta);
}

pub(crate) fn forget(b: &Backend, name: &str) {
    b.drop_meta("volumes", name);
}

fn volume_json(b: &Backend, name: &str) -> Value {
    let meta: VolumeMeta = b.meta("volumes", name).unwrap_or_default();
    let path = b.volumes.data_path(name);
    let created = if meta.created.is_empty() {
        std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map(berth_shim::time::format_rfc3339)
            .unwrap_or_default()
    } else {
        meta.created.clone()
    };
    let mut labels = meta.labels.clone();
    if meta.anonymous {
        labels.insert("com.docker.volume.anonymous".into(), String::new());
    }
    json!({
        "Name": name, "Driver": "local", "Mountpoint": path, "CreatedAt": created,
        "Labels": labels, "Scope": "local", "Options": meta.options,
    })
}

/// Names of the volumes some container mounts.
fn in_use(b: &Backend) -> ApiResult<BTreeMap<String, Vec<String>>> {
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in b.containers.records()? {
        for m in &r.config.mounts {
            if m.kind == berth_node_agent::container::MountKind::Volume {
                used.entry(m.source.clone()).or_default().push(r.id.clone());
            }
        }
    }
    Ok(used)
}

pub async fn list(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let b2 = b.clone();
    let vols = blocking(move || {
        let used = in_use(&b2)?;
        let mut out = Vec::new();
        for name in b2.volumes.list()? {
            let v = volume_json(&b2, &name);
            let labels: BTreeMap<String, String> =
                serde_json::from_value(v["Labels"].clone()).unwrap_or_default();
            let dangling = !used.contains_key(&name);
            if f.any("name", |x| name.contains(x))
                && f.labels_match(&labels)
                && f.any("driver", |d| d == "local")
                && f.any("dangling", |d| (d == "true" || d == "1") == dangling)
            {
                out.push(v);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(ok_json(&json!({"Volumes": vols, "Warnings": []})))
}

pub async fn inspect(b: &Arc<Backend>, name: &str) -> ApiResult<Reply> {
    let b2 = b.clone();
    let name = name.to_string();
    let v = blocking(move || {
        if !b2.volumes.list()?.contains(&name) {
            return Err(ApiError::not_found(format!("get {name}: no such volume")));
        }
        Ok(volume_json(&b2, &name))
    })
    .await?;
    Ok(ok_json(&v))
}

pub async fn create(b: &Arc<Backend>, body: Bytes) -> ApiResult<Reply> {
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid volume config: {e}")))?
    };
    match v["Driver"].as_str().unwrap_or("") {
        "" | "local" => {}
        d => {
            return Err(ApiError::bad_request(format!(
                "volume driver {d:?} is not supported by berth (local is)"
            )));
        }
    }
    let opts: BTreeMap<String, String> =
        serde_json::from_value(v["DriverOpts"].clone()).unwrap_or_default();
    if !opts.is_empty() {
        return Err(ApiError::bad_request(
            "volume driver options (type, device, o) are not supported by berth",
        ));
    }
    let name = v["Name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(String::from)
        .unwrap_or_else(random_id);
    let labels: BTreeMap<String, String> =
        serde_json::from_value(v["Labels"].clone()).unwrap_or_default();
    let b2 = b.clone();
    let n2 = name.clone();
    let v = blocking(move || {
        let (_, created) = b2.volumes.ensure(&n2)?;
        if created {
            b2.put_meta(
                "volumes",
                &n2,
                &VolumeMeta {
                    created: berth_shim::time::now_rfc3339(),
                    labels,
                    options: BTreeMap::new(),
                    anonymous: false,
                },
            )?;
        }
        Ok(volume_json(&b2, &n2))
    })
    .await?;
    b.events.publish(
        "volume",
        "create",
        &name,
        BTreeMap::from([("driver".to_string(), "local".to_string())]),
    );
    Ok(http::json_reply(StatusCode::CREATED, &v))
}

pub async fn remove(b: &Arc<Backend>, name: &str, q: &Query) -> ApiResult<Reply> {
    let b2 = b.clone();
    let n2 = name.to_string();
    let force = q.flag("force");
    blocking(move || {
        if let Some(users) = in_use(&b2)?.get(&n2) {
            return Err(ApiError::conflict(format!(
                "remove {n2}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        match b2.volumes.remove(&n2) {
            Err(berth_node_agent::volume::VolumeError::NotFound(_)) if force => {}
            Err(berth_node_agent::volume::VolumeError::NotFound(_)) => {
                return Err(ApiError::not_found(format!("get {n2}: no such volume")));
            }
            r => r?,
        }
        forget(&b2, &n2);
        Ok(())
    })
    .await?;
    b.events.publish("volume", "destroy", name, BTreeMap::new());
    Ok(http::no_content())
}

/// Removes unused volumes: from API 1.42 only anonymous ones unless `all=true`, as Docker.
pub async fn prune(b: &Arc<Backend>, q: &Query, version: Option<(u32, u32)>) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let all = f.get("all").iter().any(|a| a == "true" || a == "1");
    let only_anonymous = version.is_none_or(|v| v >= (1, 42)) && !all;
    let b2 = b.clone();
    let (deleted, space) = blocking(move || {
        let used = in_use(&b2)?;
        let mut deleted = Vec::new();
        let mut space = 0u64;
        for name in b2.volumes.list()? {
            if used.contains_key(&name) {
                continue;
            }
            let meta: VolumeMeta = b2.meta("volumes", &name).unwrap_or_default();
            if (only_anonymous && !meta.anonymous) || !f.labels_match(&meta.labels) {
                continue;
            }
            space += du(&b2.volumes.data_path(&name));
            if b2.volumes.remove(&name).is_ok() {
                forget(&b2, &name);
                deleted.push(name);
            }
        }
        Ok((deleted, space))
    })
    .await?;
    for name in &deleted {
        b.events.publish("volume", "destroy", name, BTreeMap::new());
    }
    Ok(ok_json(
        &json!({"VolumesDeleted": deleted, "SpaceReclaimed": space}),
    ))
}

/// Bytes used by the files under `path` (symlinks not followed).
pub(crate) fn du(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}
