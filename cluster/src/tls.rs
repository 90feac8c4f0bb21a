//! Mutual-TLS configurations for node-to-node and remote-client connections (rustls on ring).
//!
//! Both ends present a certificate issued by the cluster CA and trust only that CA: a server
//! refuses a client without one, with one from another CA, or with an expired one; a client
//! verifies the server's certificate against the CA and the server name (the node id — the
//! node certificate carries it as a DNS SAN — or an advertise address, carried as IP SANs).
//! [`peer_identity`] turns the verified peer certificate into a [`NodeIdentity`], so API
//! handlers can enforce roles with [`NodeIdentity::require_role`].
//!
//! Joining is the one exception to "both ends hold a certificate": a joining node has only its
//! token, so [`join_client_config`] pins the server's root to the token's CA fingerprint, and a
//! manager serves it with [`join_server_config`], which lets certificate-less clients finish
//! the handshake (its handlers must then refuse them everything but the join call).
//!
//! This module builds configurations only; sockets, accept loops and per-call role checks
//! belong to the caller.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::ca::NodeCredentials;
use crate::identity::{IdentityError, NodeId, NodeIdentity};
use crate::token::{CaFingerprint, JoinToken};

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
    #[error("the server did not present the cluster CA named by the join token ({fingerprint})")]
    CaNotPresented { fingerprint: CaFingerprint },
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
    server_config_live(&creds.ca_der, LiveCert::new(creds)?)
}

/// [`server_config`] presenting whatever certificate `live` holds at each handshake.
pub fn server_config_live(
    ca: &CertificateDer<'static>,
    live: Arc<LiveCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(ca, live, false)
}

/// The server configuration of both listeners: TLS 1.3, clients verified against the cluster
/// CA (certificate-less ones let through the handshake only with `allow_anonymous`), and no
/// session resumption, so every connection is verified afresh and none keeps a stale
/// certificate.
fn server_config_with(
    ca: &CertificateDer<'static>,
    live: Arc<LiveCert>,
    allow_anonymous: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider.clone());
    if allow_anonymous {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Credentials)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(live);
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A client configuration that trusts only the cluster CA and presents this node's
/// certificate. Dial with [`server_name`] of the node you expect, or its address.
pub fn client_config(creds: &NodeCredentials) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_live(&creds.ca_der, LiveCert::new(creds)?)
}

/// [`client_config`] presenting whatever certificate `live` holds at each handshake.
pub fn client_config_live(
    ca: &CertificateDer<'static>,
    live: Arc<LiveCert>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Credentials)?
        .with_webpki_verifier(verifier)
        .with_client_cert_resolver(live);
    // A resumed session would carry the certificate of its first handshake: after a renewal
    // every connection must show the new one.
    config.resumption = rustls::client::Resumption::disabled();
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

/// A server configuration for a manager's listener that also serves joining nodes: clients
/// with a certificate of the cluster CA are verified as with [`server_config`]; clients with
/// none are let through the handshake, and [`peer_identity`] then reports
/// [`TlsError::NoPeerCertificate`], so every handler but the join call must refuse them. A
/// certificate from another CA is still refused during the handshake.
pub fn join_server_config(creds: &NodeCredentials) -> Result<Arc<ServerConfig>, TlsError> {
    join_server_config_live(&creds.ca_der, LiveCert::new(creds)?)
}

/// [`join_server_config`] presenting whatever certificate `live` holds at each handshake.
pub fn join_server_config_live(
    ca: &CertificateDer<'static>,
    live: Arc<LiveCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(ca, live, true)
}

/// This node's certificate and key as the TLS configurations present them, replaceable while
/// they are in use: after a renewal [`LiveCert::replace`] makes every later handshake (as a
/// server and as a client) show the new certificate, without rebuilding listeners or
/// channels. Connections already open keep the certificate they were made with.
#[derive(Debug)]
pub struct LiveCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl LiveCert {
    pub fn new(creds: &NodeCredentials) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(LiveCert {
            current: RwLock::new(certified(creds)?),
        }))
    }

    /// Presents `creds` from the next handshake on. The key must match the certificate.
    pub fn replace(&self, creds: &NodeCredentials) -> Result<(), TlsError> {
        let next = certified(creds)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// The end-entity certificate presented now.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.get().cert[0].clone()
    }

    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn certified(creds: &NodeCredentials) -> Result<Arc<CertifiedKey>, TlsError> {
    CertifiedKey::from_der(chain(creds), creds.key.private_key_der(), &provider())
        .map(Arc::new)
        .map_err(TlsError::Credentials)
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

impl ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The client configuration of a node joining with `token`: it has no certificate yet and
/// does not know the CA, so it accepts the server only if the chain the server sends contains
/// a certificate whose sha256 is the token's fingerprint, and the server's certificate is
/// valid under that root for the name dialled (usually the manager's address).
pub fn join_client_config(token: &JoinToken) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(TokenPinnedVerifier {
        fingerprint: token.fingerprint(),
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Credentials)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// After a join handshake made with [`join_client_config`]: the cluster root the server
/// presented, which the verifier already matched against the token. This is what the joining
/// node stores as its trust anchor.
pub fn cluster_ca_from_join(
    peer_certificates: Option<&[CertificateDer<'_>]>,
    token: &JoinToken,
) -> Result<CertificateDer<'static>, TlsError> {
    peer_certificates
        .unwrap_or_default()
        .iter()
        .find(|cert| token.verify_ca(cert).is_ok())
        .map(|cert| cert.clone().into_owned())
        .ok_or(TlsError::CaNotPresented {
            fingerprint: token.fingerprint(),
        })
}

/// The chain a node presents: its certificate, then the root, so joining nodes (which know
/// only the root's fingerprint) can find it. Peers that already trust the root ignore it.
fn chain(creds: &NodeCredentials) -> Vec<CertificateDer<'static>> {
    vec![creds.cert.der.clone(), creds.ca_der.clone()]
}

/// Verifies a server against the root its chain contains, after pinning that root to the join
/// token's fingerprint.
#[derive(Debug)]
struct TokenPinnedVerifier {
    fingerprint: CaFingerprint,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for TokenPinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = intermediates
            .iter()
            .find(|cert| CaFingerprint::of_cert(cert) == self.fingerprint)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_id_is_a_dns_server_name() {
        for id in ["a", "node-1", "1node", "1-2", "0a", &"x".repeat(63)] {
            let id = NodeId::new(id).unwrap();
            match server_name(&id) {
                ServerName::DnsName(name) => assert_eq!(name.as_ref(), id.as_str()),
                other => panic!("{id}: {other:?}"),
            }
        }
    }
}
