//! Mutual-TLS sockets for tonic: the cluster listener's stream of verified connections, each
//! carrying the peer's identity into every request ([`PeerInfo`]), and channels that dial a
//! peer by address with this node's client configuration.
//!
//! Handshakes happen here (rustls, configurations from `berth-cluster`); what a peer may do
//! is decided by the handlers.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use berth_cluster::NodeIdentity;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Uri};

/// How long a peer may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is calling: the address and, when it presented one, the identity of its verified
/// certificate (none only for a joining node).
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub identity: Option<NodeIdentity>,
}

/// A server-side TLS connection with its peer's identity.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener`, completes each handshake on its own task (a slow or
/// failing peer never holds up the others) and yields the verified ones. A client with a
/// certificate of another CA fails the handshake and never reaches a handler.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<Result<PeerStream, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = tx.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(peer = %addr, error = %e, "refused a cluster connection");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(peer = %addr, "a cluster handshake timed out");
                        return;
                    }
                };
                let identity =
                    berth_cluster::peer_identity(tls.get_ref().1.peer_certificates()).ok();
                let info = PeerInfo { addr, identity };
                let _ = sender.send(Ok(PeerStream { inner: tls, info })).await;
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A lazily connected channel to the peer at `addr`, verified under `config` by the
/// address (node certificates carry their advertise addresses as IP SANs).
pub fn channel(addr: SocketAddr, config: Arc<ClientConfig>) -> Channel {
    let connector = tokio_rustls::TlsConnector::from(config);
    // tonic needs a URI; the connector below does the dialling and TLS.
    let endpoint = Channel::from_shared(format!("http://{addr}"))
        .unwrap_or_else(|_| Channel::from_static("http://berth.invalid"))
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::IpAddress(addr.ip().into());
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    }))
}
