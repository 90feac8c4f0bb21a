//! What a cluster changes in the local agent's assignments before the worker sees them:
//! each task's overlay networks and addresses ([`super::network::rewrite`]; a new task
//! without an address waits), and the images its tasks need fetched from peers when this
//! node lacks them ([`super::images::PeerImages`]). A lone node has no hook.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_controller::raft_node::Status;
use berth_node_agent::container::Containers;
use berth_node_agent::worker::Assignment;
use tokio::sync::{Mutex, watch};

use super::images::PeerImages;
use super::network;
use crate::controller::Controller;
use crate::dispatcher::NodeTask;

/// After a failed peer fetch, the same image is not asked for again this soon.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What decides whether the worker must hear of a change: per task, its id, desired state,
/// spec, restarts and overlay addresses.
pub type Key = Vec<(String, String, String, u32, BTreeMap<String, Ipv4Addr>)>;

pub struct Hook {
    pub controller: Arc<Controller>,
    pub images: PeerImages,
    failed: Mutex<HashMap<String, Instant>>,
}

impl Hook {
    pub fn new(controller: Arc<Controller>, images: PeerImages) -> Hook {
        Hook {
            controller,
            images,
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes on every applied change (an address allocated, a peer's task started).
    pub fn changes(&self) -> watch::Receiver<Status> {
        self.controller.watch()
    }

    /// The worker's assignments for `tasks` and their key, or `None` when the key is
    /// `last` and nothing was dispatched (a status report, another node's change): most
    /// applied changes end here without touching the app models.
    pub async fn prepare(
        &self,
        tasks: &[NodeTask],
        containers: &Containers,
        convert: impl Fn(&NodeTask) -> Assignment,
        last: Option<&Key>,
        dispatched: bool,
    ) -> Option<(Vec<Assignment>, Key)> {
        let key: Key = self.controller.read(|s| {
            tasks
                .iter()
                .map(|t| {
                    (
                        t.task.id.clone(),
                        format!("{:?}", t.task.desired),
                        t.task.spec_hash.clone(),
                        t.task.restart_count,
                        s.overlay
                            .addresses
                            .get(&t.task.id)
                            .cloned()
                            .unwrap_or_default(),
                    )
                })
                .collect()
        });
        if !dispatched && last == Some(&key) {
            return None;
        }
        let overlay = self.controller.read(|s| {
            let mut o = s.overlay.clone();
            o.addresses
                .retain(|id, _| tasks.iter().any(|t| t.task.id == *id));
            o
        });
        let mut out = Vec::with_capacity(tasks.len());
        let mut fresh = Vec::new();
        for t in tasks {
            let Some(t) = network::rewrite(t, &overlay) else {
                continue;
            };
            let a = convert(&t);
            // a task the worker already runs has its image
            if t.task.status.state <= berth_controller::store::TaskState::Assigned {
                fresh.push(a.clone());
            }
            out.push(a);
        }
        self.fetch_missing(&fresh, containers).await;
        Some((out, key))
    }

    /// Fetches from peers each image a live task needs and the store lacks.
    async fn fetch_missing(&self, assignments: &[Assignment], containers: &Containers) {
        use berth_node_agent::worker::Desired;
        let mut images: Vec<String> = Vec::new();
        for a in assignments {
            if !matches!(a.desired, Desired::Running | Desired::Ready) {
                continue;
            }
            let Some(svc) = a.service_spec() else {
                continue;
            };
            let Ok(t) = berth_node_agent::worker::translate::translate(a, svc) else {
                continue;
            };
            let image = t.options.image;
            if !images.contains(&image) && containers.resolve_image(&image).is_err() {
                images.push(image);
            }
        }
        for image in images {
            {
                let failed = self.failed.lock().await;
                if failed
                    .get(&image)
                    .is_some_and(|at| at.elapsed() < RETRY_AFTER)
                {
                    continue;
                }
            }
            if let Err(e) = self.images.fetch(containers.store(), &image).await {
                tracing::info!(error = %e, "no peer image");
                self.failed.lock().await.insert(image, Instant::now());
            }
        }
    }
}

/// Starts a cluster member's overlay and image machinery — the allocator (acting while
/// this node leads), the overlay sync, the image service — and returns the agent's hook;
/// `None` on a lone node.
pub async fn start(
    cluster: &super::Cluster,
    controller: &Arc<Controller>,
    networks: Arc<berth_network::networks::Networks>,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<Arc<Hook>>, super::ClusterError> {
    let Some(member) = &cluster.member else {
        return Ok(None);
    };
    let tls_dir = super::member::tls_dir(&cluster.data_root);
    let creds = berth_cluster::NodeCredentials::load(&tls_dir).map_err(|source| {
        super::ClusterError::Credentials {
            dir: tls_dir.clone(),
            source,
        }
    })?;
    network::spawn_allocator(controller.clone(), shutdown.clone());
    match member.advertise.ip() {
        std::net::IpAddr::V4(tunnel) => network::spawn_sync(
            controller.clone(),
            networks,
            cluster.node_id.clone(),
            tunnel,
            shutdown.clone(),
        ),
        std::net::IpAddr::V6(_) => {
            tracing::warn!(
                "overlay networks need an IPv4 advertise address; tasks on other nodes are unreachable"
            )
        }
    }
    let image_root = cluster.data_root.join("image");
    match berth_image::Store::open(&image_root) {
        Ok(store) => {
            let addr = super::images::service_addr(member.advertise);
            if let Err(e) = super::images::serve(
                addr,
                berth_cluster::server_config(&creds)?,
                Arc::new(store),
                shutdown,
            )
            .await
            {
                tracing::warn!(error = %e, "peers cannot pull images from this node");
            } else {
                tracing::info!(%addr, "image service for peers");
            }
        }
        Err(e) => tracing::warn!(error = %e, "image store for peers"),
    }
    let images = super::images::PeerImages {
        controller: controller.clone(),
        node_id: cluster.node_id.clone(),
        tls: berth_cluster::client_config(&creds)?,
    };
    Ok(Some(Arc::new(Hook::new(controller.clone(), images))))
}
