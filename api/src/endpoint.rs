//! Where a daemon listens (`unix:///run/berth/berth.sock`, `tcp://127.0.0.1:2377`) and how a
//! client opens a channel to it. Parsing is pure; [`connect`] is the only I/O.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Uri};

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
/// reported here, not on the first call).
pub async fn connect(address: &str) -> Result<Channel, EndpointError> {
    let endpoint = Endpoint::parse(address)?;
    let failed = |source| EndpointError::Connect {
        address: endpoint.to_string(),
        source,
    };
    match &endpoint {
        Endpoint::Tcp(hostport) => {
            let uri = format!("http://{hostport}");
            let channel = Channel::from_shared(uri)
                .map_err(|_| EndpointError::Invalid {
                    address: address.to_owned(),
                    reason: "not a valid URI",
                })?
                .connect()
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
        let error = rt.block_on(connect(&address)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("cannot connect to the berth daemon at unix://"),
            "{text}"
        );
    }
}
