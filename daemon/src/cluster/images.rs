//! Images everywhere without a registry: every node of a cluster serves its content store
//! read-only over the OCI distribution API (`berth_image::distribution`) to its peers, with
//! mutual TLS under the cluster CA, on its advertise address one port above the cluster
//! listener (4246 by default). A node whose task needs an image it lacks asks the other
//! nodes in turn (`<peer>:4246/<image>`) with the ordinary registry client and, from the
//! first that has it, pulls it and names it as the service does — before the worker would
//! otherwise go to a registry or fail.
//!
//! Nothing here decides which image a task needs (the worker's translation does) or writes
//! to a peer's store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_controller::store::NodeStatus;
use berth_image::registry::progress::Silent;
use berth_image::registry::pull::{PullOptions, pull};
use berth_image::registry::{ClientOptions, RegistryClient};
use berth_image::{Reference, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::controller::Controller;

/// How far above the cluster port the image service listens.
pub const PORT_OFFSET: u16 = 1;
/// A pull from one peer that takes longer than this is given up (the next peer is tried).
const PULL_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("image service on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("image {image:?}: {reason}")]
    Reference { image: String, reason: String },
    #[error("image {image} is on no peer ({tried})")]
    NotOnPeers { image: String, tried: String },
    #[error("image {image}: recording it in the store: {source}")]
    Store {
        image: String,
        #[source]
        source: berth_image::StoreError,
    },
}

/// The image service's address for a node whose cluster listener is `cluster`.
pub fn service_addr(cluster: SocketAddr) -> SocketAddr {
    SocketAddr::new(cluster.ip(), cluster.port().wrapping_add(PORT_OFFSET))
}

/// Serves `store` to peers with certificates of the cluster until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ImagesError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ImagesError::Listen { addr, source })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let Ok((tcp, peer)) = accepted else {
                continue;
            };
            let (acceptor, store) = (acceptor.clone(), store.clone());
            tokio::spawn(async move {
                // a client without a cluster certificate fails the handshake and ends here
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => berth_image::distribution::serve_connection(tls, store).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "image service handshake"),
                    Err(_) => tracing::debug!(%peer, "image service handshake timed out"),
                }
            });
        }
    });
    Ok(())
}

/// Fetches images from peers for this node.
pub struct PeerImages {
    pub controller: Arc<Controller>,
    pub node_id: String,
    pub tls: Arc<rustls::ClientConfig>,
}

impl PeerImages {
    /// The other nodes' image service addresses, ready ones first.
    fn peers(&self) -> Vec<SocketAddr> {
        self.controller.read(|s| {
            let mut nodes: Vec<(bool, SocketAddr)> = s
                .nodes
                .values()
                .filter(|n| n.id != self.node_id)
                .filter_map(|n| {
                    let addr = n.address.parse::<SocketAddr>().ok()?;
                    Some((n.status != NodeStatus::Ready, service_addr(addr)))
                })
                .collect();
            nodes.sort();
            nodes.into_iter().map(|(_, a)| a).collect()
        })
    }

    /// Pulls `image` from the first peer that has it into `store`, under the name `image`.
    pub async fn fetch(&self, store: &Store, image: &str) -> Result<(), ImagesError> {
        let bad = |reason: String| ImagesError::Reference {
            image: image.to_owned(),
            reason,
        };
        let local = Reference::parse(image).map_err(|e| bad(e.to_string()))?;
        let mut tried = Vec::new();
        for peer in self.peers() {
            let host = peer.to_string();
            let remote =
                Reference::parse(&format!("{host}/{image}")).map_err(|e| bad(e.to_string()))?;
            let client = match RegistryClient::new(
                &host,
                ClientOptions {
                    tls: Some(self.tls.clone()),
                    ..ClientOptions::default()
                },
            ) {
                Ok(c) => c,
                Err(e) => {
                    tried.push(format!("{host}: {e}"));
                    continue;
                }
            };
            let pulled = tokio::time::timeout(
                PULL_LIMIT,
                pull(&client, store, &remote, &PullOptions::default(), &Silent),
            )
            .await;
            match pulled {
                Ok(Ok(report)) => {
                    store.put_image(&local, &report.digest).map_err(|source| {
                        ImagesError::Store {
                            image: image.to_owned(),
                            source,
                        }
                    })?;
                    // the peer's address is no name a user gave it
                    let _ = store.untag(&remote);
                    tracing::info!(%image, %peer, "image fetched from a peer");
                    return Ok(());
                }
                Ok(Err(e)) => tried.push(format!("{host}: {e}")),
                Err(_) => tried.push(format!("{host}: timed out")),
            }
        }
        Err(ImagesError::NotOnPeers {
            image: image.to_owned(),
            tried: if tried.is_empty() {
                "no other node".to_owned()
            } else {
                tried.join("; ")
            },
        })
    }
}
