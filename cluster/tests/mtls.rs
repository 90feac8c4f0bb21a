//! Real mutual-TLS handshakes over loopback TCP with the configurations berth-cluster builds:
//! accepted with certificates of the cluster CA (and both ends learn each other's identity),
//! refused for a certificate of another CA, an expired certificate, no certificate, and the
//! wrong server name; roles read from the verified connection gate manager-only calls.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_cluster::{
    ClusterCa, IdentityError, JoinSecrets, JoinToken, LiveCert, NodeCertRequest, NodeCredentials,
    NodeId, NodeIdentity, Role, TlsError, client_config, client_config_live, cluster_ca_from_join,
    join_client_config, join_server_config, join_server_config_live, peer_identity, server_config,
    server_name,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DAY: Duration = Duration::from_secs(86_400);
const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    _dir: tempfile::TempDir,
    ca: ClusterCa,
}

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::init(dir.path(), SystemTime::now()).unwrap();
    Cluster { _dir: dir, ca }
}

fn node(ca: &ClusterCa, id: &str, role: Role, issued_at: SystemTime) -> NodeCredentials {
    let request = NodeCertRequest {
        node_id: NodeId::new(id).unwrap(),
        role,
        addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    };
    ca.issue_with_new_key(&request, issued_at).unwrap()
}

/// What each side saw: the peer's identity, or why the connection failed.
struct Outcome {
    server: Result<NodeIdentity, String>,
    client: Result<NodeIdentity, String>,
}

/// Runs one connection: the server accepts, reads "ping", answers "pong"; the client succeeds
/// only once it has read "pong", so a refusal the server sends after the client's side of the
/// TLS 1.3 handshake completed still counts as a failure.
async fn connect(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> Outcome {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        if buf != b"pong" {
            return Err(format!("unexpected reply {buf:?}"));
        }
        Ok::<_, String>(peer)
    };
    let client = tokio::time::timeout(DEADLINE, client_side)
        .await
        .unwrap_or_else(|_| Err("client timed out".into()));
    let server = tokio::time::timeout(DEADLINE, server_task)
        .await
        .map(|joined| joined.unwrap())
        .unwrap_or_else(|_| Err("server timed out".into()));
    Outcome { server, client }
}

/// One connection between two nodes, each with its cluster configuration.
async fn between(
    server: &NodeCredentials,
    client: &NodeCredentials,
    name: ServerName<'static>,
) -> Outcome {
    connect(
        server_config(server).unwrap(),
        client_config(client).unwrap(),
        name,
    )
    .await
}

impl Outcome {
    /// The server refused the connection for a reason naming one of `why`, and the client
    /// did not get through either.
    fn refused_by_server(self, why: &[&str]) {
        let err = self.server.unwrap_err();
        assert!(why.iter().any(|w| err.contains(w)), "{err}");
        assert!(self.client.is_err());
    }

    /// The client refused the server for a reason naming one of `why`, and the server did
    /// not get through either.
    fn refused_by_client(self, why: &[&str]) {
        let err = self.client.unwrap_err();
        assert!(why.iter().any(|w| err.contains(w)), "{err}");
        assert!(self.server.is_err());
    }
}

fn name(id: &str) -> ServerName<'static> {
    server_name(&NodeId::new(id).unwrap())
}

#[tokio::test]
async fn handshake_succeeds_with_cluster_certificates_and_both_sides_learn_the_peer() {
    let c = cluster();
    let now = SystemTime::now();
    let manager = node(&c.ca, "mgr-1", Role::Manager, now);
    let worker = node(&c.ca, "wrk-1", Role::Worker, now);

    let out = between(&manager, &worker, name("mgr-1")).await;
    let seen_by_server = out.server.unwrap();
    assert_eq!(seen_by_server.node_id.as_str(), "wrk-1");
    assert_eq!(seen_by_server.role, Role::Worker);
    let seen_by_client = out.client.unwrap();
    assert_eq!(seen_by_client.node_id.as_str(), "mgr-1");
    assert_eq!(seen_by_client.role, Role::Manager);
}

#[tokio::test]
async fn dialing_by_advertise_address_verifies_the_ip_san() {
    let c = cluster();
    let now = SystemTime::now();
    let server = node(&c.ca, "mgr-2", Role::Manager, now);
    let client = node(&c.ca, "wrk-2", Role::Worker, now);
    let out = between(
        &server,
        &client,
        ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()),
    )
    .await;
    assert_eq!(out.client.unwrap().node_id.as_str(), "mgr-2");
    assert_eq!(out.server.unwrap().node_id.as_str(), "wrk-2");
}

#[tokio::test]
async fn roles_from_the_connection_gate_manager_apis() {
    let c = cluster();
    let now = SystemTime::now();
    let server = node(&c.ca, "mgr-3", Role::Manager, now);
    let worker = node(&c.ca, "wrk-3", Role::Worker, now);
    let other_manager = node(&c.ca, "mgr-4", Role::Manager, now);

    let out = between(&server, &worker, name("mgr-3")).await;
    let caller = out.server.unwrap();
    caller.require_role(Role::Worker).unwrap();
    let err = caller.require_role(Role::Manager).unwrap_err();
    assert!(matches!(err, IdentityError::RoleDenied { .. }));
    assert_eq!(
        err.to_string(),
        "node wrk-3 has role worker, but this call needs a manager"
    );

    let out = between(&server, &other_manager, name("mgr-3")).await;
    let caller = out.server.unwrap();
    caller.require_role(Role::Manager).unwrap();
    caller.require_role(Role::Worker).unwrap();
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let ours = cluster();
    let theirs = cluster();
    let now = SystemTime::now();
    let server = node(&ours.ca, "mgr-5", Role::Manager, now);
    // Same node id and role, but issued by a different CA; it even trusts our CA so that it
    // gets as far as presenting its certificate.
    let mut intruder = node(&theirs.ca, "wrk-5", Role::Manager, now);
    intruder.ca_der = ours.ca.cert_der().clone();

    let out = between(&server, &intruder, name("mgr-5")).await;
    out.refused_by_server(&["UnknownIssuer"]);
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused_by_the_client() {
    let ours = cluster();
    let theirs = cluster();
    let now = SystemTime::now();
    let client = node(&ours.ca, "wrk-6", Role::Worker, now);
    let mut impostor = node(&theirs.ca, "mgr-6", Role::Manager, now);
    impostor.ca_der = ours.ca.cert_der().clone();

    let out = between(&impostor, &client, name("mgr-6")).await;
    out.refused_by_client(&["UnknownIssuer"]);
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    let c = cluster();
    let now = SystemTime::now();
    let server = node(&c.ca, "mgr-7", Role::Manager, now);
    // Issued 200 days ago with the 90-day default lifetime: expired 110 days ago.
    let expired = node(&c.ca, "wrk-7", Role::Worker, now - 200 * DAY);
    assert!(expired.cert.identity.not_after < now);
    assert!(expired.cert.needs_renewal(now));

    let out = between(&server, &expired, name("mgr-7")).await;
    out.refused_by_server(&["Expired", "expired"]);
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() {
    let c = cluster();
    let now = SystemTime::now();
    let expired = node(&c.ca, "mgr-8", Role::Manager, now - 200 * DAY);
    let client = node(&c.ca, "wrk-8", Role::Worker, now);
    let out = between(&expired, &client, name("mgr-8")).await;
    out.refused_by_client(&["Expired", "expired"]);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let c = cluster();
    let now = SystemTime::now();
    let server = node(&c.ca, "mgr-9", Role::Manager, now);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.ca.cert_der().clone()).unwrap();
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();

    let out = connect(
        server_config(&server).unwrap(),
        Arc::new(anonymous),
        name("mgr-9"),
    )
    .await;
    out.refused_by_server(&["NoCertificatesPresented", "no certificate"]);
}

#[tokio::test]
async fn the_wrong_server_name_is_refused() {
    let c = cluster();
    let now = SystemTime::now();
    let server = node(&c.ca, "mgr-10", Role::Manager, now);
    let client = node(&c.ca, "wrk-10", Role::Worker, now);
    // The certificate is valid and from our CA, but it is not the node the client meant.
    let out = between(&server, &client, name("mgr-11")).await;
    out.refused_by_client(&["NotValidForName", "not valid for name"]);
}

/// A joining node with only a token connects to a manager's join listener by address.
async fn join(
    server: Arc<rustls::ServerConfig>,
    token: &JoinToken,
) -> (
    Result<NodeIdentity, String>,
    Result<CertificateDer<'static>, String>,
) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        // The join handler: anonymous is fine here, and peer_identity says so.
        let anonymous = peer_identity(tls.get_ref().1.peer_certificates());
        assert!(matches!(anonymous, Err(TlsError::NoPeerCertificate)));
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    });
    let client_side = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let config = join_client_config(token).map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(config)
            .connect(ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = peer_identity(tls.get_ref().1.peer_certificates()).map_err(|e| e.to_string())?;
        let ca = cluster_ca_from_join(tls.get_ref().1.peer_certificates(), token)
            .map_err(|e| e.to_string())?;
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(buf, b"pong");
        Ok::<_, String>((peer, ca))
    };
    let client = tokio::time::timeout(DEADLINE, client_side)
        .await
        .unwrap_or_else(|_| Err("client timed out".into()));
    let _ = tokio::time::timeout(DEADLINE, server_task).await;
    match client {
        Ok((peer, ca)) => (Ok(peer), Ok(ca)),
        Err(e) => (Err(e.clone()), Err(e)),
    }
}

#[tokio::test]
async fn a_joining_node_trusts_the_manager_only_under_the_tokens_ca() {
    let c = cluster();
    let now = SystemTime::now();
    let manager = node(&c.ca, "mgr-12", Role::Manager, now);
    let secrets = JoinSecrets::generate().unwrap();
    let token = secrets.token(Role::Worker, c.ca.fingerprint());

    let (peer, ca) = join(join_server_config(&manager).unwrap(), &token).await;
    let peer = peer.unwrap();
    assert_eq!(peer.node_id.as_str(), "mgr-12");
    assert_eq!(peer.role, Role::Manager);
    assert_eq!(
        ca.unwrap(),
        *c.ca.cert_der(),
        "the joining node learns the real root"
    );

    // An impostor manager of another cluster, at the same address and with the same name.
    let other = cluster();
    let impostor = node(&other.ca, "mgr-12", Role::Manager, now);
    let (peer, _) = join(join_server_config(&impostor).unwrap(), &token).await;
    let err = peer.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The real root is public: an impostor may send it along, but cannot sign under it.
    let mut impostor = impostor;
    impostor.ca_der = c.ca.cert_der().clone();
    let (peer, _) = join(join_server_config(&impostor).unwrap(), &token).await;
    let err = peer.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("BadSignature"),
        "{err}"
    );
}

#[tokio::test]
async fn the_join_listener_still_verifies_clients_that_present_a_certificate() {
    let c = cluster();
    let other = cluster();
    let now = SystemTime::now();
    let manager = node(&c.ca, "mgr-13", Role::Manager, now);
    let member = node(&c.ca, "wrk-13", Role::Worker, now);
    let out = connect(
        join_server_config(&manager).unwrap(),
        client_config(&member).unwrap(),
        name("mgr-13"),
    )
    .await;
    assert_eq!(out.server.unwrap().node_id.as_str(), "wrk-13");
    out.client.unwrap();

    let mut intruder = node(&other.ca, "wrk-14", Role::Manager, now);
    intruder.ca_der = c.ca.cert_der().clone();
    let out = connect(
        join_server_config(&manager).unwrap(),
        client_config(&intruder).unwrap(),
        name("mgr-13"),
    )
    .await;
    out.refused_by_server(&["UnknownIssuer"]);
}

#[tokio::test]
async fn renewed_certificates_replace_expired_ones_in_configurations_already_in_use() {
    let c = cluster();
    let now = SystemTime::now();
    // Both ends start with certificates that expired long ago, as a node that slept through
    // its renewal window would.
    let server_old = node(&c.ca, "mgr-8", Role::Manager, now - 200 * DAY);
    let client_old = node(&c.ca, "wrk-8", Role::Worker, now - 200 * DAY);
    let server_live = LiveCert::new(&server_old).unwrap();
    let client_live = LiveCert::new(&client_old).unwrap();
    let server = join_server_config_live(&server_old.ca_der, server_live.clone()).unwrap();
    let client = client_config_live(&client_old.ca_der, client_live.clone()).unwrap();

    let out = connect(server.clone(), client.clone(), name("mgr-8")).await;
    assert!(
        out.client.is_err() && out.server.is_err(),
        "expired certificates were accepted"
    );

    // Renewal: new keys and certificates, swapped into the same configurations.
    let server_new = node(&c.ca, "mgr-8", Role::Manager, now);
    let client_new = node(&c.ca, "wrk-8", Role::Worker, now);
    server_live.replace(&server_new).unwrap();
    client_live.replace(&client_new).unwrap();
    assert_eq!(server_live.cert_der(), server_new.cert.der);

    let out = connect(server, client, name("mgr-8")).await;
    let seen_by_server = out.server.unwrap();
    let seen_by_client = out.client.unwrap();
    assert_eq!(seen_by_server.node_id.as_str(), "wrk-8");
    assert!(seen_by_server.not_after > now);
    assert_eq!(seen_by_client.node_id.as_str(), "mgr-8");
    assert!(seen_by_client.not_after > now);

    // A key that does not match the certificate is refused and the current one kept.
    let mismatched = NodeCredentials {
        ca_der: client_new.ca_der.clone(),
        cert: client_new.cert.clone(),
        key: client_old.key,
    };
    assert!(client_live.replace(&mismatched).is_err());
    assert_eq!(client_live.cert_der(), client_new.cert.der);
}
