//! berthd: one node of berth. The controller role (a Raft member holding the store, the
//! orchestrator and scheduler loop, the dispatcher) and the agent role (the worker that
//! turns assignments into containers) in one process, behind the `berth.v1` gRPC API.
//!
//! [`run`] wires them in order: lock the data root, open the Raft member, register this
//! node and note the restart, open the worker (which adopts running containers), connect it
//! to the dispatcher, start the controller loop, serve the API; on SIGTERM/SIGINT it stops
//! serving and returns without stopping any container — each is supervised by its shim.

pub mod agent;
pub mod api;
pub mod cluster;
pub mod controller;
pub mod dispatcher;
pub mod events;
pub mod host;
pub mod lock;
pub mod metrics;
pub mod secrets;
pub mod server;
pub mod services;
pub mod takedown;
pub mod timefmt;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_controller::store::{Command, TaskState};
use tokio::sync::watch;

use crate::agent::Agent;
use crate::controller::{Controller, ControllerError};
use crate::dispatcher::Dispatcher;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::server::{Listener, ServerError};

/// How berthd is started.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_root: PathBuf,
    /// `unix:///run/berth/berth.sock` or `tcp://host:port`.
    pub host: String,
    pub metrics_addr: Option<SocketAddr>,
    /// The runtime's state root (`/run/berth/runc`).
    pub run_root: PathBuf,
    /// Where `berth-runc`, `berth-shim` and `berth-init` are.
    pub libexec_dir: PathBuf,
    /// Where the Docker Engine API listens (a unix socket, or TCP with mutual TLS), or
    /// `None` for no Docker API.
    pub docker: Option<berth_docker_api::Listen>,
    /// `--local-reads`: answer the read APIs from this node's applied state instead of a
    /// linearizable ReadIndex read.
    pub local_reads: bool,
    /// `--tlscacert`/`--tlscert`/`--tlskey`: the mutual TLS of a tcp:// API (a cluster
    /// member without them uses the cluster CA and its node certificate).
    pub api_tls: berth_docker_api::TlsFiles,
}

/// Where the Docker Engine API listens: `--docker-host` (`unix:///PATH`, a path, or
/// `tcp://IP:PORT`, which needs all three TLS files: a Docker API without client
/// verification is refused), by default `docker.sock` beside berthd's own unix socket
/// (`/run/berth/docker.sock`), so daemons on other sockets never share one; none when berthd
/// listens on TCP and no `--docker-host` is given. `none` turns it off.
pub fn docker_listen_for(
    host: &str,
    flag: Option<&str>,
    tls: &berth_docker_api::TlsFiles,
) -> Result<Option<berth_docker_api::Listen>, berth_docker_api::TlsError> {
    match flag {
        Some("none") | Some("") => Ok(None),
        Some(addr) => berth_docker_api::parse_listen(addr, tls).map(Some),
        None => match host.strip_prefix("unix://") {
            Some(p) => {
                let beside = std::path::Path::new(p).with_file_name("docker.sock");
                berth_docker_api::parse_listen(&beside.to_string_lossy(), tls).map(Some)
            }
            // TLS files with nothing to apply them to are a mistake, not a no-op
            None if tls != &berth_docker_api::TlsFiles::default() => {
                Err(berth_docker_api::TlsError::TlsWithoutTcp)
            }
            None => Ok(None),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("create data root {path}: {source}")]
    DataRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Lock(#[from] lock::LockError),
    #[error("{0}")]
    Host(#[from] host::HostError),
    #[error("{0}")]
    Controller(#[from] ControllerError),
    #[error("node agent: {0}")]
    Agent(#[from] berth_node_agent::worker::WorkerError),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    #[error("Docker API: {0}")]
    DockerApi(#[from] berth_docker_api::OpenError),
    #[error("Docker API: {0}")]
    DockerTls(#[from] berth_docker_api::TlsError),
    #[error("cluster: {0}")]
    Cluster(#[from] cluster::ClusterError),
}

/// Set when berthd stopped to start again (it joined or left a cluster, or its role
/// changed): `main` then executes itself anew with the same arguments.
pub static RESTART_REQUESTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down, containers keep running"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down, containers keep running"),
        }
    };
    run_until(config, stop).await
}

/// Runs the daemon until `stop` resolves.
pub async fn run_until(
    config: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.data_root).map_err(|source| DaemonError::DataRoot {
        path: config.data_root.clone(),
        source,
    })?;
    let lock = lock::DataRootLock::acquire(&config.data_root)?;
    let node_id = host::node_id(&config.data_root)?;
    let metrics = Arc::new(Metrics::default());
    let events = Arc::new(Events::default());
    let (shutdown_tx, shutdown) = watch::channel(false);

    cluster::admin::apply_pending_reset(&config.data_root).map_err(cluster::ClusterError::from)?;
    cluster::admin::apply_pending_force(&config.data_root).map_err(cluster::ClusterError::from)?;
    let opened = cluster::open(&config.data_root, &node_id).await?;
    let cluster = opened.cluster.clone();
    // Decided before anything starts: a tcp:// API without mutual TLS is refused outright.
    let api_tls = server::api_tls(&config.host, &config.api_tls, &cluster)?;
    let controller = match opened.raft {
        // A lone node: the one-member group it always was.
        None => {
            let controller =
                Controller::open(&config.data_root.join("raft"), &node_id, metrics.clone()).await?;
            controller
                .propose(Command::RegisterNode(host::node(&node_id)))
                .await?;
            controller.propose(Command::DaemonRestarted).await?;
            controller
        }
        // A cluster member: registration waits for a leader in the background, so a node
        // restarting while the quorum is down still serves reads.
        Some((raft, transport)) => {
            let peers = transport.0.clone();
            let controller =
                Controller::open_with(raft, transport, &node_id, metrics.clone(), false).await?;
            controller.set_forwarder(Arc::new(cluster::transport::Forwarder(peers)));
            controller
        }
    };
    controller.set_local_reads(config.local_reads);
    let _ = cluster.controller.set(controller.clone());
    if let Some((listener, tls)) = opened.listener {
        let service = berth_api::v1::cluster_peer_server::ClusterPeerServer::new(
            cluster::peer::PeerService::new(cluster.clone()),
        )
        .max_decoding_message_size(cluster::transport::MAX_MESSAGE)
        .max_encoding_message_size(cluster::transport::MAX_MESSAGE);
        let incoming = cluster::tls_io::incoming(listener, tls);
        let mut stop_peers = shutdown.clone();
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop_peers.changed().await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the cluster listener stopped");
            }
        });
        cluster::membership::spawn(cluster.clone(), controller.clone(), shutdown.clone());
        tracing::info!(advertise = ?cluster.member.as_ref().map(|m| m.advertise), "cluster member");
    }
    let status = controller.status();
    tracing::info!(node = %node_id, applied = status.applied, term = status.term, "controller ready");

    let files: Arc<dyn berth_node_agent::task_files::FileSource> =
        Arc::new(cluster::files::Source {
            cluster: cluster.clone(),
            controller: controller.clone(),
        });
    let agent = Arc::new(
        Agent::open(
            &config.data_root,
            &config.run_root,
            &config.libexec_dir,
            Some(files),
        )
        .await?,
    );
    let dispatcher = Dispatcher::start(
        controller.clone(),
        events.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let hook = cluster::hook::start(
        &cluster,
        &controller,
        agent.networks().clone(),
        shutdown.clone(),
    )
    .await?;
    agent.run_with(dispatcher.session(&node_id), shutdown.clone(), hook);
    tokio::spawn(controller.clone().run(shutdown.clone()));

    let node = Arc::new(api::Node {
        controller: controller.clone(),
        dispatcher,
        agent,
        events,
        metrics: metrics.clone(),
        data_root: config.data_root.clone(),
        downs: Arc::default(),
    });
    tokio::spawn(takedown::run(node.clone(), shutdown.clone()));
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
        let sampled = controller.clone();
        let sample = Arc::new(move || {
            let status = sampled.status();
            sampled.read(|s| metrics::Gauges {
                apps: s.apps.len() as u64,
                tasks: s.tasks.len() as u64,
                tasks_running: s
                    .tasks
                    .values()
                    .filter(|t| t.status.state == TaskState::Running)
                    .count() as u64,
                raft_applied: status.applied,
                raft_term: status.term,
                resident_bytes: metrics::resident_bytes(),
            })
        });
        tokio::spawn(metrics::serve(listener, metrics.clone(), sample));
        tracing::info!(%addr, "metrics served");
    }

    if let Some(listen) = &config.docker {
        let backend = Arc::new(berth_docker_api::Backend::open_shared(
            node.agent.containers().config().clone(),
            node.agent.networks().clone(),
        )?);
        match listen {
            berth_docker_api::Listen::Unix(path) => {
                let listener = server::bind_unix(path)?;
                tracing::info!(socket = %path.display(), "Docker Engine API listening");
                let path = path.clone();
                tokio::spawn(async move {
                    if let Err(e) = berth_docker_api::serve(listener, backend).await {
                        tracing::error!(socket = %path.display(), "Docker Engine API stopped: {e}");
                    }
                });
            }
            berth_docker_api::Listen::Tcp {
                addr,
                ca,
                cert,
                key,
            } => {
                let listener = berth_docker_api::TlsListener::bind(*addr, ca, cert, key).await?;
                tracing::info!(%addr, "Docker Engine API listening (mutual TLS)");
                let addr = *addr;
                tokio::spawn(async move {
                    if let Err(e) = listener.serve(backend).await {
                        tracing::error!(%addr, "Docker Engine API stopped: {e}");
                    }
                });
            }
        }
    }

    let listener = Listener::bind(&config.host, api_tls).await?;
    tracing::info!(host = %config.host, data_root = %config.data_root.display(), "berthd listening");
    let restart = cluster.restart.clone();
    let stop = async move {
        tokio::select! {
            () = stop => {}
            () = restart.notified() => {
                RESTART_REQUESTED.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    };
    let served = listener.serve(node, cluster, stop).await;
    let _ = shutdown_tx.send(true);
    if let Some(berth_docker_api::Listen::Unix(path)) = &config.docker {
        let _ = std::fs::remove_file(path);
    }
    drop(lock);
    served?;
    tracing::info!("berthd stopped");
    Ok(())
}

#[cfg(test)]
mod docker_listen_tests {
    use super::docker_listen_for;
    use berth_docker_api::{Listen, TlsFiles};

    #[test]
    fn beside_the_api_socket_unless_told() {
        let none = TlsFiles::default();
        let unix = |p: &str| Some(Listen::Unix(p.into()));
        assert_eq!(
            docker_listen_for("unix:///run/berth/berth.sock", None, &none).unwrap(),
            unix("/run/berth/docker.sock")
        );
        assert_eq!(
            docker_listen_for("tcp://127.0.0.1:2376", None, &none).unwrap(),
            None
        );
        assert_eq!(
            docker_listen_for("unix:///run/berth/berth.sock", Some("none"), &none).unwrap(),
            None
        );
        assert_eq!(
            docker_listen_for("tcp://0:1", Some("unix:///tmp/d.sock"), &none).unwrap(),
            unix("/tmp/d.sock")
        );
    }

    #[test]
    fn tcp_without_client_verification_is_refused() {
        let e = docker_listen_for(
            "unix:///run/berth/berth.sock",
            Some("tcp://127.0.0.1:2376"),
            &TlsFiles::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("without client verification"), "{e}");
        let tls = TlsFiles {
            ca: Some("/ca.pem".into()),
            ..TlsFiles::default()
        };
        assert!(docker_listen_for("tcp://127.0.0.1:1", None, &tls).is_err());
    }
}
