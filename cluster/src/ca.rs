//! The cluster certificate authority: made once at `cluster init`, persisted under a directory
//! the caller names (`ca.crt`, and `ca.key` with mode 0600), loaded back on restart, and used
//! to issue node certificates — from a joining node's CSR (its key never leaves it) or with a
//! fresh key pair. Also the node-side credential bundle (CA certificate, node certificate and
//! key) and its persistence.
//!
//! Keys are ECDSA P-256 (rcgen on ring). Time is always passed in, so issuance and expiry are
//! testable without a clock. This module does not decide *who* may get a certificate (join
//! tokens, see [`crate::token`]) nor replicate the CA key among managers.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
    SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{private_dir, write_with_mode};
use crate::identity::{
    IdentityError, NODE_URI_PREFIX, NodeId, NodeIdentity, ROLE_URI_PREFIX, Role,
};
use crate::token::CaFingerprint;

/// Default lifetime of a node certificate.
pub const DEFAULT_NODE_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// Lifetime of the root certificate made at init.
pub const CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Node certificates start this much before "now", so a peer whose clock runs slightly behind
/// does not reject a certificate issued a moment ago.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(300);
/// The shortest node certificate lifetime. The validity window includes the clock-skew
/// allowance, so a lifetime under half of it (150 s) would already be in its last third —
/// due for renewal — when issued; three minutes leaves a short but real renewal period.
pub const MIN_NODE_CERT_LIFETIME: Duration = Duration::from_secs(180);

const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const NODE_CERT_FILE: &str = "node.crt";
const NODE_KEY_FILE: &str = "node.key";

/// Errors of the certificate authority and node credentials.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("a cluster CA already exists in {dir}")]
    AlreadyInitialized { dir: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is not a valid PEM {what}: {reason}")]
    BadPem {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("cannot {action}: {source}")]
    Crypto {
        action: &'static str,
        source: rcgen::Error,
    },
    #[error("the system random number generator failed")]
    Random,
    #[error("the CA private key does not belong to the CA certificate")]
    KeyMismatch,
    #[error("node certificate lifetime must be at least three minutes")]
    LifetimeTooShort,
    #[error("issued certificate does not read back: {0}")]
    Identity(#[from] IdentityError),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CaError + use<> {
    let path = path.to_owned();
    move |source| CaError::Io {
        action,
        path,
        source,
    }
}

fn crypto(action: &'static str) -> impl FnOnce(rcgen::Error) -> CaError {
    move |source| CaError::Crypto { action, source }
}

/// What a node certificate should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertRequest {
    pub node_id: NodeId,
    pub role: Role,
    /// The node's advertise addresses, written as IP SANs so peers can also dial by address.
    pub addresses: Vec<IpAddr>,
}

/// An ECDSA P-256 private key held by a node.
pub struct NodeKey(KeyPair);

impl NodeKey {
    pub fn generate() -> Result<Self, CaError> {
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map(NodeKey)
            .map_err(crypto("generate a key pair"))
    }

    pub fn from_pem(pem: &str) -> Result<Self, CaError> {
        KeyPair::from_pem(pem)
            .map(NodeKey)
            .map_err(crypto("read a private key"))
    }

    pub fn to_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// The PKCS#8 DER form rustls wants.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.0.serialize_der().into())
    }

    /// A certificate signing request naming `node_id`, to send to a manager when joining. The
    /// manager decides the certificate's contents; the CSR only proves possession of the key.
    pub fn csr(&self, node_id: &NodeId) -> Result<CertificateSigningRequestDer<'static>, CaError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, node_id.as_str());
        let csr = params
            .serialize_request(&self.0)
            .map_err(crypto("make a certificate signing request"))?;
        Ok(csr.der().clone())
    }
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeKey(..)")
    }
}

/// A node certificate the CA issued, with the identity it carries.
#[derive(Debug, Clone)]
pub struct NodeCertificate {
    pub der: CertificateDer<'static>,
    pub identity: NodeIdentity,
}

impl NodeCertificate {
    pub fn from_der(der: CertificateDer<'static>) -> Result<Self, CaError> {
        let identity = NodeIdentity::from_cert_der(&der)?;
        Ok(NodeCertificate { der, identity })
    }

    pub fn to_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }

    /// See [`crate::identity::needs_renewal`].
    pub fn needs_renewal(&self, now: SystemTime) -> bool {
        self.identity.needs_renewal(now)
    }
}

/// The cluster CA: the root certificate (kept byte for byte as made, since its hash is the
/// fingerprint in every join token) and its private key.
pub struct ClusterCa {
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    /// rcgen's view of the root used as the issuer when signing: it carries the subject and
    /// key identifier copied from `cert_der`.
    issuer: rcgen::Certificate,
    node_cert_lifetime: Duration,
}

impl ClusterCa {
    /// Makes a new self-signed root and persists it in `dir` (created with mode 0700 if
    /// needed). Refuses to overwrite an existing CA.
    pub fn init(dir: &Path, now: SystemTime) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() || key_path.exists() {
            return Err(CaError::AlreadyInitialized {
                dir: dir.to_owned(),
            });
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(crypto("generate the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("berth cluster CA {}", random_hex(4)?),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "berth");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let start = now.checked_sub(CLOCK_SKEW_ALLOWANCE).unwrap_or(now);
        params.not_before = OffsetDateTime::from(start);
        params.not_after = OffsetDateTime::from(now + CA_LIFETIME);
        params.serial_number = Some(random_serial()?);
        let issuer = params
            .self_signed(&key)
            .map_err(crypto("self-sign the CA certificate"))?;
        let cert_der = issuer.der().clone();

        private_dir(dir).map_err(io_err("create", dir))?;
        // Key first: a directory holding a certificate without its key must never look like a
        // usable CA.
        write_with_mode(&key_path, key.serialize_pem().as_bytes(), 0o600)
            .map_err(io_err("write", &key_path))?;
        write_with_mode(&cert_path, issuer.pem().as_bytes(), 0o644)
            .map_err(io_err("write", &cert_path))?;
        Ok(ClusterCa {
            cert_der,
            key,
            issuer,
            node_cert_lifetime: DEFAULT_NODE_CERT_LIFETIME,
        })
    }

    /// Loads a CA that [`ClusterCa::init`] persisted in `dir`.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_der = read_cert_pem(&cert_path)?;
        let key_pem = fs::read_to_string(&key_path).map_err(io_err("read", &key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::BadPem {
            path: key_path.clone(),
            what: "private key",
            reason: e.to_string(),
        })?;
        Self::from_parts(cert_der, key)
    }

    /// A CA from its root certificate and key in PEM (as a sealed store keeps them).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let origin = Path::new("<sealed cluster secrets>");
        let cert_der = parse_cert_pem(cert_pem, origin)?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::BadPem {
            path: origin.to_owned(),
            what: "private key",
            reason: e.to_string(),
        })?;
        Self::from_parts(cert_der, key)
    }

    /// The CA's private key, PEM: only for sealing into the replicated store.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn from_parts(cert_der: CertificateDer<'static>, key: KeyPair) -> Result<Self, CaError> {
        // A key that does not belong to the root would sign certificates no peer accepts.
        let (_, parsed) = X509Certificate::from_der(&cert_der).map_err(|e| CaError::Crypto {
            action: "read the CA certificate",
            source: rcgen::Error::X509(e.to_string()),
        })?;
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(CaError::KeyMismatch);
        }
        let params = CertificateParams::from_ca_cert_der(&cert_der)
            .map_err(crypto("read the CA certificate"))?;
        // Re-signing yields a different byte string (ECDSA is randomized) but the same subject,
        // key identifier and key: all that issuing needs. `cert_der` stays the original.
        let issuer = params
            .self_signed(&key)
            .map_err(crypto("rebuild the CA issuer"))?;
        Ok(ClusterCa {
            cert_der,
            key,
            issuer,
            node_cert_lifetime: DEFAULT_NODE_CERT_LIFETIME,
        })
    }

    /// Sets the lifetime of node certificates issued from now on (default 90 days), at least
    /// [`MIN_NODE_CERT_LIFETIME`].
    pub fn with_node_cert_lifetime(mut self, lifetime: Duration) -> Result<Self, CaError> {
        if lifetime < MIN_NODE_CERT_LIFETIME {
            return Err(CaError::LifetimeTooShort);
        }
        self.node_cert_lifetime = lifetime;
        Ok(self)
    }

    pub fn node_cert_lifetime(&self) -> Duration {
        self.node_cert_lifetime
    }

    /// The root certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert_der)
    }

    /// sha256 of the root certificate's DER: what join tokens carry.
    pub fn fingerprint(&self) -> CaFingerprint {
        CaFingerprint::of_cert(&self.cert_der)
    }

    /// Issues a certificate for the key in a joining node's CSR. Only the CSR's public key is
    /// used; the subject, names and role come from `request`, which the manager decided.
    pub fn issue_for_csr(
        &self,
        csr: &CertificateSigningRequestDer<'_>,
        request: &NodeCertRequest,
        now: SystemTime,
    ) -> Result<NodeCertificate, CaError> {
        let mut csr =
            CertificateSigningRequestParams::from_der(csr).map_err(crypto("read the CSR"))?;
        csr.params = self.node_params(request, now)?;
        let cert = csr
            .signed_by(&self.issuer, &self.key)
            .map_err(crypto("sign the node certificate"))?;
        NodeCertificate::from_der(cert.der().clone())
    }

    /// Issues a certificate with a fresh key pair (for the init node, or a node the manager
    /// provisions itself).
    pub fn issue_with_new_key(
        &self,
        request: &NodeCertRequest,
        now: SystemTime,
    ) -> Result<NodeCredentials, CaError> {
        let key = NodeKey::generate()?;
        let cert = self
            .node_params(request, now)?
            .signed_by(&key.0, &self.issuer, &self.key)
            .map_err(crypto("sign the node certificate"))?;
        Ok(NodeCredentials {
            ca_der: self.cert_der.clone(),
            cert: NodeCertificate::from_der(cert.der().clone())?,
            key,
        })
    }

    /// Issues a certificate for a remote client of the berthd API (`berth cluster
    /// client-cert`), with a fresh key pair. It is not a node certificate: its role is
    /// [`CLIENT_ROLE`] and it names no node, so [`NodeIdentity::from_cert_der`] rejects it and
    /// the cluster port treats its holder as having no identity (every node call is refused);
    /// its only key usage is TLS client authentication.
    pub fn issue_client(
        &self,
        name: &str,
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<ClientCredentials, CaError> {
        let key = NodeKey::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, CLIENT_ROLE);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "berth");
        let ia5 = |s: String| {
            rcgen::Ia5String::try_from(s).map_err(crypto("encode a subject alternative name"))
        };
        params.subject_alt_names = vec![
            SanType::URI(ia5(format!("{CLIENT_URI_PREFIX}{name}"))?),
            SanType::URI(ia5(format!("{ROLE_URI_PREFIX}{CLIENT_ROLE}"))?),
        ];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let start = now.checked_sub(CLOCK_SKEW_ALLOWANCE).unwrap_or(now);
        params.not_before = OffsetDateTime::from(start);
        params.not_after = OffsetDateTime::from(now + lifetime);
        params.serial_number = Some(random_serial()?);
        let cert = params
            .signed_by(&key.0, &self.issuer, &self.key)
            .map_err(crypto("sign the client certificate"))?;
        Ok(ClientCredentials {
            ca_pem: self.cert_pem(),
            cert_pem: pem_encode("CERTIFICATE", cert.der()),
            key_pem: key.to_pem(),
        })
    }

    fn node_params(
        &self,
        request: &NodeCertRequest,
        now: SystemTime,
    ) -> Result<CertificateParams, CaError> {
        let id = request.node_id.as_str();
        let role = request.role.as_str();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, id);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "berth");
        let ia5 = |s: String| {
            rcgen::Ia5String::try_from(s).map_err(crypto("encode a subject alternative name"))
        };
        params.subject_alt_names = vec![
            SanType::URI(ia5(format!("{NODE_URI_PREFIX}{id}"))?),
            SanType::URI(ia5(format!("{ROLE_URI_PREFIX}{role}"))?),
            SanType::DnsName(ia5(id.to_owned())?),
        ];
        params
            .subject_alt_names
            .extend(request.addresses.iter().copied().map(SanType::IpAddress));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let start = now.checked_sub(CLOCK_SKEW_ALLOWANCE).unwrap_or(now);
        params.not_before = OffsetDateTime::from(start);
        params.not_after = OffsetDateTime::from(now + self.node_cert_lifetime);
        params.serial_number = Some(random_serial()?);
        Ok(params)
    }
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint().to_string())
            .field("node_cert_lifetime", &self.node_cert_lifetime)
            .finish_non_exhaustive()
    }
}

/// The role written into remote-client certificates (never a node [`Role`]).
pub const CLIENT_ROLE: &str = "client";
/// Prefix of the SAN URI naming a remote client.
pub const CLIENT_URI_PREFIX: &str = "berth://client/";

/// A remote client's PEM bundle: the cluster root to trust, its certificate and its key.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a node holds to speak mutual TLS in its cluster.
#[derive(Debug)]
pub struct NodeCredentials {
    /// The cluster root it trusts.
    pub ca_der: CertificateDer<'static>,
    pub cert: NodeCertificate,
    pub key: NodeKey,
}

impl NodeCredentials {
    /// Persists the bundle in `dir` (mode 0700): `ca.crt`, `node.crt`, `node.key` (0600).
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        private_dir(dir).map_err(io_err("create", dir))?;
        let key_path = dir.join(NODE_KEY_FILE);
        write_with_mode(&key_path, self.key.to_pem().as_bytes(), 0o600)
            .map_err(io_err("write", &key_path))?;
        let cert_path = dir.join(NODE_CERT_FILE);
        write_with_mode(&cert_path, self.cert.to_pem().as_bytes(), 0o644)
            .map_err(io_err("write", &cert_path))?;
        let ca_path = dir.join(CA_CERT_FILE);
        write_with_mode(
            &ca_path,
            pem_encode("CERTIFICATE", &self.ca_der).as_bytes(),
            0o644,
        )
        .map_err(io_err("write", &ca_path))
    }

    /// Loads a bundle [`NodeCredentials::save`] wrote.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let ca_der = read_cert_pem(&dir.join(CA_CERT_FILE))?;
        let cert = NodeCertificate::from_der(read_cert_pem(&dir.join(NODE_CERT_FILE))?)?;
        let key_path = dir.join(NODE_KEY_FILE);
        let pem = fs::read_to_string(&key_path).map_err(io_err("read", &key_path))?;
        let key = NodeKey::from_pem(&pem).map_err(|e| CaError::BadPem {
            path: key_path.clone(),
            what: "private key",
            reason: e.to_string(),
        })?;
        Ok(NodeCredentials { ca_der, cert, key })
    }
}

fn read_cert_pem(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let text = fs::read_to_string(path).map_err(io_err("read", path))?;
    parse_cert_pem(&text, path)
}

/// A certificate from PEM text; `path` names its origin in errors.
pub fn parse_cert_pem(text: &str, path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let block = pem::parse(text).map_err(|e| CaError::BadPem {
        path: path.to_owned(),
        what: "certificate",
        reason: e.to_string(),
    })?;
    if block.tag() != "CERTIFICATE" {
        return Err(CaError::BadPem {
            path: path.to_owned(),
            what: "certificate",
            reason: format!("found a {} block", block.tag()),
        });
    }
    Ok(CertificateDer::from(block.into_contents()))
}

fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// A random tag for the root's name: two clusters' roots never share a subject, so a verifier
/// shown a certificate of the other cluster reports an unknown issuer rather than trying the
/// wrong key.
fn random_hex(len: usize) -> Result<String, CaError> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random positive 128-bit serial: unique without coordination between managers.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Random)?;
    // Clear the sign bit (DER integers are signed) and keep the first byte non-zero so the
    // encoding stays minimal.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod client_cert_tests {
    use super::*;

    #[test]
    fn a_client_certificate_is_not_a_node_identity() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let ca = ClusterCa::init(dir.path(), now).unwrap();
        let client = ca
            .issue_client("ops-laptop", Duration::from_secs(3600), now)
            .unwrap();
        assert_eq!(client.ca_pem, ca.cert_pem());
        let der = parse_cert_pem(&client.cert_pem, Path::new("cert.pem")).unwrap();
        // The cluster port reads identities with this: a client certificate has none.
        assert!(NodeIdentity::from_cert_der(&der).is_err());
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let ou = cert.subject().iter_organizational_unit().next().unwrap();
        assert_eq!(ou.as_str().unwrap(), CLIENT_ROLE);
        NodeKey::from_pem(&client.key_pem).unwrap();
    }
}
