//! Mutual-TLS configurations for node-to-node and remote-client connections (rustls on ring).
//!
//! Both ends present a certificate issued by the cluster CA and trust only that CA: a server
//! refuses a client without one, with one from another CA, or with an expired one; a client
//! verifies the server's certificate against the CA and the server name (the node id — the
//! node certificate carries it as a DNS SAN — or an advertise address, carried as IP SANs).
//! [`peer_identity`] turns the verified peer certificate into a [`NodeIdentity`], so API
//! handlers can enforce roles with [`NodeIdentity::require_role`].
//!
//! This module builds configurations only; sockets, accept loops and per-call role checks
//! belong to the caller.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::ca::NodeCredentials;
use crate::identity::{IdentityError, NodeId, NodeIdentity};

/// Errors building TLS configurations or reading a peer's identity.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the cluster CA certificate is not usable as a trust anchor: {0}")]
    TrustAnchor(rustls::Error),
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(String),
    #[error("cannot use the node certificate and key: {0}")]
    Credentials(rustls::Error),
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    #[error("peer certificate: {0}")]
    PeerIdentity(#[from] IdentityError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(TlsError::TrustAnchor)?;
    Ok(Arc::new(roots))
}

/// A server configuration that requires every client to present a certificate issued by the
/// cluster CA, and presents this node's certificate. TLS 1.3 only: every peer is berth.
pub fn server_config(creds: &NodeCredentials) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&creds.ca_der)?, provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Credentials)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![creds.cert.der.clone()], creds.key.private_key_der())
        .map_err(TlsError::Credentials)?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts only the cluster CA and presents this node's
/// certificate. Dial with [`server_name`] of the node you expect, or its address.
pub fn client_config(creds: &NodeCredentials) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiServerVerifier::builder_with_provider(roots(&creds.ca_der)?, provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Credentials)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(vec![creds.cert.der.clone()], creds.key.private_key_der())
        .map_err(TlsError::Credentials)?;
    Ok(Arc::new(config))
}

/// The TLS server name under which node `id` is verified.
pub fn server_name(id: &NodeId) -> ServerName<'static> {
    // A NodeId is a DNS label by construction, so this conversion cannot fail; the fallback
    // keeps the function total without a panic path.
    ServerName::try_from(id.as_str().to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

/// The identity of the peer of a completed handshake, from its end-entity certificate (the
/// first of `peer_certificates()`, which rustls has already verified against the CA).
pub fn peer_identity(
    peer_certificates: Option<&[CertificateDer<'_>]>,
) -> Result<NodeIdentity, TlsError> {
    let leaf = peer_certificates
        .and_then(|certs| certs.first())
        .ok_or(TlsError::NoPeerCertificate)?;
    Ok(NodeIdentity::from_cert_der(leaf)?)
}
