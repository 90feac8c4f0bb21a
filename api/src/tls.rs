//! The client side of mutual TLS to a remote berthd: which PEM files a client presents and
//! trusts ([`ClientTls`], Docker's `DOCKER_CERT_PATH` layout: `ca.pem`, `cert.pem`,
//! `key.pem`), and the rustls configuration built from them.
//!
//! The daemon is verified against the named CA only (never the system roots) and under the
//! host it was dialled by (a DNS or IP SAN of its certificate). This module reads the files
//! it is given; it does not decide where flags or environment variables come from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_cluster::tls_files::{self, PemError};
use rustls::pki_types::ServerName;

/// The environment variable naming a directory with `ca.pem`, `cert.pem` and `key.pem`.
pub const CERT_PATH_ENV: &str = "BERTH_CERT_PATH";

/// Errors loading a client's TLS material; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] PemError),
    #[error("TLS client configuration: {0}")]
    Config(String),
    #[error("{host:?} cannot be verified as a TLS server name")]
    ServerName { host: String },
}

/// The PEM files a client uses for mutual TLS: the CA the daemon's certificate must chain
/// to, and the client's own certificate chain and private key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// Fills every file not given with its conventional name in `dir` (`ca.pem`,
    /// `cert.pem`, `key.pem`), as Docker does with `DOCKER_CERT_PATH`.
    pub fn or_cert_path(self, dir: Option<&Path>) -> ClientTls {
        let Some(dir) = dir else { return self };
        ClientTls {
            ca: self.ca.or_else(|| Some(dir.join("ca.pem"))),
            cert: self.cert.or_else(|| Some(dir.join("cert.pem"))),
            key: self.key.or_else(|| Some(dir.join("key.pem"))),
        }
    }

    /// The flags still missing, in the order they are documented.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("--tlscacert", self.ca.is_none()),
            ("--tlscert", self.cert.is_none()),
            ("--tlskey", self.key.is_none()),
        ]
        .into_iter()
        .filter(|(_, missing)| *missing)
        .map(|(flag, _)| flag)
        .collect()
    }

    /// Loads the files into a client configuration (TLS 1.2 and 1.3) that trusts only the CA
    /// and presents the client certificate.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let (Some(ca), Some(cert), Some(key)) = (&self.ca, &self.cert, &self.key) else {
            return Err(TlsError::Config(format!(
                "missing {}",
                self.missing().join(", ")
            )));
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = tls_files::ca_roots(ca)?;
        let chain = tls_files::certs("certificate", cert)?;
        let key_der = tls_files::private_key(key)?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| {
                TlsError::Config(format!("{} with {}: {e}", cert.display(), key.display()))
            })?;
        Ok(Arc::new(config))
    }
}

/// The name the daemon at `hostport` is verified under: its IP address, or its host name.
pub fn server_name(hostport: &str) -> Result<ServerName<'static>, TlsError> {
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName {
        host: host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cert_path_fills_only_what_flags_left_out() {
        let tls = ClientTls {
            ca: Some("/mine/ca.pem".into()),
            ..ClientTls::default()
        }
        .or_cert_path(Some(Path::new("/certs")));
        assert_eq!(tls.ca, Some("/mine/ca.pem".into()));
        assert_eq!(tls.cert, Some("/certs/cert.pem".into()));
        assert_eq!(tls.key, Some("/certs/key.pem".into()));
        assert!(tls.missing().is_empty());
        assert_eq!(
            ClientTls::default().or_cert_path(None).missing(),
            ["--tlscacert", "--tlscert", "--tlskey"]
        );
    }

    #[test]
    fn server_names_come_from_the_host() {
        assert!(matches!(
            server_name("127.0.0.1:2376").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:2376").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("node-1.example:2376").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad host:1").is_err());
    }

    #[test]
    fn a_missing_file_is_named() {
        let tls = ClientTls {
            ca: Some("/nonexistent/ca.pem".into()),
            cert: Some("/nonexistent/cert.pem".into()),
            key: Some("/nonexistent/key.pem".into()),
        };
        let text = tls.client_config().unwrap_err().to_string();
        assert!(
            text.contains("CA certificate /nonexistent/ca.pem"),
            "{text}"
        );
    }
}
