//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`: what clients ask first (version
//! negotiation) and the node-wide views, computed from berth's stores.

use std::sync::Arc;

use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use crate::backend::{Backend, blocking};
use crate::error::ApiResult;
use crate::filters::Filters;
use crate::http::{self, API_VERSION, MIN_API_VERSION, Query, Reply, json_line, ok_json};
use crate::time;

pub const BERTH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The headers every `_ping` carries; clients negotiate their version from `Api-Version`.
pub fn ping(head: bool) -> Reply {
    Response::builder()
        .status(StatusCode::OK)
        .header("Api-Version", API_VERSION)
        .header("Builder-Version", "1")
        .header("Docker-Experimental", "false")
        .header("Ostype", "linux")
        .header(header::CACHE_CONTROL, "no-cache, no-store, must-revalidate")
        .header(header::PRAGMA, "no-cache")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(if head {
            http::empty()
        } else {
            http::full("OK")
        })
        .unwrap_or_else(|_| Response::new(http::empty()))
}

fn uname() -> (String, String) {
    // SAFETY: uname fills a zeroed struct; the strings it writes are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return (String::new(), String::new());
        }
        let s = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        (s(&u.release), s(&u.nodename))
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version() -> Reply {
    let (kernel, _) = uname();
    ok_json(&json!({
        "Platform": {"Name": "berth"},
        "Components": [{
            "Name": "Engine", "Version": BERTH_VERSION,
            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch(), "KernelVersion": kernel},
        }],
        "Version": BERTH_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

pub async fn info(b: &Arc<Backend>) -> ApiResult<Reply> {
    let b2 = b.clone();
    let (records, images) = blocking(move || {
        let r = crate::containers::observed(&b2)?;
        let i = b2.store.list_images()?.len();
        Ok((r, i))
    })
    .await?;
    let running = records
        .iter()
        .filter(|r| r.state.status == berth_node_agent::container::Status::Running)
        .count();
    let paused = records
        .iter()
        .filter(|r| crate::containers::is_paused(b, &r.id))
        .count();
    let (kernel, host) = uname();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(ok_json(&json!({
        "ID": crate::networks::docker_id(b, "\0node"),
        "Containers": records.len(),
        "ContainersRunning": running - paused,
        "ContainersPaused": paused,
        "ContainersStopped": records.len() - running,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "berth snapshots"]],
        "DockerRootDir": b.data_root(),
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file", "local"], "Authorization": null},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": false, "CPUSet": false, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": false, "NFd": 0, "NGoroutines": 0, "OomKillDisable": false,
        "SystemTime": berth_shim::time::now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel,
        "OperatingSystem": os_name(),
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": cpus,
        "MemTotal": crate::containers::host_memory(),
        "GenericResources": null,
        "Name": host,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": BERTH_VERSION,
        "Runtimes": {"berth-runc": {"path": b.config.runtime}},
        "DefaultRuntime": "berth-runc",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "berth-init",
        "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    })))
}

/// `GET /events`: recorded events since `since`, then live ones until `until` or until
/// the client goes away.
pub async fn events(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let since = q.get("since").and_then(time::parse_timestamp);
    let until = q.get("until").and_then(time::parse_timestamp);
    let mut live = b.events.subscribe();
    let replay = since
        .map(|s| b.events.since((s * 1e9) as i128))
        .unwrap_or_default();
    let (tx, body) = http::channel();
    let until_nanos = until.map(|u| (u * 1e9) as i128);
    tokio::spawn(async move {
        let past = |t: i128| until_nanos.is_some_and(|u| t > u);
        let mut last = 0;
        for e in replay {
            last = e.time_nano;
            if past(e.time_nano) {
                return;
            }
            if e.matches(&f) && tx.send(json_line(&e.to_json())).await.is_err() {
                return;
            }
        }
        loop {
            let deadline = match until_nanos {
                Some(u) => {
                    let wait = (u - time::now_nanos()).max(0) as u64;
                    std::time::Duration::from_nanos(wait)
                }
                None => std::time::Duration::from_secs(3600 * 24 * 365),
            };
            tokio::select! {
                e = live.recv() => match e {
                    Ok(e) => {
                        if e.time_nano <= last { continue; }
                        if past(e.time_nano) { return; }
                        if e.matches(&f) && tx.send(json_line(&e.to_json())).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                },
                _ = tokio::time::sleep(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(http::stream_reply("application/json", body))
}

pub async fn df(b: &Arc<Backend>) -> ApiResult<Reply> {
    let b2 = b.clone();
    let v = blocking(move || {
        let records = crate::containers::observed(&b2)?;
        let mut images = Vec::new();
        let mut layers = 0u64;
        let mut names: std::collections::BTreeMap<_, Vec<String>> = Default::default();
        for rec in b2.store.list_images()? {
            let e = names.entry(rec.target.clone()).or_default();
            e.extend(rec.reference.iter().map(|r| r.familiar()));
        }
        for (target, tags) in names {
            let Ok(img) = b2.store.image(&target) else {
                continue;
            };
            let id = img.id().to_string();
            let used = records.iter().filter(|r| r.image_id == id).count();
            layers += img.size();
            images.push(json!({
                "Id": id, "ParentId": "", "RepoTags": tags,
                "RepoDigests": [], "Created": time::unix_seconds(img.config.created().as_deref().unwrap_or("")),
                "Size": img.size(), "SharedSize": -1, "VirtualSize": img.size(), "Labels": {}, "Containers": used,
            }));
        }
        let containers: Vec<Value> = records
            .iter()
            .map(|r| {
                json!({
                    "Id": r.id, "Names": [format!("/{}", r.name)], "Image": r.config.image,
                    "ImageID": r.image_id, "Command": r.args.join(" "), "Created": time::unix_seconds(&r.created),
                    "State": r.state.status.as_str(), "Status": r.state.status.as_str(),
                    "SizeRw": 0, "SizeRootFs": 0, "Labels": r.labels, "Mounts": [],
                })
            })
            .collect();
        let mut volumes = Vec::new();
        for name in b2.volumes.list()? {
            let used = records
                .iter()
                .filter(|r| r.config.mounts.iter().any(|m| m.source == name))
                .count();
            volumes.push(json!({
                "Name": name, "Driver": "local", "Mountpoint": b2.volumes.data_path(&name),
                "Scope": "local", "Labels": {}, "Options": {},
                "UsageData": {"Size": crate::volumes::du(&b2.volumes.data_path(&name)), "RefCount": used},
            }));
        }
        Ok(json!({
            "LayersSize": layers, "Images": images, "Containers": containers,
            "Volumes": volumes, "BuildCache": [],
        }))
    })
    .await?;
    Ok(ok_json(&v))
}
