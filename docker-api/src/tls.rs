//! Where the API listens: a unix socket, or TCP with mutual TLS. The Docker API is
//! root-equivalent (it runs privileged containers' worth of operations), so TCP is only ever
//! served with client-certificate verification against a CA the operator names — the
//! equivalent of dockerd's `--tlsverify`; plain TCP and server-only TLS are refused before
//! anything listens. This module parses the address, loads the PEM files into a rustls
//! server configuration and runs the TLS accept loop; requests are handled by
//! [`crate::serve_io`] like any other connection. It owns no certificate issuance.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_cluster::tls_files::{self, PemError};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;

use crate::backend::Backend;

/// The PEM files of a mutual-TLS listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA whose certificates clients must present (`--docker-tlscacert`).
    pub ca: Option<PathBuf>,
    /// The server's certificate chain (`--docker-tlscert`).
    pub cert: Option<PathBuf>,
    /// The server's private key (`--docker-tlskey`).
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Where to listen, checked: TCP always carries its TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp {
        addr: SocketAddr,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Errors choosing, configuring or opening a listener; each is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "refusing to serve the Docker API on {addr} without client verification: TCP needs \
         --docker-tlscacert, --docker-tlscert and --docker-tlskey (missing: {missing})"
    )]
    Unverified { addr: String, missing: String },
    #[error("--docker-tlscacert/--docker-tlscert/--docker-tlskey apply to tcp:// only, not {0}")]
    TlsOnUnix(String),
    #[error("--docker-tlscacert/--docker-tlscert/--docker-tlskey need --docker-host tcp://IP:PORT")]
    TlsWithoutTcp,
    #[error("Docker API address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    #[error(transparent)]
    File(#[from] PemError),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Parses `unix:///path`, a bare path, or `tcp://host:port` with its TLS files. Pure: no
/// file is read here, so the refusal of plain TCP is the first thing a misconfigured
/// daemon says.
pub fn parse_listen(addr: &str, tls: &TlsFiles) -> Result<Listen, TlsError> {
    if let Some(rest) = addr.strip_prefix("tcp://") {
        let sock: SocketAddr =
            rest.trim_end_matches('/')
                .parse()
                .map_err(|e| TlsError::Address {
                    addr: addr.to_string(),
                    reason: format!("expected tcp://IP:PORT ({e})"),
                })?;
        let missing: Vec<&str> = [
            ("--docker-tlscacert", tls.ca.is_none()),
            ("--docker-tlscert", tls.cert.is_none()),
            ("--docker-tlskey", tls.key.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        return match (&tls.ca, &tls.cert, &tls.key) {
            (Some(ca), Some(cert), Some(key)) => Ok(Listen::Tcp {
                addr: sock,
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => Err(TlsError::Unverified {
                addr: addr.to_string(),
                missing: missing.join(", "),
            }),
        };
    }
    if addr.contains("://") && !addr.starts_with("unix://") {
        return Err(TlsError::Address {
            addr: addr.to_string(),
            reason: "expected unix:///PATH or tcp://IP:PORT".into(),
        });
    }
    if tls.any() {
        return Err(TlsError::TlsOnUnix(addr.to_string()));
    }
    let path = addr.strip_prefix("unix://").unwrap_or(addr);
    if path.is_empty() {
        return Err(TlsError::Address {
            addr: addr.to_string(),
            reason: "empty socket path".into(),
        });
    }
    Ok(Listen::Unix(PathBuf::from(path)))
}

/// A server configuration that presents `cert`/`key` and accepts only clients with a
/// certificate issued by `ca` (TLS 1.2 and 1.3: the docker CLI and docker-py speak both).
pub fn server_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = tls_files::ca_roots(ca)?;
    let chain = tls_files::certs("certificate", cert)?;
    let key_der = tls_files::private_key(key)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(format!("{} with {}: {e}", cert.display(), key.display())))?;
    Ok(Arc::new(config))
}

/// A bound mutual-TLS listener, ready to [`serve`](TlsListener::serve).
pub struct TlsListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    /// Loads the files and binds `addr`; every failure is reported before serving.
    pub async fn bind(
        addr: SocketAddr,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<TlsListener, TlsError> {
        let config = server_config(ca, cert, key)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TlsError::Bind { addr, source })?;
        Ok(TlsListener {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the API until the listener fails. A handshake that fails (no certificate, one
    /// from another CA) closes that connection only, and is logged at debug: a refused
    /// client sees the TLS alert.
    pub async fn serve(self, backend: Arc<Backend>) -> std::io::Result<()> {
        crate::health::resume(&backend);
        loop {
            let (tcp, peer) = self.listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(std::time::Duration::from_secs(30), acceptor.accept(tcp))
                        .await;
                match handshake {
                    Ok(Ok(tls)) => crate::serve_io(tls, backend).await,
                    Ok(Err(e)) => tracing::info!(%peer, "TLS handshake refused: {e}"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> TlsFiles {
        TlsFiles {
            ca: Some("/c/ca.pem".into()),
            cert: Some("/c/cert.pem".into()),
            key: Some("/c/key.pem".into()),
        }
    }

    #[test]
    fn unix_paths_with_and_without_scheme() {
        let none = TlsFiles::default();
        assert_eq!(
            parse_listen("unix:///run/x.sock", &none).unwrap(),
            Listen::Unix("/run/x.sock".into())
        );
        assert_eq!(
            parse_listen("/run/x.sock", &none).unwrap(),
            Listen::Unix("/run/x.sock".into())
        );
        assert!(matches!(
            parse_listen("/run/x.sock", &all()),
            Err(TlsError::TlsOnUnix(_))
        ));
    }

    #[test]
    fn tcp_needs_all_three_files() {
        let e = parse_listen("tcp://127.0.0.1:2376", &TlsFiles::default()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("without client verification"), "{msg}");
        assert!(msg.contains("--docker-tlscacert, --docker-tlscert, --docker-tlskey"));
        let mut partial = all();
        partial.ca = None;
        let msg = parse_listen("tcp://127.0.0.1:2376", &partial)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing: --docker-tlscacert)"), "{msg}");
        assert_eq!(
            parse_listen("tcp://127.0.0.1:2376", &all()).unwrap(),
            Listen::Tcp {
                addr: "127.0.0.1:2376".parse().unwrap(),
                ca: "/c/ca.pem".into(),
                cert: "/c/cert.pem".into(),
                key: "/c/key.pem".into(),
            }
        );
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert!(parse_listen("tcp://localhost", &all()).is_err());
        assert!(parse_listen("http://127.0.0.1:1", &all()).is_err());
        assert!(parse_listen("unix://", &TlsFiles::default()).is_err());
    }
}
