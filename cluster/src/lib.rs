//! berth-cluster: the security foundation of a multi-host berth cluster.
//!
//! Owns the cluster certificate authority made at `cluster init` ([`ca`]), the identity a node
//! certificate carries — node id, role, validity and the renewal rule ([`identity`]), the join
//! tokens that let a new node verify the cluster and prove it was invited ([`token`]), and the
//! mutual-TLS configurations every node-to-node connection uses ([`tls`]), and the loading
//! of operator-named PEM files that berthd's and the CLI's other TLS endpoints share
//! ([`tls_files`]).
//!
//! Pure library code: it reads and writes only the directories its callers name, and never
//! opens a connection itself. Storing the CA key in the replicated store, renewing
//! certificates on a timer and enforcing roles per API call belong to `berthd`.

pub mod ca;
pub mod identity;
pub mod seal;
pub mod tls;
pub mod tls_files;
pub mod token;

mod files;

pub use ca::{
    CLIENT_ROLE, CaError, ClientCredentials, ClusterCa, MIN_NODE_CERT_LIFETIME, NodeCertRequest,
    NodeCertificate, NodeCredentials, NodeKey, parse_cert_pem,
};
pub use identity::{IdentityError, NodeId, NodeIdentity, Role, needs_renewal};
pub use seal::{ManagerKey, SealError};
pub use tls::{
    LiveCert, TlsError, client_config, client_config_live, cluster_ca_from_join,
    join_client_config, join_server_config, join_server_config_live, peer_identity, server_config,
    server_config_live, server_name,
};
pub use token::{CaFingerprint, JoinSecrets, JoinToken, TokenError};
