//! Where the API listens: a unix socket (created `root:root`, mode 0660, replacing a stale
//! file left by a killed daemon — the data-root lock proves no live daemon owns it) or a TCP
//! address. Serving stops when `shutdown` resolves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::Endpoint;
use berth_api::v1::compose_server::ComposeServer;
use berth_api::v1::system_server::SystemServer;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use crate::api::{ComposeService, Node, SystemService};
use crate::cluster::Cluster;
use crate::cluster::admin::AdminService;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Address(#[from] berth_api::EndpointError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the API: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// How long open connections may finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

type BoxedServe<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'a>,
>;

/// A bound listener, ready to serve.
pub enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    pub async fn bind(address: &str) -> Result<Listener, ServerError> {
        match Endpoint::parse(address)? {
            Endpoint::Unix(path) => bind_unix(&path).map(|l| Listener::Unix(l, path)),
            Endpoint::Tcp(hostport) => tokio::net::TcpListener::bind(&hostport)
                .await
                .map(Listener::Tcp)
                .map_err(|source| ServerError::Bind {
                    address: address.to_owned(),
                    source,
                }),
        }
    }

    /// Serves the API until `shutdown` resolves; removes the socket file afterwards.
    pub async fn serve(
        self,
        node: Arc<Node>,
        cluster: Arc<Cluster>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let services_controller = node.controller.clone();
        let router = tonic::transport::Server::builder()
            .add_service(ComposeServer::new(ComposeService::new(node.clone())))
            .add_service(SystemServer::new(SystemService::new(node)))
            .add_service(berth_api::v1::cluster_server::ClusterServer::new(
                AdminService::new(cluster),
            ))
            .add_service(berth_api::v1::services_server::ServicesServer::new(
                crate::services::ServicesService::new(services_controller),
            ));
        // Graceful shutdown waits for open connections; a client following logs would hold
        // it forever, so connections get a short grace and are then dropped.
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = stopped_tx.send(());
        };
        let grace = async move {
            let _ = stopped.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let (serving, path): (BoxedServe<'_>, Option<PathBuf>) = match self {
            Listener::Unix(listener, path) => (
                Box::pin(
                    router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), signal),
                ),
                Some(path),
            ),
            Listener::Tcp(listener) => (
                Box::pin(
                    router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal),
                ),
                None,
            ),
        };
        let result = tokio::select! {
            result = serving => result,
            () = grace => {
                tracing::info!("closing the connections still open");
                Ok(())
            }
        };
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
        Ok(result?)
    }
}

pub(crate) fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServerError> {
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |source| ServerError::Io { op, path, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(socket = %path.display(), "replaced a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("remove stale socket", path)(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|source| ServerError::Bind {
        address: format!("unix://{}", path.display()),
        source,
    })?;
    // Root-only: whoever can talk to berthd can run anything as root.
    std::os::unix::fs::chown(path, Some(0), Some(0)).map_err(io("chown", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io("chmod", path))?;
    Ok(listener)
}
