//! Multi-host clusters in the rig (`tests/cluster_rig`): real berthd processes in their own
//! network namespaces on a test bridge, joined over mutual TLS. Root only.

mod cluster_rig;

use std::time::{Duration, Instant};

use cluster_rig::Rig;

fn token(rig: &Rig, i: usize, role: &str) -> String {
    rig.ok(i, &["cluster", "join-token", role, "-q"])
        .trim()
        .to_owned()
}

/// Node `i` joins through node 0.
fn join(rig: &Rig, i: usize, token: &str) {
    let advertise = rig.nodes[i].ip.clone();
    let manager = rig.nodes[0].ip.clone();
    rig.ok(
        i,
        &[
            "cluster",
            "join",
            "--token",
            token,
            "--advertise-addr",
            &advertise,
            &manager,
        ],
    );
}

/// Which rig index leads, as node `from` sees it.
fn leader(rig: &Rig, from: usize, ids: &[String]) -> Option<usize> {
    let nodes = rig.nodes_seen_by(from);
    let id = nodes.iter().find(|n| n["ManagerStatus"] == "leader")?["ID"]
        .as_str()?
        .to_owned();
    ids.iter().position(|x| *x == id)
}

/// Live tasks per rig index, and how many nodes hold some, as node `from` sees it.
fn tasks_by_node(rig: &Rig, from: usize, ids: &[String]) -> Vec<u64> {
    let nodes = rig.nodes_seen_by(from);
    ids.iter()
        .map(|id| {
            nodes
                .iter()
                .find(|n| n["ID"].as_str() == Some(id))
                .and_then(|n| n["Tasks"].as_u64())
                .unwrap_or(0)
        })
        .collect()
}

fn running(rig: &Rig, from: usize, compose: &str) -> usize {
    let out = rig.berth(
        from,
        &["-f", compose, "-p", "spread", "ps", "--format", "json"],
    );
    if !out.status.success() {
        return 0;
    }
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.iter().filter(|c| c["State"] == "running").count()
}

const APP: &str = "services:\n  web:\n    image: busybox:latest\n    command: [\"sleep\", \"3600\"]\n    deploy:\n      replicas: 6\n";

#[test]
fn a_cluster_forms_spreads_an_app_and_survives_its_leader_a_worker_and_a_drain() {
    let mut rig = Rig::new(5);
    // Form: node 0 initializes, 1 and 2 join as managers, 3 and 4 as workers.
    let advertise = rig.nodes[0].ip.clone();
    rig.ok(0, &["cluster", "init", "--advertise-addr", &advertise]);
    let manager = token(&rig, 0, "manager");
    join(&rig, 1, &manager);
    join(&rig, 2, &manager);
    let worker = token(&rig, 0, "worker");
    assert_ne!(manager, worker);
    join(&rig, 3, &worker);
    join(&rig, 4, &worker);
    let ids: Vec<String> = (0..5).map(|i| rig.id_of(i)).collect();
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
    rig.wait_for("5 ready nodes, 3 managers", Duration::from_secs(30), |r| {
        let nodes = r.nodes_seen_by(0);
        nodes.len() == 5
            && nodes.iter().all(|n| n["Status"] == "ready")
            && nodes.iter().filter(|n| n["Role"] == "manager").count() == 3
    });
    // Every node, the worker included, sees the same replicated membership.
    rig.wait_for("the worker sees every node", Duration::from_secs(10), |r| {
        r.nodes_seen_by(3).len() == 5 && r.nodes_seen_by(4).len() == 5
    });

    // A worker cannot call a manager API: its writes are refused by the leader.
    let compose_w = rig.compose(3, APP);
    let compose_w = compose_w.to_str().unwrap();
    let refused = rig.berth(3, &["-f", compose_w, "-p", "spread", "up", "-d"]);
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("role worker"), "{text}");

    // Deploy through a manager; the tasks spread over several nodes and all run.
    let compose = rig.compose(1, APP);
    let compose = compose.to_str().unwrap().to_owned();
    rig.ok(1, &["-f", &compose, "-p", "spread", "up", "-d"]);
    rig.wait_for("6 running replicas", Duration::from_secs(90), |r| {
        running(r, 1, &compose) == 6
    });
    let spread = tasks_by_node(&rig, 0, &ids);
    assert!(
        spread.iter().filter(|n| **n > 0).count() >= 3,
        "tasks on too few nodes: {spread:?}"
    );
    assert!(
        spread[3] > 0 && spread[4] > 0,
        "the workers run tasks: {spread:?}"
    );

    // kill -9 the leader: a new one is elected within seconds, the API keeps answering and
    // the acknowledged deploy is still there; the dead node's tasks come back elsewhere.
    let old = leader(&rig, 0, &ids).expect("a leader");
    let survivor = (0..3).find(|i| *i != old).unwrap();
    rig.kill9(old);
    let killed = Instant::now();
    rig.wait_for("a new leader", Duration::from_secs(10), |r| {
        leader(r, survivor, &ids).is_some_and(|l| l != old)
    });
    let failover = killed.elapsed();
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    rig.wait_for(
        "the dead manager down, 6 running elsewhere",
        Duration::from_secs(60),
        |r| {
            let spread = tasks_by_node(r, survivor, &ids);
            spread[old] == 0 && running(r, survivor, &compose) == 6
        },
    );

    // kill -9 a worker: its tasks reappear on the nodes left.
    rig.kill9(3);
    rig.wait_for(
        "the worker down, its tasks elsewhere",
        Duration::from_secs(60),
        |r| {
            let nodes = r.nodes_seen_by(survivor);
            let down = nodes
                .iter()
                .any(|n| n["ID"].as_str() == Some(&ids[3]) && n["Status"] == "down");
            down && tasks_by_node(r, survivor, &ids)[3] == 0 && running(r, survivor, &compose) == 6
        },
    );

    // Drain one of the two managers left: everything moves to the other and the worker.
    let other = (0..3).find(|i| *i != old && *i != survivor).unwrap();
    rig.ok(
        survivor,
        &["node", "update", "--availability", "drain", &ids[other]],
    );
    rig.wait_for("the drained node empty", Duration::from_secs(60), |r| {
        let spread = tasks_by_node(r, survivor, &ids);
        spread[other] == 0
            && spread[survivor] + spread[4] == 6
            && running(r, survivor, &compose) == 6
    });
    let _ = rig.berth(
        survivor,
        &["-f", &compose, "-p", "spread", "down", "-t", "1"],
    );
}

/// A gRPC channel to the cluster port at `addr` over TLS under `tls`, the server verified by
/// its IP address.
async fn peer_channel(
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<tonic::transport::Channel, String> {
    let connector = tokio_rustls::TlsConnector::from(tls);
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// Calls `ClusterPeer.Raft` with an empty batch on `addr` under `tls`, from the host's foot
/// on the rig's bridge.
fn call_raft(
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let channel = peer_channel(addr, tls).await?;
        let mut client = berth_api::v1::cluster_peer_client::ClusterPeerClient::new(channel);
        let mut request = tonic::Request::new(berth_api::v1::RaftBatch { messages: vec![] });
        request.set_timeout(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(10), client.raft(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map(|_| ())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    })
}

#[test]
fn a_node_with_a_certificate_of_another_ca_is_refused() {
    let rig = Rig::new(2);
    // Two separate clusters: A on node 0, B on node 1.
    for i in 0..2 {
        let advertise = rig.nodes[i].ip.clone();
        rig.ok(i, &["cluster", "init", "--advertise-addr", &advertise]);
    }
    let tls_dir = |i: usize| rig.nodes[i].data_root().join("cluster").join("tls");
    let a = berth_cluster::NodeCredentials::load(&tls_dir(0)).expect("A's credentials");
    let addr: std::net::SocketAddr = format!("{}:4245", rig.nodes[0].ip).parse().unwrap();
    // A's own certificate is accepted.
    call_raft(addr, berth_cluster::client_config(&a).unwrap()).expect("a member of A is heard");
    // B's certificate, even by a client that trusts A's root, is refused by A.
    let mut b = berth_cluster::NodeCredentials::load(&tls_dir(1)).expect("B's credentials");
    b.ca_der = a.ca_der.clone();
    let refused = call_raft(addr, berth_cluster::client_config(&b).unwrap());
    assert!(refused.is_err(), "a certificate of another CA was accepted");
    // No certificate at all: the handshake is allowed (joining), the call is not.
    let join: berth_cluster::JoinToken = token(&rig, 0, "worker").parse().unwrap();
    let anonymous = call_raft(addr, berth_cluster::join_client_config(&join).unwrap());
    let error = anonymous.expect_err("a caller without a certificate was heard");
    assert!(error.contains("Unauthenticated"), "{error}");
}

#[test]
fn a_promoted_worker_votes_and_writes_and_a_demoted_one_no_longer_does() {
    let rig = Rig::new(3);
    let advertise = rig.nodes[0].ip.clone();
    rig.ok(0, &["cluster", "init", "--advertise-addr", &advertise]);
    join(&rig, 1, &token(&rig, 0, "manager"));
    join(&rig, 2, &token(&rig, 0, "worker"));
    let ids: Vec<String> = (0..3).map(|i| rig.id_of(i)).collect();
    let member = |i: usize| {
        std::fs::read_to_string(rig.nodes[i].data_root().join("cluster/member.json"))
            .unwrap_or_default()
    };
    let manager_key = |i: usize| {
        rig.nodes[i]
            .data_root()
            .join("cluster/manager.key")
            .exists()
    };
    let write = |r: &Rig| r.berth(2, &["node", "update", "--label-add", "k=v", &ids[2]]);
    let refused = write(&rig);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("role worker"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!manager_key(2));

    rig.ok(0, &["node", "promote", &ids[2]]);
    rig.wait_for(
        "the promoted node to hold a manager certificate",
        Duration::from_secs(60),
        |r| {
            let seen = r.nodes_seen_by(0);
            let reachable = seen.iter().any(|n| {
                n["ID"].as_str() == Some(&ids[2])
                    && n["ManagerStatus"] != ""
                    && n["Role"] == "manager"
            });
            reachable && member(2).contains("\"manager\"") && manager_key(2)
        },
    );
    rig.wait_for(
        "the promoted node's writes to be accepted",
        Duration::from_secs(30),
        |r| write(r).status.success(),
    );

    rig.ok(0, &["node", "demote", &ids[2]]);
    rig.wait_for(
        "the demoted node to hold a worker certificate",
        Duration::from_secs(60),
        |r| member(2).contains("\"worker\"") && !manager_key(2) && r.nodes_seen_by(2).len() == 3,
    );
    rig.wait_for(
        "the demoted node's writes to be refused",
        Duration::from_secs(30),
        |r| {
            let out = write(r);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("role worker")
        },
    );

    // The worker leaves: it runs alone again, and the cluster forgets it.
    rig.ok(2, &["cluster", "leave"]);
    let alone = rig.nodes_seen_by(2);
    assert_eq!(alone.len(), 1, "{alone:?}");
    assert_eq!(alone[0]["RaftID"], 0);
    rig.wait_for(
        "the cluster to forget the node that left",
        Duration::from_secs(30),
        |r| r.nodes_seen_by(0).len() == 2,
    );
}

/// The certificate node `addr` presents on the cluster port, fetched with a TLS handshake
/// from the host under `tls` (bounded).
fn served_certificate(
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let handshake = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let tls = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec())
                .ok_or_else(|| "no certificate".to_string())
        };
        tokio::time::timeout(Duration::from_secs(10), handshake)
            .await
            .map_err(|_| "timed out".to_string())?
    })
}

#[test]
fn certificates_renew_themselves_before_expiry_without_a_restart() {
    let rig = Rig::new(3);
    let advertise = rig.nodes[0].ip.clone();
    // Three-minute certificates: with the 5-minute clock-skew allowance a certificate is due
    // about 20 s after it was issued.
    rig.ok(
        0,
        &[
            "cluster",
            "init",
            "--advertise-addr",
            &advertise,
            "--cert-expiry",
            "3m",
        ],
    );
    let manager = token(&rig, 0, "manager");
    join(&rig, 1, &manager);
    let worker = token(&rig, 0, "worker");
    join(&rig, 2, &worker);
    rig.wait_for("3 ready nodes", Duration::from_secs(30), |r| {
        let nodes = r.nodes_seen_by(0);
        nodes.len() == 3 && nodes.iter().all(|n| n["Status"] == "ready")
    });
    let tls_dir = |i: usize| rig.nodes[i].data_root().join("cluster").join("tls");
    let load = |i: usize| berth_cluster::NodeCredentials::load(&tls_dir(i)).expect("credentials");
    let first: Vec<_> = (0..3).map(load).collect();
    for creds in &first {
        let id = &creds.cert.identity;
        let window = id.not_after.duration_since(id.not_before).unwrap();
        assert_eq!(
            window,
            Duration::from_secs(180 + 300),
            "lifetime + skew allowance"
        );
    }
    let starts = |i: usize| rig.nodes[i].log().matches("controller ready").count();
    let started: Vec<usize> = (0..3).map(starts).collect();

    // Every node renews on its own, stores the new certificate and presents it on the
    // cluster port at once.
    let observer = berth_cluster::client_config(&first[0]).unwrap();
    rig.wait_for(
        "every node renewed and serving its new certificate",
        Duration::from_secs(120),
        |r| {
            (0..3).all(|i| {
                let addr = format!("{}:4245", r.nodes[i].ip).parse().unwrap();
                let Ok(served) = served_certificate(addr, observer.clone()) else {
                    return false;
                };
                let on_disk = berth_cluster::NodeCredentials::load(&tls_dir(i))
                    .map(|c| c.cert.der.to_vec())
                    .unwrap_or_default();
                served != first[i].cert.der.to_vec() && served == on_disk
            })
        },
    );
    for (i, creds) in first.iter().enumerate() {
        let now = load(i);
        assert_eq!(now.cert.identity.node_id, creds.cert.identity.node_id);
        assert_eq!(now.cert.identity.role, creds.cert.identity.role);
        assert!(now.cert.identity.not_after > creds.cert.identity.not_after);
        assert_eq!(starts(i), started[i], "node {i} restarted to renew");
        assert!(
            rig.nodes[i]
                .log()
                .contains("renewed this node's certificate")
        );
    }

    // The cluster keeps working on the new certificates: a write through the second manager
    // reaches the worker's replica.
    let worker_id = rig.id_of(2);
    rig.ok(
        1,
        &["node", "update", "--label-add", "renewed=yes", &worker_id],
    );
    rig.wait_for("the worker sees the write", Duration::from_secs(20), |r| {
        r.nodes_seen_by(2)
            .iter()
            .any(|n| n["ID"].as_str() == Some(&worker_id) && n["Labels"]["renewed"] == "yes")
    });
}

/// A service that records what it finds of its secret and config into `out` (a bind mount).
fn secrets_app(out: &std::path::Path, placement: &str) -> String {
    format!(
        r#"services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "stat -c '%a %u %g' /run/secrets/pw > /out/mode; cat /run/secrets/pw > /out/secret; grep ' /run/secrets/pw ' /proc/mounts > /out/mount; cat /etc/app.conf > /out/config; touch /out/done; sleep 3600"]
    volumes:
      - {out}:/out
    secrets:
      - source: pw
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: conf
        target: /etc/app.conf
    deploy:
      replicas: 1
{placement}
secrets:
  pw:
    file: ./pw.txt
configs:
  conf:
    content: "greeting=hello"
"#,
        out = out.display()
    )
}

/// Deploys [`secrets_app`] through node `via` and checks what the container found: the
/// secret with its owner and mode from a tmpfs, the config at its target. Returns the secret.
fn deploy_secrets(rig: &Rig, via: usize, placement: &str) -> (String, std::path::PathBuf) {
    let secret = format!(
        "pw-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let root = &rig.nodes[via].root;
    std::fs::write(root.join("pw.txt"), &secret).unwrap();
    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let compose = rig.compose(via, &secrets_app(&out, placement));
    let compose = compose.to_str().unwrap().to_owned();
    rig.ok(via, &["-f", &compose, "-p", "sec", "up", "-d"]);
    rig.wait_for("the container's report", Duration::from_secs(90), |_| {
        out.join("done").exists()
    });
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    assert_eq!(read("secret"), secret);
    assert_eq!(read("mode").trim(), "400 1000 1001");
    let mount = read("mount");
    assert!(mount.contains(" tmpfs ") && mount.contains("ro"), "{mount}");
    assert_eq!(read("config"), "greeting=hello");
    (secret, std::path::PathBuf::from(compose))
}

#[test]
fn a_lone_node_mounts_file_secrets_from_tmpfs_and_never_stores_them_in_clear() {
    let rig = Rig::new(1);
    let (secret, compose) = deploy_secrets(&rig, 0, "");
    let leaks = berth_testkit::files_containing(&rig.nodes[0].data_root(), secret.as_bytes());
    assert!(leaks.is_empty(), "the secret is stored in clear: {leaks:?}");
    // `down` unmounts the task's tmpfs.
    rig.ok(
        0,
        &[
            "-f",
            compose.to_str().unwrap(),
            "-p",
            "sec",
            "down",
            "-t",
            "1",
        ],
    );
    rig.wait_for("the tmpfs gone", Duration::from_secs(30), |r| {
        cluster_rig::mounts_under(&r.nodes[0].root.join("files")).is_empty()
    });
}

/// Calls `ClusterPeer.TaskFiles` for `task` on `addr` under `tls`; the secret `pw` it got.
fn call_task_files(
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
    task: &str,
) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let task = task.to_owned();
    rt.block_on(async move {
        let channel = peer_channel(addr, tls).await?;
        let mut client = berth_api::v1::cluster_peer_client::ClusterPeerClient::new(channel);
        let mut request = tonic::Request::new(berth_api::v1::TaskFilesRequest { task_id: task });
        request.set_timeout(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(10), client.task_files(request))
            .await
            .map_err(|_| "timed out".to_string())?
            .map(|r| {
                r.into_inner()
                    .secrets
                    .get("pw")
                    .cloned()
                    .unwrap_or_default()
            })
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    })
}

#[test]
fn a_secret_reaches_only_the_worker_that_runs_its_task_and_the_log_holds_ciphertext() {
    let rig = Rig::new(3);
    let advertise = rig.nodes[0].ip.clone();
    rig.ok(0, &["cluster", "init", "--advertise-addr", &advertise]);
    let worker = token(&rig, 0, "worker");
    join(&rig, 1, &worker);
    join(&rig, 2, &worker);
    rig.wait_for("3 ready nodes", Duration::from_secs(30), |r| {
        let nodes = r.nodes_seen_by(0);
        nodes.len() == 3 && nodes.iter().all(|n| n["Status"] == "ready")
    });
    // On a worker: the worker holds no key and must ask the manager for its task's files.
    let placement = "      placement:\n        constraints: [\"node.role == worker\"]";
    let (secret, _) = deploy_secrets(&rig, 0, placement);
    let with_files = |i: usize| {
        std::fs::read_dir(rig.nodes[i].root.join("files"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let (runs, idle) = if with_files(1).is_empty() {
        (2, 1)
    } else {
        (1, 2)
    };
    let tasks = with_files(runs);
    assert_eq!(
        tasks.len(),
        1,
        "one task's tmpfs on the worker that runs it"
    );
    assert!(with_files(idle).is_empty(), "the idle worker got files");
    let task = tasks[0].to_str().unwrap().to_owned();

    // Every node's data root — the Raft log and snapshots of the manager and both workers'
    // replicas included — holds the secret only sealed.
    for i in 0..3 {
        let leaks = berth_testkit::files_containing(&rig.nodes[i].data_root(), secret.as_bytes());
        assert!(
            leaks.is_empty(),
            "node {i} stores the secret in clear: {leaks:?}"
        );
    }

    // The manager hands a task's files to the node it is placed on, and to no other.
    let tls_dir = |i: usize| rig.nodes[i].data_root().join("cluster").join("tls");
    let creds = |i: usize| berth_cluster::NodeCredentials::load(&tls_dir(i)).unwrap();
    let manager: std::net::SocketAddr = format!("{}:4245", rig.nodes[0].ip).parse().unwrap();
    let got = call_task_files(
        manager,
        berth_cluster::client_config(&creds(runs)).unwrap(),
        &task,
    )
    .expect("the worker running the task gets its files");
    assert_eq!(got, secret.as_bytes());
    let refused = call_task_files(
        manager,
        berth_cluster::client_config(&creds(idle)).unwrap(),
        &task,
    )
    .expect_err("another worker got the task's secret");
    assert!(refused.contains("PermissionDenied"), "{refused}");
}

#[test]
fn a_survivor_re_forms_the_cluster_after_losing_its_quorum() {
    let mut rig = Rig::new(4);
    let advertise = rig.nodes[0].ip.clone();
    rig.ok(0, &["cluster", "init", "--advertise-addr", &advertise]);
    let manager = token(&rig, 0, "manager");
    join(&rig, 1, &manager);
    join(&rig, 2, &manager);
    rig.wait_for("3 ready managers", Duration::from_secs(30), |r| {
        let nodes = r.nodes_seen_by(0);
        nodes.len() == 3
            && nodes
                .iter()
                .all(|n| n["Status"] == "ready" && n["Role"] == "manager")
    });
    let compose = rig.compose(0, APP);
    let compose = compose.to_str().unwrap().to_owned();
    rig.ok(0, &["-f", &compose, "-p", "spread", "up", "-d"]);
    rig.wait_for("6 running replicas", Duration::from_secs(90), |r| {
        running(r, 0, &compose) == 6
    });
    let me = rig.id_of(0);

    // Two of three managers die: no quorum is left.
    rig.kill9(1);
    rig.kill9(2);
    rig.ok(0, &["cluster", "init", "--force-new-cluster"]);
    rig.wait_for(
        "a one-manager cluster led by the survivor",
        Duration::from_secs(30),
        |r| {
            let nodes = r.nodes_seen_by(0);
            nodes.len() == 1
                && nodes[0]["ID"] == me.as_str()
                && nodes[0]["ManagerStatus"] == "leader"
        },
    );
    // The app survived, and the replicas of the dropped managers run again here.
    rig.wait_for("6 running replicas again", Duration::from_secs(90), |r| {
        running(r, 0, &compose) == 6 && tasks_by_node(r, 0, std::slice::from_ref(&me))[0] == 6
    });
    // The re-formed cluster admits new members and takes writes with them.
    let manager = token(&rig, 0, "manager");
    join(&rig, 3, &manager);
    rig.wait_for("2 ready managers", Duration::from_secs(30), |r| {
        let nodes = r.nodes_seen_by(0);
        nodes.len() == 2
            && nodes
                .iter()
                .all(|n| n["Status"] == "ready" && n["Role"] == "manager")
    });
    let new = rig.id_of(3);
    rig.ok(3, &["node", "update", "--label-add", "joined=after", &new]);
    rig.wait_for(
        "the survivor sees the write",
        Duration::from_secs(20),
        |r| {
            r.nodes_seen_by(0)
                .iter()
                .any(|n| n["ID"].as_str() == Some(&new) && n["Labels"]["joined"] == "after")
        },
    );
    let _ = rig.berth(0, &["-f", &compose, "-p", "spread", "down", "-t", "1"]);
}

#[test]
fn a_removed_nodes_certificate_is_refused() {
    let rig = Rig::new(2);
    let advertise = rig.nodes[0].ip.clone();
    rig.ok(0, &["cluster", "init", "--advertise-addr", &advertise]);
    let worker = token(&rig, 0, "worker");
    join(&rig, 1, &worker);
    rig.wait_for("2 ready nodes", Duration::from_secs(30), |r| {
        let nodes = r.nodes_seen_by(0);
        nodes.len() == 2 && nodes.iter().all(|n| n["Status"] == "ready")
    });
    let tls_dir = |i: usize| rig.nodes[i].data_root().join("cluster").join("tls");
    let creds = |i: usize| berth_cluster::NodeCredentials::load(&tls_dir(i)).unwrap();
    let addr: std::net::SocketAddr = format!("{}:4245", rig.nodes[0].ip).parse().unwrap();
    call_raft(addr, berth_cluster::client_config(&creds(1)).unwrap())
        .expect("the worker is heard while it is a member");
    let removed = rig.id_of(1);
    rig.ok(0, &["node", "rm", "--force", &removed]);
    // Its certificate has not expired, and still chains to the CA: the deny list refuses it.
    let refused = call_raft(addr, berth_cluster::client_config(&creds(1)).unwrap())
        .expect_err("a removed node's certificate was accepted");
    assert!(
        refused.contains("PermissionDenied") && refused.contains("revoked"),
        "{refused}"
    );
    call_raft(addr, berth_cluster::client_config(&creds(0)).unwrap())
        .expect("a member's certificate is still heard");
}
