//! Peer image distribution: one node's store served read-only over the OCI distribution
//! API, pulled by another node's store with the ordinary registry client — over plain HTTP
//! on loopback, and over mutual TLS with cluster certificates, where a client without a
//! cluster certificate is refused. Everything stays on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use berth_cluster::{ClusterCa, NodeCertRequest, NodeCredentials, NodeId, Role};
use berth_image::distribution;
use berth_image::registry::progress::Silent;
use berth_image::registry::pull::{PullOptions, pull};
use berth_image::registry::{ClientOptions, RegistryClient};
use berth_image::{Reference, Store};
use tokio::net::TcpListener;

struct Node {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("store")).unwrap());
    Node { _dir: dir, store }
}

fn with_busybox() -> Node {
    let n = node();
    berth_image::testing::import_busybox(&n.store, &Reference::parse("busybox:latest").unwrap())
        .expect("import busybox (apt-get install busybox-static)");
    n
}

fn blobs(store: &Store) -> Vec<String> {
    let mut b: Vec<String> = store
        .list_blobs()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    b.sort();
    b
}

#[tokio::test]
async fn a_peer_pulls_an_image_over_plain_http_on_loopback() {
    let source = with_busybox();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = tokio::spawn(distribution::serve(listener, source.store.clone()));

    let target = node();
    let client = RegistryClient::new(&host, ClientOptions::default()).unwrap();
    let reference = Reference::parse(&format!("{host}/busybox:latest")).unwrap();
    let report = pull(
        &client,
        &target.store,
        &reference,
        &PullOptions::default(),
        &Silent,
    )
    .await
    .unwrap();
    let local = Reference::parse("busybox:latest").unwrap();
    assert_eq!(report.digest, source.store.resolve(&local).unwrap());
    assert_eq!(target.store.resolve(&reference).unwrap(), report.digest);
    assert_eq!(blobs(&target.store), blobs(&source.store));

    // the API surface around it: base, HEAD, unknown names and digests, no writes
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{host}{p}");
    let base = http.get(url("/v2/")).send().await.unwrap();
    assert_eq!(base.status(), 200);
    let head = http
        .head(url("/v2/busybox/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["docker-content-digest"].to_str().unwrap(),
        report.digest.to_string()
    );
    let missing = http
        .get(url("/v2/nosuch/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.text().await.unwrap().contains("MANIFEST_UNKNOWN"));
    let zero = format!("/v2/busybox/blobs/sha256:{}", "0".repeat(64));
    let no_blob = http.get(url(&zero)).send().await.unwrap();
    assert_eq!(no_blob.status(), 404);
    let put = http
        .put(url("/v2/busybox/manifests/latest"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 405);
    server.abort();
}

fn creds(ca: &ClusterCa, id: &str) -> NodeCredentials {
    ca.issue_with_new_key(
        &NodeCertRequest {
            node_id: NodeId::new(id).unwrap(),
            role: Role::Worker,
            addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        SystemTime::now(),
    )
    .unwrap()
}

#[tokio::test]
async fn peers_pull_over_mutual_tls_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::init(dir.path(), SystemTime::now()).unwrap();
    let source = with_busybox();
    let acceptor = tokio_rustls::TlsAcceptor::from(
        berth_cluster::server_config(&creds(&ca, "node-a")).unwrap(),
    );
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let store = source.store.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, store) = (acceptor.clone(), store.clone());
            tokio::spawn(async move {
                // a handshake a stranger fails ends here; the listener goes on
                if let Ok(tls) = acceptor.accept(tcp).await {
                    distribution::serve_connection(tls, store).await;
                }
            });
        }
    });
    let reference = Reference::parse(&format!("{host}/busybox:latest")).unwrap();

    let peer = node();
    let client = RegistryClient::new(
        &host,
        ClientOptions {
            tls: Some(berth_cluster::client_config(&creds(&ca, "node-b")).unwrap()),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let report = pull(
        &client,
        &peer.store,
        &reference,
        &PullOptions::default(),
        &Silent,
    )
    .await
    .unwrap();
    assert_eq!(blobs(&peer.store), blobs(&source.store));
    assert_eq!(peer.store.resolve(&reference).unwrap(), report.digest);

    // a node of another cluster holds a certificate, just not one this cluster signed; it
    // trusts this cluster's CA, so only the server's check of its certificate stops it
    let other_dir = tempfile::tempdir().unwrap();
    let other = ClusterCa::init(other_dir.path(), SystemTime::now()).unwrap();
    let foreign = creds(&other, "node-x");
    let mixed = NodeCredentials {
        ca_der: ca.cert_der().clone(),
        cert: foreign.cert,
        key: foreign.key,
    };
    let stranger = node();
    let client = RegistryClient::new(
        &host,
        ClientOptions {
            tls: Some(berth_cluster::client_config(&mixed).unwrap()),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let err = pull(
        &client,
        &stranger.store,
        &reference,
        &PullOptions::default(),
        &Silent,
    )
    .await
    .unwrap_err();
    assert!(stranger.store.resolve(&reference).is_err(), "{err}");
    server.abort();
}
