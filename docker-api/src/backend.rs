//! [`Backend`]: the berth objects the API is mapped onto — the node agent's [`Containers`],
//! the image [`Store`], [`Volumes`] and one long-lived [`Networks`] (shared with the
//! container layer, so its embedded DNS learns every container) — plus what only the API
//! needs: the event bus, exec sessions, attach requests waiting for a start, and small side
//! records (restart policy, labels of networks and volumes) under `<data-root>/docker-api/`.
//! It never re-implements a container, image, volume or network operation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_image::Store;
use berth_network::networks::{Networks, Options as NetOptions};
use berth_node_agent::container::{Config, Containers, SharedNetworks, scope};
use berth_node_agent::volume::Volumes;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::oneshot;

use crate::create::Extra;
use crate::error::{ApiError, ApiResult};
use crate::events::Bus;
use crate::exec::ExecSession;

/// Errors opening a backend.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("containers under {path}: {source}")]
    Containers {
        path: PathBuf,
        #[source]
        source: Box<berth_node_agent::container::ContainerError>,
    },
    #[error("volumes under {path}: {source}")]
    Volumes {
        path: PathBuf,
        #[source]
        source: berth_node_agent::volume::VolumeError,
    },
    #[error("networks under {path}: {source}")]
    Networks {
        path: PathBuf,
        #[source]
        source: berth_network::networks::NetworksError,
    },
    #[error("create directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An attach stream handed from `start` to the attach request waiting for it.
pub struct AttachHandoff {
    pub shim: berth_shim::ShimHandle,
    pub attach: berth_shim::Attach,
}

pub struct Backend {
    pub(crate) containers: Containers,
    pub(crate) store: Store,
    pub(crate) volumes: Volumes,
    pub(crate) config: Config,
    /// `<data-root>/docker-api`.
    pub(crate) state_dir: PathBuf,
    /// The berth id of this data root's default network (Docker's `bridge`).
    pub(crate) default_network: String,
    pub(crate) events: Bus,
    pub(crate) execs: Mutex<HashMap<String, Arc<ExecSession>>>,
    pub(crate) pending_attach: Mutex<HashMap<String, Vec<oneshot::Sender<AttachHandoff>>>>,
    /// Serializes read-modify-write of the side records.
    pub(crate) meta_lock: Mutex<()>,
    /// Healthchecks of the containers started here.
    pub(crate) health: crate::health::Monitors,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("data_root", &self.config.data_root)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Opens berth's objects under `config.data_root`. Must run inside a tokio runtime:
    /// the shared [`Networks`] lives on it (its DNS listeners are tasks). Networks that
    /// exist already get their bridges, rules and DNS back (as after a restart).
    pub async fn open(config: Config) -> Result<Backend, OpenError> {
        let root = config.data_root.clone();
        let net_dir = root.join("network");
        std::fs::create_dir_all(&net_dir).map_err(|source| OpenError::Io {
            path: net_dir.clone(),
            source,
        })?;
        let mut opts = NetOptions::new(net_dir.clone());
        opts.table = scope(&root).table;
        let networks = Arc::new(Networks::open(opts).map_err(|source| OpenError::Networks {
            path: net_dir.clone(),
            source,
        })?);
        if !networks.networks().is_empty() {
            networks
                .restore()
                .await
                .map_err(|source| OpenError::Networks {
                    path: net_dir,
                    source,
                })?;
        }
        let backend = Backend::open_shared(config, networks)?;
        // removals a crash cut short finish before the first request
        let sweeper = backend.containers.clone();
        let finished = tokio::task::spawn_blocking(move || sweeper.finish_interrupted_removals())
            .await
            .unwrap_or_default();
        if !finished.is_empty() {
            tracing::info!(containers = ?finished, "finished interrupted removals");
        }
        Ok(backend)
    }

    /// Like [`Backend::open`], on networks the caller already opened and restored: berthd
    /// passes its node agent's, so one process holds one copy of the network state.
    pub fn open_shared(config: Config, networks: Arc<Networks>) -> Result<Backend, OpenError> {
        let root = config.data_root.clone();
        let state_dir = root.join("docker-api");
        std::fs::create_dir_all(&state_dir).map_err(|source| OpenError::Io {
            path: state_dir.clone(),
            source,
        })?;
        let sc = scope(&root);
        let containers = Containers::open(config.clone())
            .map_err(|source| OpenError::Containers {
                path: root.clone(),
                source: Box::new(source),
            })?
            .with_shared_networks(SharedNetworks {
                networks,
                runtime: tokio::runtime::Handle::current(),
            });
        let store = containers.store().clone();
        let volumes = Volumes::open(&root).map_err(|source| OpenError::Volumes {
            path: root.clone(),
            source,
        })?;
        Ok(Backend {
            containers,
            store,
            volumes,
            config,
            state_dir,
            default_network: sc.default_network,
            events: Bus::default(),
            execs: Mutex::new(HashMap::new()),
            pending_attach: Mutex::new(HashMap::new()),
            meta_lock: Mutex::new(()),
            health: crate::health::Monitors::default(),
        })
    }

    pub fn data_root(&self) -> &Path {
        &self.config.data_root
    }

    pub fn containers(&self) -> &Containers {
        &self.containers
    }

    /// Removes every network of this data root and its nft table (the end of a test or
    /// an uninstall); containers must be gone first.
    pub async fn remove_networks(self: &Arc<Self>) -> ApiResult<()> {
        let b = self.clone();
        blocking(move || Ok(b.containers.remove_networks()?)).await
    }

    /// Publishes a container event with Docker's attributes (name, image, labels).
    pub(crate) fn container_event(
        &self,
        action: &str,
        record: &berth_node_agent::container::Record,
        extra: &[(&str, String)],
    ) {
        let mut attrs: BTreeMap<String, String> = record.labels.clone();
        attrs.insert("name".into(), record.name.clone());
        attrs.insert("image".into(), record.config.image.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.events.publish("container", action, &record.id, attrs);
    }

    fn meta_path(&self, kind: &str, key: &str) -> PathBuf {
        self.state_dir.join(kind).join(format!("{key}.json"))
    }

    /// A side record, if any.
    pub(crate) fn meta<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.meta_path(kind, key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub(crate) fn put_meta<T: Serialize>(&self, kind: &str, key: &str, v: &T) -> ApiResult<()> {
        let path = self.meta_path(kind, key);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| ApiError::internal(format!("create {}: {e}", dir.display())))?;
        let json = serde_json::to_vec_pretty(v).map_err(|e| ApiError::internal(e.to_string()))?;
        berth_node_agent::container::record::write_atomic(&path, &json)?;
        Ok(())
    }

    /// Writes a side record atomically (temporary file, rename) but without fsync: for
    /// records a crash makes moot anyway — an `AutoRemove` container's (`docker run --rm`)
    /// dies with the machine and is removed on its exit.
    pub(crate) fn put_meta_volatile<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        v: &T,
    ) -> ApiResult<()> {
        let path = self.meta_path(kind, key);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| ApiError::internal(format!("create {}: {e}", dir.display())))?;
        let json = serde_json::to_vec_pretty(v).map_err(|e| ApiError::internal(e.to_string()))?;
        let tmp = dir.join(format!(".{key}.json.{}", &random_id()[..8]));
        std::fs::write(&tmp, &json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                ApiError::internal(format!("write {}: {e}", path.display()))
            })
    }

    pub(crate) fn drop_meta(&self, kind: &str, key: &str) {
        let _ = std::fs::remove_file(self.meta_path(kind, key));
    }

    pub(crate) fn extra(&self, id: &str) -> Extra {
        self.meta("containers", id).unwrap_or_default()
    }

    /// Changes a container's side record under the lock. An update that changes nothing
    /// writes nothing: every start clears `stopped_by_user`, and a durable write (two
    /// fsyncs) on each `docker run` is a cost with no effect.
    pub(crate) fn update_extra(&self, id: &str, f: impl FnOnce(&mut Extra)) {
        let _g = self.meta_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut e = self.extra(id);
        let before = serde_json::to_vec(&e).ok();
        f(&mut e);
        if before.is_some() && serde_json::to_vec(&e).ok() == before {
            return;
        }
        let _ = self.put_meta("containers", id, &e);
    }
}

/// Runs blocking berth code (file locks, shim sockets, fork/exec) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await?
}

/// 64 random hex characters (ids of networks, volumes and exec sessions).
pub(crate) fn random_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    hex::encode(bytes)
}
