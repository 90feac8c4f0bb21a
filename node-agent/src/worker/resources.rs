//! A project's networks and volumes: made before the containers that need them, with
//! Compose's names and labels, and removed with the project (`down`; volumes only with
//! `-v`). berth-network and the volume store keep no labels, so the worker records what it
//! made per project in `<data-root>/worker/projects/<project>.json` (which also says which
//! resources are external and must never be removed).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use berth_network::bridge::BridgeNetwork;
use berth_network::ipam::NetworkRequest;
use berth_network::networks::{NetworkConfig, Networks};
use berth_spec::model::Network;
use serde::{Deserialize, Serialize};

use super::naming::{LABEL_NETWORK, LABEL_PROJECT, LABEL_VOLUME};

/// What the worker made (or found, for external ones) for one project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectResources {
    /// Network id → its record.
    pub networks: BTreeMap<String, Resource>,
    /// Volume name → its record.
    pub volumes: BTreeMap<String, Resource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resource {
    /// The Compose key (`default`, `front`, `data`), empty for anonymous volumes.
    pub key: String,
    pub labels: BTreeMap<String, String>,
    pub external: bool,
}

/// The per-project records under `<data-root>/worker/projects/`.
#[derive(Debug)]
pub(crate) struct ProjectStore {
    dir: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl ProjectStore {
    pub(crate) fn open(data_root: &Path) -> std::io::Result<ProjectStore> {
        let dir = data_root.join("worker").join("projects");
        std::fs::create_dir_all(&dir)?;
        Ok(ProjectStore {
            dir,
            lock: std::sync::Mutex::new(()),
        })
    }

    fn path(&self, project: &str) -> PathBuf {
        self.dir.join(format!("{project}.json"))
    }

    pub(crate) fn load(&self, project: &str) -> ProjectResources {
        std::fs::read(self.path(project))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Read-modify-write of one project's record.
    pub(crate) fn update(
        &self,
        project: &str,
        f: impl FnOnce(&mut ProjectResources),
    ) -> Result<(), String> {
        let _g = self.lock.lock().expect("project store lock");
        let mut r = self.load(project);
        f(&mut r);
        let path = self.path(project);
        if r.networks.is_empty() && r.volumes.is_empty() {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(&r).map_err(|e| e.to_string())?;
        crate::container::record::write_atomic(&path, &json).map_err(|e| e.to_string())
    }

    pub(crate) fn projects(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .map(str::to_string)
            })
            .collect();
        out.sort();
        out
    }
}

/// Pure: the berth-network request for a Compose network definition, plus warnings for
/// what it cannot honour.
pub fn network_config(id: &str, def: &Network) -> Result<(NetworkConfig, Vec<String>), String> {
    let mut warnings = Vec::new();
    let mut request = NetworkRequest {
        enable_ipv6: def.enable_ipv6.unwrap_or(false),
        ..NetworkRequest::default()
    };
    if let Some(d) = def.driver.as_deref().filter(|d| *d != "bridge") {
        return Err(format!(
            "network {id}: driver {d:?} is not supported (only bridge)"
        ));
    }
    if def.ipam.driver.as_deref().is_some_and(|d| d != "default") {
        warnings.push(format!(
            "network {id}: ipam.driver is not supported; ignored"
        ));
    }
    for pool in &def.ipam.config {
        let Some(subnet) = pool.subnet.as_deref() else {
            continue;
        };
        let bad = |what: &str, v: &str| format!("network {id}: invalid ipam {what} {v:?}");
        if subnet.contains(':') {
            request.subnet_v6 = Some(subnet.parse().map_err(|_| bad("subnet", subnet))?);
            request.enable_ipv6 = true;
            if let Some(g) = &pool.gateway {
                request.gateway_v6 = Some(g.parse::<Ipv6Addr>().map_err(|_| bad("gateway", g))?);
            }
        } else {
            request.subnet_v4 = Some(subnet.parse().map_err(|_| bad("subnet", subnet))?);
            if let Some(g) = &pool.gateway {
                request.gateway_v4 = Some(g.parse::<Ipv4Addr>().map_err(|_| bad("gateway", g))?);
            }
        }
        if pool.ip_range.is_some() {
            warnings.push(format!(
                "network {id}: ipam ip_range is not supported; the whole subnet is used"
            ));
        }
        if !pool.aux_addresses.is_empty() {
            warnings.push(format!("network {id}: ipam aux_addresses is not supported"));
        }
    }
    let mut mtu = None;
    for (k, v) in &def.driver_opts {
        match k.as_str() {
            "com.docker.network.driver.mtu" => {
                mtu = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("network {id}: invalid mtu {v:?}"))?,
                );
            }
            other => warnings.push(format!(
                "network {id}: driver_opts {other} is not supported"
            )),
        }
    }
    if def.enable_ipv4 == Some(false) {
        warnings.push(format!(
            "network {id}: enable_ipv4: false is not supported; IPv4 stays on"
        ));
    }
    // `..default()` keeps this building when berth-network's config grows (labels, …)
    #[allow(clippy::needless_update)]
    Ok((
        NetworkConfig {
            id: id.to_string(),
            request,
            internal: def.internal,
            mtu,
            ..NetworkConfig::default()
        },
        warnings,
    ))
}

/// Creates (or finds) network `id` for `project`, recording it with its labels.
pub(crate) async fn ensure_network(
    nets: &Networks,
    store: &ProjectStore,
    lock_path: &Path,
    project: &str,
    key: &str,
    id: &str,
    def: &Network,
) -> Result<(BridgeNetwork, Vec<String>), String> {
    if let Some(n) = nets.network(id) {
        return Ok((n, Vec::new()));
    }
    if def.external.external {
        return Err(format!(
            "network {id} declared as external, but could not be found"
        ));
    }
    let (mut cfg, warnings) = network_config(id, def)?;
    let mut labels: BTreeMap<String, String> = def
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_PROJECT.into(), project.into());
    labels.insert(LABEL_NETWORK.into(), key.into());
    // kept with the network too, so Docker clients (`docker network ls`) group it by project
    cfg.labels = labels.clone();
    cfg.created = berth_shim::time::now_rfc3339();
    let lock = host_lock(lock_path, nets).await?;
    let made = nets
        .create_network(&cfg)
        .await
        .map_err(|e| format!("network {id}: {e}"));
    drop(lock);
    let net = made?;
    store.update(project, |r| {
        r.networks.insert(
            id.to_string(),
            Resource {
                key: key.into(),
                labels,
                external: false,
            },
        );
    })?;
    Ok((net, warnings))
}

/// Records volume `name` of `project` (the container layer creates it, filling it from the
/// image); an external volume must exist already.
pub(crate) fn note_volume(
    store: &ProjectStore,
    data_root: &Path,
    project: &str,
    key: Option<&str>,
    name: &str,
    def: Option<&berth_spec::model::Volume>,
) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let external = def.is_some_and(|d| d.external.external);
    if external {
        let vols = crate::volume::Volumes::open(data_root).map_err(|e| e.to_string())?;
        if !vols.data_path(name).is_dir() {
            return Err(format!(
                "volume {name} declared as external, but could not be found"
            ));
        }
    }
    if let Some(d) = def {
        if d.driver.as_deref().is_some_and(|x| x != "local") {
            warnings.push(format!(
                "volume {name}: driver {:?} is not supported; a local volume is used",
                d.driver
            ));
        }
        if !d.driver_opts.is_empty() {
            warnings.push(format!("volume {name}: driver_opts are not supported"));
        }
    }
    let mut labels: BTreeMap<String, String> = def
        .map(|d| {
            d.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    labels.insert(LABEL_PROJECT.into(), project.into());
    if let Some(k) = key {
        labels.insert(LABEL_VOLUME.into(), k.into());
    }
    store.update(project, |r| {
        r.volumes.entry(name.to_string()).or_insert(Resource {
            key: key.unwrap_or_default().into(),
            labels,
            external,
        });
    })?;
    Ok(warnings)
}

/// Takes the host-wide network lock (shared with CLI processes) off the async workers.
/// Takes the host-wide network lock, then re-reads the network state another process may
/// have changed while it was not held (see `Networks::reload`).
pub(crate) async fn host_lock(
    path: &Path,
    networks: &Networks,
) -> Result<crate::container::FileLock, String> {
    let path = path.to_path_buf();
    let lock = tokio::task::spawn_blocking(move || crate::container::FileLock::acquire(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    networks.reload().map_err(|e| e.to_string())?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_options_from_the_model() {
        let def: Network = serde_json::from_value(serde_json::json!({
            "internal": true, "enable_ipv6": true,
            "ipam": {"config": [{"subnet": "10.99.0.0/24", "gateway": "10.99.0.254"}, {"subnet": "fd00:1::/64"}]},
            "driver_opts": {"com.docker.network.driver.mtu": "1400", "x": "y"}
        }))
        .unwrap();
        let (cfg, warnings) = network_config("p_front", &def).unwrap();
        assert!(cfg.internal);
        assert_eq!(cfg.mtu, Some(1400));
        assert_eq!(cfg.request.subnet_v4.unwrap().to_string(), "10.99.0.0/24");
        assert_eq!(cfg.request.gateway_v4.unwrap().to_string(), "10.99.0.254");
        assert!(cfg.request.enable_ipv6);
        assert!(cfg.request.subnet_v6.is_some());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("driver_opts x"));
        let overlay: Network =
            serde_json::from_value(serde_json::json!({"driver": "overlay"})).unwrap();
        assert!(
            network_config("p_o", &overlay)
                .unwrap_err()
                .contains("overlay")
        );
    }
}
