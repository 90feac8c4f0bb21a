//! berthd in a multi-host cluster: membership, mutual TLS between nodes, the Raft transport,
//! write forwarding and node liveness.
//!
//! Every node of a cluster is a member of the one Raft group — managers as voters, workers as
//! learners — so each holds the applied state, and the dispatcher of every node hands its own
//! agent the tasks placed there; nothing but Raft messages and forwarded writes crosses the
//! network, always over mutual TLS ([`tls_io`]). What only managers may read (the CA key and
//! join secrets) is sealed in the store with the managers' key.
//!
//! - [`member`]: what a node keeps on disk about its cluster;
//! - [`transport`]: Raft messages and forwarded writes to peers;
//! - [`peer`]: the `ClusterPeer` service other nodes call (join, raft, propose, renew), with
//!   the caller's role taken from its certificate;
//! - [`admin`]: the operator's `Cluster` service on the local socket (init, join, tokens,
//!   leave, nodes);
//! - [`files`]: Compose secrets and configs, sealed in the store, opened for the tasks
//!   placed on this node;
//! - [`membership`]: the leader's loop that keeps the Raft configuration in step with the
//!   node records and marks silent nodes down, and every node's check that its certificate
//!   matches its role.
//!
//! A lone node (no `member.json`) runs none of this beyond the admin service.

pub mod admin;
pub mod files;
pub mod hook;
pub mod images;
pub mod member;
pub mod membership;
pub mod network;
pub mod peer;
pub mod tls_io;
pub mod transport;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use berth_cluster::{ClusterCa, JoinSecrets, LiveCert, ManagerKey, NodeCredentials};
use berth_controller::raft_node::RaftConfig;
use berth_controller::store::{ClusterSecrets, State};
use tokio::sync::Notify;

use crate::controller::Controller;
use member::Member;
use transport::Peers;

/// The default port of the cluster listener.
pub const DEFAULT_PORT: u16 = 4245;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Member(#[from] member::MemberError),
    #[error("cluster credentials in {dir}: {source}")]
    Credentials {
        dir: PathBuf,
        #[source]
        source: berth_cluster::CaError,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] berth_cluster::TlsError),
    #[error("the managers' key: {0}")]
    Seal(#[from] berth_cluster::SealError),
    #[error("cluster listener on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Controller(#[from] crate::controller::ControllerError),
}

/// This node's cluster side, shared by the services and loops.
pub struct Cluster {
    pub data_root: PathBuf,
    pub node_id: String,
    /// `Some` once the node is in a cluster (read at start; joining or leaving restarts).
    pub member: Option<Member>,
    pub peers: Option<Arc<Peers>>,
    /// The certificate every TLS configuration of this node presents; renewal replaces it
    /// in place (`Some` in a cluster).
    pub live_cert: Option<Arc<LiveCert>>,
    pub manager_key: RwLock<Option<ManagerKey>>,
    /// Set once the controller is open.
    pub controller: std::sync::OnceLock<Arc<Controller>>,
    /// Asks berthd to stop serving and start again (into or out of a cluster).
    pub restart: Arc<Notify>,
}

/// What the opened cluster side hands to `run`.
pub struct Opened {
    pub cluster: Arc<Cluster>,
    pub raft: Option<(RaftConfig, transport::GrpcTransport)>,
    pub listener: Option<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)>,
}

/// Raft timing in a cluster: 50 ms ticks, heartbeats every 100 ms, elections after 0.5–1 s of
/// silence, so a dead leader is replaced well within 2 s.
pub fn raft_config(raft_dir: &Path, member: &Member) -> RaftConfig {
    RaftConfig {
        id: member.raft_id,
        dir: raft_dir.to_owned(),
        initial_voters: member.voters.clone(),
        initial_learners: member.learners.clone(),
        tick: Duration::from_millis(50),
        election_ticks: 10,
        heartbeat_ticks: 2,
        compact_every: 10_000,
        keep_after_compaction: 1_000,
    }
}

/// Reads this node's cluster files; in a cluster, binds the listener and builds the
/// transport (the listener is served once the controller is open).
pub async fn open(data_root: &Path, node_id: &str) -> Result<Opened, ClusterError> {
    let member = Member::load(data_root)?;
    let manager_key = ManagerKey::load(&member::dir(data_root))?;
    let (mut peers, mut raft, mut listener, mut live_cert) = (None, None, None, None);
    if let Some(member) = &member {
        let tls_dir = member::tls_dir(data_root);
        let creds =
            NodeCredentials::load(&tls_dir).map_err(|source| ClusterError::Credentials {
                dir: tls_dir.clone(),
                source,
            })?;
        let live = LiveCert::new(&creds)?;
        let book = Peers::new(berth_cluster::client_config_live(
            &creds.ca_der,
            live.clone(),
        )?);
        for peer in &member.peers {
            book.set_address(peer.raft_id, peer.address);
        }
        let server = berth_cluster::join_server_config_live(&creds.ca_der, live.clone())?;
        live_cert = Some(live);
        let bound = tokio::net::TcpListener::bind(member.advertise)
            .await
            .map_err(|source| ClusterError::Listen {
                addr: member.advertise,
                source,
            })?;
        raft = Some((
            raft_config(&data_root.join("raft"), member),
            transport::GrpcTransport(book.clone()),
        ));
        listener = Some((bound, server));
        peers = Some(book);
    }
    let cluster = Arc::new(Cluster {
        data_root: data_root.to_owned(),
        node_id: node_id.to_owned(),
        member,
        peers,
        live_cert,
        manager_key: RwLock::new(manager_key),
        controller: std::sync::OnceLock::new(),
        restart: Arc::new(Notify::new()),
    });
    Ok(Opened {
        cluster,
        raft,
        listener,
    })
}

/// What the sealed store value holds.
pub struct Secrets {
    pub ca: ClusterCa,
    pub join: JoinSecrets,
}

const SECRETS_SEPARATOR: &str = "\n--- join secrets ---\n";
/// Followed by the node certificate lifetime in seconds (absent in clusters made before it).
const LIFETIME_SEPARATOR: &str = "\n--- node certificate lifetime ---\n";

impl Cluster {
    pub fn controller(&self) -> Option<&Arc<Controller>> {
        self.controller.get()
    }

    pub fn is_manager(&self) -> bool {
        self.manager_key
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Opens the sealed CA and join secrets of the store with this node's managers' key.
    pub fn secrets(&self, state: &State) -> Result<Secrets, String> {
        let key = self.manager_key.read().unwrap_or_else(|e| e.into_inner());
        let key = key
            .as_ref()
            .ok_or("this node is not a manager (it holds no managers' key)")?;
        let stored = state
            .cluster
            .as_ref()
            .ok_or("this node is not part of a cluster")?;
        let plain = key.open(&stored.sealed).map_err(|e| e.to_string())?;
        let plain = String::from_utf8(plain).map_err(|e| e.to_string())?;
        let (key_pem, rest) = plain
            .split_once(SECRETS_SEPARATOR)
            .ok_or("the sealed cluster secrets are malformed")?;
        let (join, lifetime) = match rest.split_once(LIFETIME_SEPARATOR) {
            Some((join, secs)) => {
                let secs: u64 = secs
                    .trim()
                    .parse()
                    .map_err(|_| "the sealed certificate lifetime is malformed")?;
                (join, Some(Duration::from_secs(secs)))
            }
            None => (rest, None),
        };
        let mut ca =
            ClusterCa::from_pem(&stored.ca_cert_pem, key_pem).map_err(|e| e.to_string())?;
        if let Some(lifetime) = lifetime {
            ca = ca
                .with_node_cert_lifetime(lifetime)
                .map_err(|e| e.to_string())?;
        }
        let join = JoinSecrets::from_text(join, Path::new("<sealed join secrets>"))
            .map_err(|e| e.to_string())?;
        Ok(Secrets { ca, join })
    }
}

/// Seals the CA key and join secrets for the store.
pub fn seal(
    key: &ManagerKey,
    ca: &ClusterCa,
    join: &JoinSecrets,
) -> Result<ClusterSecrets, String> {
    let plain = format!(
        "{}{SECRETS_SEPARATOR}{}{LIFETIME_SEPARATOR}{}",
        ca.key_pem(),
        join.to_text(),
        ca.node_cert_lifetime().as_secs()
    );
    Ok(ClusterSecrets {
        ca_cert_pem: ca.cert_pem(),
        sealed: key.seal(plain.as_bytes()).map_err(|e| e.to_string())?,
    })
}

/// Parses `ip[:port]` (port 4245 by default).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("{text:?} is not an address (ip or ip:port)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_a_default_port() {
        assert_eq!(
            parse_addr("10.0.0.1").unwrap(),
            "10.0.0.1:4245".parse().unwrap()
        );
        assert_eq!(
            parse_addr("10.0.0.1:99").unwrap(),
            "10.0.0.1:99".parse().unwrap()
        );
        assert!(parse_addr("host.example").is_err());
    }
}
