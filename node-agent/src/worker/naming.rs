//! Compose's names and labels for what the worker makes: containers
//! (`<project>-<service>-<n>`), networks (`<project>_<key>`), volumes (`<project>_<key>`),
//! and the `com.docker.compose.*` / `berth.*` labels tools read to find them. Pure.

use std::collections::BTreeMap;

use super::task::Assignment;

pub const LABEL_PROJECT: &str = "com.docker.compose.project";
pub const LABEL_SERVICE: &str = "com.docker.compose.service";
pub const LABEL_NUMBER: &str = "com.docker.compose.container-number";
pub const LABEL_ONEOFF: &str = "com.docker.compose.oneoff";
pub const LABEL_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const LABEL_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const LABEL_CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const LABEL_NETWORK: &str = "com.docker.compose.network";
pub const LABEL_VOLUME: &str = "com.docker.compose.volume";
pub const LABEL_TASK: &str = "berth.task.id";
pub const LABEL_APP: &str = "berth.app";

/// The container's name: `container_name` for a single replica, else
/// `<project>-<service>-<slot>` (a global task, with no slot, uses its task id's start).
pub fn container_name(a: &Assignment) -> String {
    let explicit = a
        .service_spec()
        .and_then(|s| s.container_name.clone())
        .filter(|_| a.slot.is_none_or(|n| n == 1));
    if let Some(name) = explicit {
        return name;
    }
    let suffix = match a.slot {
        Some(n) => n.to_string(),
        None => a.task_id.chars().take(12).collect(),
    };
    format!("{}-{}-{}", a.project, a.service, suffix)
}

/// The labels of a task's container: the service's own, then Compose's and berth's (which
/// win, as Compose's do).
pub fn container_labels(a: &Assignment) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = a
        .service_spec()
        .map(|s| {
            s.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let files: Vec<String> = a
        .config_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for (k, v) in [
        (LABEL_PROJECT, a.project.clone()),
        (LABEL_SERVICE, a.service.clone()),
        (
            LABEL_NUMBER,
            a.slot.map(|n| n.to_string()).unwrap_or_else(|| "1".into()),
        ),
        (LABEL_ONEOFF, "False".into()),
        (LABEL_CONFIG_HASH, a.config_hash.clone()),
        (LABEL_WORKING_DIR, a.working_dir.display().to_string()),
        (LABEL_CONFIG_FILES, files.join(",")),
        (LABEL_TASK, a.task_id.clone()),
        (LABEL_APP, a.project.clone()),
    ] {
        labels.insert(k.to_string(), v);
    }
    labels
}

/// The berth network id of Compose network `key`: its `name:` (the loader fills it in
/// as `<project>_<key>` unless set or external), else `<project>_<key>`.
pub fn network_id(project: &str, key: &str, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!("{project}_{key}"),
    }
}

/// The volume name of Compose volume `key`, by the same rule as networks.
pub fn volume_name(project: &str, key: &str, name: Option<&str>) -> String {
    network_id(project, key, name)
}

/// The name of an anonymous volume (`- /data`): unique per container and path, so a
/// recreated container gets a fresh one, as with Compose.
pub fn anonymous_volume_name(container_id: &str, target: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let h = hex::encode(Sha256::digest(format!("{container_id}\0{target}")));
    format!("anon-{}", &h[..48])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::task::Desired;
    use std::sync::Arc;

    fn assignment(slot: Option<u32>) -> Assignment {
        let app: berth_spec::App = serde_json::from_value(serde_json::json!({
            "name": "shop",
            "services": {"web": {"image": "busybox", "labels": {"a": "1", "com.docker.compose.project": "x"}}}
        }))
        .unwrap();
        Assignment {
            task_id: "0123456789abcdef0123".into(),
            project: "shop".into(),
            service: "web".into(),
            slot,
            desired: Desired::Running,
            config_hash: "h".into(),
            restarts: 0,
            app: Arc::new(app),
            working_dir: "/srv/shop".into(),
            config_files: vec!["/srv/shop/compose.yaml".into(), "/srv/shop/o.yaml".into()],
            stop_timeout: None,
            launch_ahead: false,
            keep_volumes: false,
        }
    }

    #[test]
    fn names_follow_compose() {
        assert_eq!(container_name(&assignment(Some(2))), "shop-web-2");
        assert_eq!(container_name(&assignment(None)), "shop-web-0123456789ab");
        assert_eq!(network_id("shop", "default", None), "shop_default");
        assert_eq!(network_id("shop", "x", Some("outside")), "outside");
        assert!(anonymous_volume_name("abc", "/data").starts_with("anon-"));
        assert_ne!(
            anonymous_volume_name("abc", "/data"),
            anonymous_volume_name("abd", "/data")
        );
    }

    #[test]
    fn labels_are_compose_labels_and_win() {
        let l = container_labels(&assignment(Some(3)));
        assert_eq!(l[LABEL_PROJECT], "shop");
        assert_eq!(l[LABEL_SERVICE], "web");
        assert_eq!(l[LABEL_NUMBER], "3");
        assert_eq!(l[LABEL_ONEOFF], "False");
        assert_eq!(l[LABEL_CONFIG_HASH], "h");
        assert_eq!(l[LABEL_WORKING_DIR], "/srv/shop");
        assert_eq!(
            l[LABEL_CONFIG_FILES],
            "/srv/shop/compose.yaml,/srv/shop/o.yaml"
        );
        assert_eq!(l[LABEL_TASK], "0123456789abcdef0123");
        assert_eq!(l[LABEL_APP], "shop");
        assert_eq!(l["a"], "1");
    }
}
