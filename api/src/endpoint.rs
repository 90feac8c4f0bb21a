//! Where a daemon listens (`unix:///run/berth/berth.sock`, `tcp://127.0.0.1:2377`) and how a
//! client opens a channel to it. Parsing is pure; [`connect`] is the only I/O.
//!
//! A `tcp://` endpoint is only ever dialled with mutual TLS ([`ClientTls`]): the client API
//! is root-equivalent, so a plain TCP connection is refused here before any byte is sent.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Uri};

use crate::tls::{ClientTls, TlsError};

/// The daemon's default endpoint.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid daemon address {address:?}: {reason}")]
    Invalid {
        address: String,
        reason: &'static str,
    },
    #[error("cannot connect to the berth daemon at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error(
        "{address} is a TCP endpoint, which berth reaches only over mutual TLS: give --tlscacert, --tlscert and --tlskey (or BERTH_CERT_PATH, a directory with ca.pem, cert.pem and key.pem){missing}"
    )]
    TlsRequired { address: String, missing: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// A parsed daemon address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`
    Tcp(String),
}

impl Endpoint {
    /// Accepts `unix:///path`, a bare absolute path, `tcp://host:port` and `host:port`.
    pub fn parse(address: &str) -> Result<Endpoint, EndpointError> {
        let invalid = |reason| EndpointError::Invalid {
            address: address.to_owned(),
            reason,
        };
        if let Some(path) = address.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid("a unix socket path must be absolute"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if address.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(address)));
        }
        let hostport = address.strip_prefix("tcp://").unwrap_or(address);
        if hostport.contains("://") {
            return Err(invalid("only unix:// and tcp:// are supported"));
        }
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Endpoint::Tcp(hostport.to_owned()))
            }
            _ => Err(invalid("expected host:port")),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tcp(hostport) => write!(f, "tcp://{hostport}"),
        }
    }
}

/// Opens a channel to the daemon at `address` (connects eagerly, so an absent daemon is
/// reported here, not on the first call). A `tcp://` address needs `tls`; a unix socket
/// ignores it (its file mode is its access control).
pub async fn connect(address: &str, tls: &ClientTls) -> Result<Channel, EndpointError> {
    let endpoint = Endpoint::parse(address)?;
    let failed = |source| EndpointError::Connect {
        address: endpoint.to_string(),
        source,
    };
    match &endpoint {
        Endpoint::Tcp(hostport) => {
            let missing = tls.missing();
            if !missing.is_empty() {
                let missing = if missing.len() == 3 {
                    String::new()
                } else {
                    format!(" (missing: {})", missing.join(", "))
                };
                return Err(EndpointError::TlsRequired {
                    address: endpoint.to_string(),
                    missing,
                });
            }
            let config = tls.client_config()?;
            let name = crate::tls::server_name(hostport)?;
            let connector = tokio_rustls::TlsConnector::from(config);
            let hostport = hostport.clone();
            let uri = format!("http://{hostport}");
            let channel = Channel::from_shared(uri)
                .map_err(|_| EndpointError::Invalid {
                    address: address.to_owned(),
                    reason: "not a valid URI",
                })?
                .connect_timeout(std::time::Duration::from_secs(10))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let connector = connector.clone();
                    let name = name.clone();
                    let hostport = hostport.clone();
                    async move {
                        let tcp = tokio::net::TcpStream::connect(hostport).await?;
                        let _ = tcp.set_nodelay(true);
                        let tls = connector.connect(name, tcp).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(tls))
                    }
                }))
                .await
                .map_err(failed)?;
            Ok(channel)
        }
        Endpoint::Unix(path) => {
            let path = path.clone();
            // The URI is required by tonic but unused: the connector below dials the socket.
            let channel = Channel::from_static("http://berthd.invalid")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(failed)?;
            Ok(channel)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Endpoint::parse("unix:///run/berth/berth.sock").unwrap(),
            Endpoint::Unix("/run/berth/berth.sock".into())
        );
        assert_eq!(
            Endpoint::parse("/tmp/b.sock").unwrap(),
            Endpoint::Unix("/tmp/b.sock".into())
        );
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:2377").unwrap(),
            Endpoint::Tcp("127.0.0.1:2377".into())
        );
        assert_eq!(
            Endpoint::parse("localhost:1").unwrap(),
            Endpoint::Tcp("localhost:1".into())
        );
        assert!(Endpoint::parse("unix://relative").is_err());
        assert!(Endpoint::parse("http://x:1").is_err());
        assert!(Endpoint::parse("nohost").is_err());
        assert!(Endpoint::parse("h:notaport").is_err());
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("berth-api-missing-{}", std::process::id()));
        let address = format!("unix://{}/none.sock", dir.display());
        let error = rt
            .block_on(connect(&address, &ClientTls::default()))
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("cannot connect to the berth daemon at unix://"),
            "{text}"
        );
    }

    #[test]
    fn plain_tcp_is_refused_before_dialling() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Port 9 on loopback: nothing is dialled, so nothing needs to listen.
        let error = rt
            .block_on(connect("tcp://127.0.0.1:9", &ClientTls::default()))
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("only over mutual TLS"), "{text}");
        assert!(text.contains("--tlscacert"), "{text}");
        let partial = ClientTls {
            ca: Some("/nonexistent/ca.pem".into()),
            ..ClientTls::default()
        };
        let text = rt
            .block_on(connect("tcp://127.0.0.1:9", &partial))
            .unwrap_err()
            .to_string();
        assert!(text.contains("missing: --tlscert, --tlskey"), "{text}");
    }
}
