//! Raft commit latency of a 3-manager group over the real cluster transport: three Raft
//! members in this process, each with its own durable log (fsync per write) and its own
//! mutual-TLS gRPC listener on a loopback address, exactly as berthd wires them. Sequential
//! writes on the leader are timed from `propose` to the reply, which comes once a quorum
//! persisted the entry and the leader applied it.
//!
//! `cargo bench -p berth-daemon --bench raft_commit [-- COUNT]`

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use berth_api::v1::cluster_peer_server::ClusterPeerServer;
use berth_cluster::{ClusterCa, NodeCertRequest, NodeId, Role};
use berth_controller::store::Command;
use berth_daemon::cluster::member::{Member, Peer};
use berth_daemon::cluster::transport::{GrpcTransport, MAX_MESSAGE, Peers};
use berth_daemon::cluster::{Cluster, peer::PeerService, raft_config, tls_io};
use berth_daemon::controller::Controller;
use berth_daemon::metrics::Metrics;

fn main() {
    let count: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(count));
}

async fn run(count: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ClusterCa::init(&dir.path().join("ca"), SystemTime::now()).expect("CA");
    let mut listeners = Vec::new();
    for i in 1..=3u8 {
        // One loopback address per member, as each node has its own.
        let ip = std::net::Ipv4Addr::new(127, 0, 0, i);
        let l = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        listeners.push(l);
    }
    let addrs: Vec<std::net::SocketAddr> =
        listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let peers_list: Vec<Peer> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Peer {
            raft_id: i as u64 + 1,
            address: *a,
        })
        .collect();
    let mut controllers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = format!("bench-{i}");
        let creds = ca
            .issue_with_new_key(
                &NodeCertRequest {
                    node_id: NodeId::new(id.clone()).unwrap(),
                    role: Role::Manager,
                    addresses: vec![addrs[i].ip()],
                },
                SystemTime::now(),
            )
            .expect("certificate");
        let peers = Peers::new(berth_cluster::client_config(&creds).unwrap());
        for p in &peers_list {
            peers.set_address(p.raft_id, p.address);
        }
        let member = Member {
            raft_id: i as u64 + 1,
            role: "manager".into(),
            advertise: addrs[i],
            peers: peers_list.clone(),
            voters: vec![1, 2, 3],
            learners: vec![],
        };
        let raft = raft_config(&dir.path().join(format!("raft-{i}")), &member);
        let controller = Controller::open_with(
            raft,
            GrpcTransport(peers.clone()),
            &id,
            Arc::new(Metrics::default()),
            false,
        )
        .await
        .expect("controller");
        let cluster = Arc::new(Cluster {
            data_root: dir.path().join(format!("n{i}")),
            node_id: id,
            member: Some(member),
            peers: Some(peers),
            live_cert: None,
            manager_key: RwLock::new(None),
            controller: std::sync::OnceLock::new(),
            restart: Arc::new(tokio::sync::Notify::new()),
        });
        let _ = cluster.controller.set(controller.clone());
        let service = ClusterPeerServer::new(PeerService::new(cluster))
            .max_decoding_message_size(MAX_MESSAGE);
        let incoming =
            tls_io::incoming(listener, berth_cluster::join_server_config(&creds).unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        controllers.push(controller);
    }
    let started = Instant::now();
    let leader = loop {
        if let Some(c) = controllers.iter().find(|c| c.status().is_leader) {
            break c.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no leader elected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("leader elected after {:?}", started.elapsed());
    let node = berth_daemon::host::node("bench-node");
    for _ in 0..50 {
        leader
            .propose(Command::RegisterNode(node.clone()))
            .await
            .expect("warm-up write");
    }
    let mut samples = Vec::with_capacity(count);
    let all = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        leader
            .propose(Command::RegisterNode(node.clone()))
            .await
            .expect("write");
        samples.push(t.elapsed());
    }
    let total = all.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "raft commit, 3 managers, {count} sequential writes: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {:.0} writes/s",
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*samples.last().unwrap()),
        count as f64 / total.as_secs_f64()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
