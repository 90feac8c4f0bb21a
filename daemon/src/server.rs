//! Where the API listens: a unix socket (created `root:root`, mode 0660, replacing a stale
//! file left by a killed daemon — the data-root lock proves no live daemon owns it) or a TCP
//! address, which is only ever served with mutual TLS: the API is root-equivalent, so plain
//! TCP is refused before anything listens ([`api_tls`]). Serving stops when `shutdown`
//! resolves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::Endpoint;
use berth_api::v1::compose_server::ComposeServer;
use berth_api::v1::system_server::SystemServer;
use tokio_stream::wrappers::UnixListenerStream;

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
    #[error(
        "refusing to serve the API on {address} without mutual TLS: give --tlscacert, --tlscert and --tlskey{missing}, or make this node a cluster member (it then uses the cluster CA and its node certificate)"
    )]
    Unverified { address: String, missing: String },
    #[error("--tlscacert/--tlscert/--tlskey apply to a tcp:// API only, not {address}")]
    TlsOnUnix { address: String },
    #[error("API TLS: {0}")]
    Tls(#[from] berth_docker_api::TlsError),
    #[error("API TLS from the cluster credentials in {dir}: {reason}")]
    ClusterTls { dir: PathBuf, reason: String },
}

/// The TLS configuration of the API at `address`: `None` for a unix socket; for TCP, the
/// operator's files (clients must present a certificate of `--tlscacert`), else on a
/// cluster member the cluster CA and this node's live certificate (clients must present a
/// certificate of the cluster CA). Anything else on TCP is refused.
pub fn api_tls(
    address: &str,
    files: &berth_docker_api::TlsFiles,
    cluster: &Cluster,
) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    let given = [&files.ca, &files.cert, &files.key];
    let any = given.iter().any(|f| f.is_some());
    if let Endpoint::Unix(_) = Endpoint::parse(address)? {
        return if any {
            Err(ServerError::TlsOnUnix {
                address: address.to_owned(),
            })
        } else {
            Ok(None)
        };
    }
    if let (Some(ca), Some(cert), Some(key)) = (&files.ca, &files.cert, &files.key) {
        return Ok(Some(berth_docker_api::server_config(ca, cert, key)?));
    }
    if let (false, Some(live), Some(_)) = (any, &cluster.live_cert, &cluster.member) {
        let dir = crate::cluster::member::tls_dir(&cluster.data_root);
        let failed = |reason: String| ServerError::ClusterTls {
            dir: dir.clone(),
            reason,
        };
        let creds =
            berth_cluster::NodeCredentials::load(&dir).map_err(|e| failed(e.to_string()))?;
        let config = berth_cluster::server_config_live(&creds.ca_der, live.clone())
            .map_err(|e| failed(e.to_string()))?;
        return Ok(Some(config));
    }
    let missing: Vec<&str> = ["--tlscacert", "--tlscert", "--tlskey"]
        .into_iter()
        .zip(given)
        .filter(|(_, f)| f.is_none())
        .map(|(flag, _)| flag)
        .collect();
    Err(ServerError::Unverified {
        address: address.to_owned(),
        missing: if any {
            format!(" (missing: {})", missing.join(", "))
        } else {
            String::new()
        },
    })
}

/// How long open connections may finish after a shutdown signal.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

type BoxedServe<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'a>,
>;

/// A bound listener, ready to serve.
pub enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    /// TCP always carries its mutual-TLS configuration.
    Tcp(tokio::net::TcpListener, Arc<rustls::ServerConfig>),
}

impl Listener {
    /// Binds `address`; `tls` comes from [`api_tls`] and must be `Some` for TCP.
    pub async fn bind(
        address: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Listener, ServerError> {
        match (Endpoint::parse(address)?, tls) {
            (Endpoint::Unix(path), _) => bind_unix(&path).map(|l| Listener::Unix(l, path)),
            (Endpoint::Tcp(hostport), Some(tls)) => tokio::net::TcpListener::bind(&hostport)
                .await
                .map(|l| Listener::Tcp(l, tls))
                .map_err(|source| ServerError::Bind {
                    address: address.to_owned(),
                    source,
                }),
            (Endpoint::Tcp(_), None) => Err(ServerError::Unverified {
                address: address.to_owned(),
                missing: String::new(),
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
        let secrets =
            crate::secrets::SecretsService::new(node.controller.clone(), node.data_root.clone());
        let router = tonic::transport::Server::builder()
            .add_service(ComposeServer::new(ComposeService::new(node.clone())))
            .add_service(SystemServer::new(SystemService::new(node)))
            .add_service(berth_api::v1::cluster_server::ClusterServer::new(
                AdminService::new(cluster),
            ))
            .add_service(berth_api::v1::services_server::ServicesServer::new(
                crate::services::ServicesService::new(services_controller),
            ))
            .add_service(berth_api::v1::secrets_server::SecretsServer::new(secrets));
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
            // Handshakes are completed (and clients without a certificate of the CA refused)
            // before a connection reaches the router.
            Listener::Tcp(listener, tls) => (
                Box::pin(router.serve_with_incoming_shutdown(
                    crate::cluster::tls_io::incoming(listener, tls),
                    signal,
                )),
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
