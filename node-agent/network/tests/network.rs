//! Root tests on the real kernel: network namespaces stand in for containers, bridges, veths,
//! nftables and the DNS server are the real ones. Each test uses its own names, subnets
//! (10.234.0.0/16 only), nft table and state dir, and removes them even when it fails.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use berth_network::bridge::{Attachment, BridgeNetwork, bridge_name, host_veth_name};
use berth_network::dns::DnsEntry;
use berth_network::etc_files::resolv_conf;
use berth_network::firewall::parse_ports;
use berth_network::ipam::NetworkRequest;
use berth_network::netlink::spawn_in_netns;
use berth_network::networks::{Connect, NetworkConfig};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn names(container: &str, service: &str) -> DnsEntry {
    DnsEntry {
        container_name: container.into(),
        service: Some(service.into()),
        aliases: vec![format!("{container}-alias")],
        ..Default::default()
    }
}

fn connect(ep: &str, ns: &Netns, ifname: &str, dns: DnsEntry) -> Connect {
    Connect {
        endpoint_id: ep.into(),
        netns: ns.path(),
        ifname: ifname.into(),
        default_route: ifname == "eth0",
        names: dns,
        ..Default::default()
    }
}

/// A network `id` with default settings.
async fn create_plain(env: &Env, id: &str) -> BridgeNetwork {
    env.nets
        .create_network(&NetworkConfig {
            id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Connects netns `ns` to network `net` as endpoint `ep` (see [`connect`]).
async fn attach(
    env: &Env,
    net: &str,
    ep: &str,
    ns: &Netns,
    ifname: &str,
    dns: DnsEntry,
) -> Attachment {
    env.nets
        .connect(net, &connect(ep, ns, ifname, dns))
        .await
        .unwrap()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_on_one_network_reach_each_other_by_ip_and_name() {
    require_root!();
    let mut env = Env::new(false, vec![]);
    let id = env.network_id("same");
    let net = env
        .nets
        .create_network(&NetworkConfig {
            id: id.clone(),
            request: NetworkRequest {
                enable_ipv6: true,
                ..Default::default()
            },
            mtu: Some(1400),
            ..Default::default()
        })
        .await
        .unwrap();
    let (c1, c2) = (Netns::new("a"), Netns::new("b"));
    let (e1, e2) = (env.endpoint_id(&id, "c1"), env.endpoint_id(&id, "c2"));
    let a1 = attach(&env, &id, &e1, &c1, "eth0", names("app-one-1", "one")).await;
    let a2 = attach(&env, &id, &e2, &c2, "eth0", names("app-two-1", "two")).await;
    assert_ne!(a1.ipv4, a2.ipv4);
    assert!(net.subnet_v4.contains(a1.ipv4));
    // connecting the same endpoint again is refused and leaves the first connection alone
    let again = env
        .nets
        .connect(&id, &connect(&e1, &c1, "eth0", names("app-one-1", "one")))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already connected"), "{again}");
    assert!(host_links().contains(&host_veth_name(&id, &e1)));

    // interface, MTU, MAC and default route inside the "container"
    let links = c1.exec(&["ip", "-j", "link", "show", "eth0"]);
    let v: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap();
    assert_eq!(v[0]["mtu"], 1400);
    assert_eq!(v[0]["address"].as_str().unwrap(), format_mac(a1.mac));
    // the bridge keeps a fixed MAC as ports join (neighbours' ARP entries stay valid)
    let br = run(&["ip", "-j", "link", "show", &net.bridge], true);
    let v: serde_json::Value = serde_json::from_slice(&br.stdout).unwrap();
    assert_eq!(
        v[0]["address"].as_str().unwrap(),
        format_mac(berth_network::bridge::mac_for(net.gateway_v4))
    );
    let routes = String::from_utf8(c1.exec(&["ip", "route"]).stdout).unwrap();
    assert!(
        routes.contains(&format!("default via {}", net.gateway_v4)),
        "{routes}"
    );

    assert!(c1.reaches(a2.ipv4.into()), "c1 pings c2 over IPv4");
    assert!(c2.reaches(net.gateway_v4.into()), "c2 pings its gateway");
    let v6 = a2.ipv6.expect("dual stack");
    assert!(c1.reaches(v6.into()), "c1 pings c2 over IPv6");

    // by name, through the embedded DNS on the gateway
    let dns = SocketAddr::new(net.gateway_v4.into(), 53);
    let (ips, rc) = dns_query(&c1, dns, "app-two-1", RecordType::A);
    assert_eq!(rc, ResponseCode::NoError);
    assert_eq!(ips, vec![IpAddr::V4(a2.ipv4)]);
    let (ips, _) = dns_query(&c1, dns, "two", RecordType::AAAA);
    assert_eq!(ips, vec![IpAddr::V6(v6)]);
    // and on the IPv6 gateway
    let dns6 = SocketAddr::new(net.gateway_v6.expect("dual stack").into(), 53);
    let (ips, rc) = dns_query(&c1, dns6, "app-two-1", RecordType::AAAA);
    assert_eq!(rc, ResponseCode::NoError);
    assert_eq!(ips, vec![IpAddr::V6(v6)]);
    let (ips, _) = dns_query(&c1, dns6, "two", RecordType::A);
    assert_eq!(ips, vec![IpAddr::V4(a2.ipv4)]);

    // and with real tools: busybox httpd in c2, wget by service name from c1
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from two\n").unwrap();
    let mut httpd = std::process::Command::new("ip")
        .args([
            "netns", "exec", &c2.name, "busybox", "httpd", "-f", "-p", "80", "-h",
        ])
        .arg(www.path())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(&mut httpd);
    c1.set_resolv_conf(&resolv_conf(Some(net.gateway_v4.into()), &[], &[], &[]).unwrap());
    let fetched = wait_for(Duration::from_secs(5), || {
        let out = c1.exec(&[
            "timeout",
            "3",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://two/",
        ]);
        String::from_utf8_lossy(&out.stdout).contains("hello from two")
    });
    assert!(fetched, "wget http://two/ from c1");

    // names live in berth-dns, not in the Networks that connected them
    env.restart();
    let (ips, _) = dns_query(&c1, dns, "app-two-1", RecordType::A);
    assert_eq!(ips, vec![IpAddr::V4(a2.ipv4)]);

    env.nets.remove_network(&id).await.unwrap();
    let links = host_links();
    assert!(!links.contains(&bridge_name(&id)));
    assert!(!links.contains(&host_veth_name(&id, &e1)));
    assert!(!nft_has_table(&env.table), "empty state leaves no table");
}

struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn format_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Starts TCP servers on `ports` inside `ns`, each answering `tcp-<port>` to every connection,
/// and a UDP echo server on `udp_port`; they stop when the returned guard drops.
struct Servers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<berth_network::netlink::NetnsThread<()>>,
}

impl Servers {
    fn start(ns: &Netns, tcp_ports: &[u16], udp_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for &port in tcp_ports {
            let stop = stop.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(
                spawn_in_netns(&ns.path(), move || {
                    let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    tx.send(()).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((mut s, _)) => {
                                let _ = s.write_all(format!("tcp-{port}").as_bytes());
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
                .unwrap(),
            );
            rx.recv().unwrap();
        }
        let stop2 = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        threads.push(
            spawn_in_netns(&ns.path(), move || {
                let s = UdpSocket::bind(("0.0.0.0", udp_port)).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 512];
                while !stop2.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = s.recv_from(&mut buf) {
                        let mut reply = b"echo:".to_vec();
                        reply.extend_from_slice(&buf[..n]);
                        let _ = s.send_to(&reply, peer);
                    }
                }
            })
            .unwrap(),
        );
        rx.recv().unwrap();
        Servers { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn tcp_get(addr: SocketAddr) -> Option<String> {
    blocking(|| tcp_get_blocking(addr))
}

fn tcp_get_blocking(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn udp_echo(from: IpAddr, to: SocketAddr) -> Option<String> {
    blocking(|| udp_echo_blocking(from, to))
}

fn udp_echo_blocking(from: IpAddr, to: SocketAddr) -> Option<String> {
    let s = UdpSocket::bind(SocketAddr::new(from, 0)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.send_to(b"ping", to).ok()?;
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_tcp_and_udp_ports_answer_from_the_host() {
    require_root!();
    let env = Env::new(false, vec![]);
    let host = HostAddr::new(Ipv4Addr::new(10, 234, 250, 1 + env.block as u8));
    let id = env.network_id("pub");
    create_plain(&env, &id).await;
    let c1 = Netns::new("p");
    let ep = env.endpoint_id(&id, "web");
    let base = random_port();
    let (p_lo_tcp, p_lo_udp, p_ip_tcp, p_ip_udp, p_range) =
        (base, base + 1, base + 2, base + 3, base + 4);
    let h = host.ip;
    let mut ports = Vec::new();
    for spec in [
        format!("127.0.0.1:{p_lo_tcp}:8080"),
        format!("127.0.0.1:{p_lo_udp}:9090/udp"),
        format!("{h}:{p_ip_tcp}:8080/tcp"),
        format!("{h}:{p_ip_udp}:9090/udp"),
        format!("127.0.0.1:{p_range}-{}:8080-8081", p_range + 1),
    ] {
        ports.extend(parse_ports(&spec).unwrap());
    }
    let mut c = connect(&ep, &c1, "eth0", names("app-web-1", "web"));
    c.ports = ports;
    env.nets.connect(&id, &c).await.unwrap();
    let servers = Servers::start(&c1, &[8080, 8081], 9090);

    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let at = |ip: IpAddr, port: u16| SocketAddr::new(ip, port);
    assert_eq!(tcp_get(at(lo, p_lo_tcp)).as_deref(), Some("tcp-8080"));
    assert_eq!(udp_echo(lo, at(lo, p_lo_udp)).as_deref(), Some("echo:ping"));
    assert_eq!(tcp_get(at(h.into(), p_ip_tcp)).as_deref(), Some("tcp-8080"));
    assert_eq!(
        udp_echo(h.into(), at(h.into(), p_ip_udp)).as_deref(),
        Some("echo:ping")
    );
    // a range maps port by port
    assert_eq!(tcp_get(at(lo, p_range)).as_deref(), Some("tcp-8080"));
    assert_eq!(tcp_get(at(lo, p_range + 1)).as_deref(), Some("tcp-8081"));
    // a port bound to the host IP is not published on 127.0.0.1, and vice versa
    assert_eq!(tcp_get(at(lo, p_ip_tcp)), None);
    assert_eq!(tcp_get(at(h.into(), p_lo_tcp)), None);

    // the ports go with the container
    env.nets.disconnect(&id, &ep).await.unwrap();
    assert_eq!(tcp_get(at(lo, p_lo_tcp)), None);
    assert!(!nft_chains(&env.table).iter().any(|c| c.starts_with("pub-")));
    drop(servers);
    env.nets.remove_network(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_on_different_networks_cannot_talk() {
    require_root!();
    // forwarding on, so that only the firewall stands between the networks
    let _forwarding = ForwardingGuard::new();
    let env = Env::new(true, vec![]);
    let (a, b) = (env.network_id("isoa"), env.network_id("isob"));
    for id in [&a, &b] {
        create_plain(&env, id).await;
    }
    let (c1, c2, c3) = (Netns::new("i"), Netns::new("j"), Netns::new("k"));
    let (e1, e2, e3) = (
        env.endpoint_id(&a, "c1"),
        env.endpoint_id(&a, "c2"),
        env.endpoint_id(&b, "c3"),
    );
    attach(&env, &a, &e1, &c1, "eth0", names("c1", "one")).await;
    let a2 = attach(&env, &a, &e2, &c2, "eth0", names("c2", "two")).await;
    let a3 = attach(&env, &b, &e3, &c3, "eth0", names("c3", "three")).await;
    assert!(c1.reaches(a2.ipv4.into()), "same network talks");
    assert!(!c1.ping(a3.ipv4.into()), "other network is dropped");
    assert!(!c3.ping(a2.ipv4.into()), "and the other way");
    // names of one network are not visible on the other
    let gw_b = env.nets.network(&b).unwrap().gateway_v4;
    let (ips, _) = dns_query(&c3, SocketAddr::new(gw_b.into(), 53), "c2", RecordType::A);
    assert!(ips.is_empty());

    // control: without berth's table the same packets do pass, so the rules are the cause
    run(&["nft", "delete", "table", "inet", &env.table], true);
    assert!(
        c1.reaches(a3.ipv4.into()),
        "forwarding works without the table"
    );
    env.nets.restore().await.unwrap();
    assert!(!c1.ping(a3.ipv4.into()), "restore brings isolation back");
    env.nets.remove_network(&a).await.unwrap();
    env.nets.remove_network(&b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_network_cannot_reach_other_host_addresses() {
    require_root!();
    let block = 1 + (u32::from_str_radix(&suffix(), 16).unwrap() % 250) as u8;
    let upstream_ip = Ipv4Addr::new(127, 78, 0, block);
    let upstream = fake_upstream(upstream_ip);
    let env = Env::new(false, vec![upstream_ip.into()]);
    let host = HostAddr::new(Ipv4Addr::new(10, 234, 251, 1 + env.block as u8));
    let listener = TcpListener::bind((host.ip, 0)).unwrap();
    let target = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { break };
            let _ = s.write_all(b"host");
        }
    });
    let (internal, open) = (env.network_id("int"), env.network_id("ext"));
    let inet = env
        .nets
        .create_network(&NetworkConfig {
            id: internal.clone(),
            internal: true,
            ..Default::default()
        })
        .await
        .unwrap();
    create_plain(&env, &open).await;
    let (ci, cn) = (Netns::new("q"), Netns::new("r"));
    let (ei, en) = (
        env.endpoint_id(&internal, "ci"),
        env.endpoint_id(&open, "cn"),
    );
    attach(&env, &internal, &ei, &ci, "eth0", names("ci", "svc")).await;
    attach(&env, &open, &en, &cn, "eth0", names("cn", "svc")).await;

    let routes = String::from_utf8(ci.exec(&["ip", "route"]).stdout).unwrap();
    assert!(
        !routes.contains("default"),
        "internal: no default route: {routes}"
    );
    // even a container that adds its own route through the gateway is stopped at the host
    ci.exec(&[
        "ip",
        "route",
        "add",
        &format!("{}/32", host.ip),
        "via",
        &inet.gateway_v4.to_string(),
    ]);
    let from = |ns: &Netns| {
        let t = spawn_in_netns(&ns.path(), move || tcp_get_blocking(target)).unwrap();
        blocking(|| t.join().unwrap())
    };
    assert_eq!(from(&ci), None, "internal network reaches a host address");
    assert_eq!(
        from(&cn).as_deref(),
        Some("host"),
        "control: a normal network does"
    );
    // DNS on the gateway still answers the internal network
    let (ips, _) = dns_query(
        &ci,
        SocketAddr::new(inet.gateway_v4.into(), 53),
        "ci",
        RecordType::A,
    );
    assert_eq!(ips.len(), 1);
    // but forwards nothing out of it, unlike on a normal network
    let (ext, rc) = dns_query(
        &ci,
        SocketAddr::new(inet.gateway_v4.into(), 53),
        "example.test",
        RecordType::A,
    );
    assert_eq!((ext.len(), rc), (0, ResponseCode::ServFail));
    let gw_open = env.nets.network(&open).unwrap().gateway_v4;
    let (ext, rc) = dns_query(
        &cn,
        SocketAddr::new(gw_open.into(), 53),
        "last.test",
        RecordType::A,
    );
    assert_eq!((ext.len(), rc), (1, ResponseCode::NoError));
    blocking(|| upstream.join().unwrap());
    env.nets.remove_network(&internal).await.unwrap();
    env.nets.remove_network(&open).await.unwrap();
}

/// A stand-in upstream resolver on a loopback address: answers every A query with 203.0.113.7.
fn fake_upstream(ip: Ipv4Addr) -> std::thread::JoinHandle<()> {
    use hickory_proto::op::{Header, Message};
    use hickory_proto::rr::{RData, Record, rdata::A};
    let sock = UdpSocket::bind((ip, 53)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new();
            r.set_header(Header::response_from_request(q.header()));
            r.add_query(q.queries()[0].clone());
            r.add_answer(Record::from_rdata(
                q.queries()[0].name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(203, 0, 113, 7))),
            ));
            let _ = sock.send_to(&r.to_vec().unwrap(), peer);
            if q.queries()[0].name().to_ascii().starts_with("last.") {
                break;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_returns_every_replica_and_drops_a_stopped_one() {
    require_root!();
    let block = 1 + (u32::from_str_radix(&suffix(), 16).unwrap() % 250) as u8;
    let upstream_ip = Ipv4Addr::new(127, 77, 0, block);
    let upstream = fake_upstream(upstream_ip);
    let env = Env::new(false, vec![upstream_ip.into()]);
    let id = env.network_id("dns");
    let net = create_plain(&env, &id).await;
    let client = Netns::new("cl");
    let ec = env.endpoint_id(&id, "client");
    attach(
        &env,
        &id,
        &ec,
        &client,
        "eth0",
        names("app-client-1", "client"),
    )
    .await;
    let mut replicas = Vec::new();
    for i in 1..=3 {
        let ns = Netns::new("w");
        let ep = env.endpoint_id(&id, "web");
        let att = attach(
            &env,
            &id,
            &ep,
            &ns,
            "eth0",
            names(&format!("app-web-{i}"), "web"),
        )
        .await;
        replicas.push((ns, ep, IpAddr::V4(att.ipv4)));
    }
    let dns = SocketAddr::new(net.gateway_v4.into(), 53);
    let all: std::collections::BTreeSet<IpAddr> = replicas.iter().map(|r| r.2).collect();
    let (first, rc) = dns_query(&client, dns, "web", RecordType::A);
    assert_eq!(rc, ResponseCode::NoError);
    assert_eq!(
        first
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        all
    );
    let (second, _) = dns_query(&client, dns, "web", RecordType::A);
    assert_eq!(second.len(), 3);
    assert_ne!(first[0], second[0], "round robin rotates the order");
    let (tasks, _) = dns_query(&client, dns, "tasks.web", RecordType::A);
    assert_eq!(tasks.len(), 3);
    let (one, _) = dns_query(&client, dns, "app-web-2", RecordType::A);
    assert_eq!(one, vec![replicas[1].2]);
    let (alias, _) = dns_query(&client, dns, "app-web-3-alias", RecordType::A);
    assert_eq!(alias, vec![replicas[2].2]);

    // a stopped replica disappears from every name
    env.nets.disconnect(&id, &replicas[1].1).await.unwrap();
    let (left, _) = dns_query(&client, dns, "web", RecordType::A);
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&replicas[1].2));
    // (an unknown name is forwarded: the stand-in upstream answers every name)
    let (gone, _) = dns_query(&client, dns, "app-web-2", RecordType::A);
    assert!(!gone.contains(&replicas[1].2), "{gone:?}");

    // a service too large for a UDP answer: truncated over UDP, complete over TCP
    for i in 0..60u8 {
        env.nets
            .register_names(
                &id,
                &format!("bulk-{i}"),
                DnsEntry {
                    container_name: format!("app-bulk-{i}"),
                    service: Some("bulk".into()),
                    ipv4: Some(Ipv4Addr::new(10, 234, 255, i)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let (udp, rc) = dns_query(&client, dns, "bulk", RecordType::A);
    assert_eq!(rc, ResponseCode::NoError);
    assert!(
        !udp.is_empty() && udp.len() < 60,
        "{} answers over UDP",
        udp.len()
    );
    let tcp = dns_query_tcp(&client, dns, "bulk", RecordType::A);
    assert_eq!(tcp.len(), 60);

    // other names go to the upstream resolver (a local stand-in here)
    let (ext, rc) = dns_query(&client, dns, "example.test", RecordType::A);
    assert_eq!(rc, ResponseCode::NoError);
    assert_eq!(ext, vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))]);
    let _ = dns_query(&client, dns, "last.test", RecordType::A);
    blocking(|| upstream.join().unwrap());
    env.nets.remove_network(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipam_survives_an_agent_restart_without_duplicates() {
    require_root!();
    let mut env = Env::new(false, vec![]);
    let id = env.network_id("ipam");
    let net = create_plain(&env, &id).await;
    let (c1, c2) = (Netns::new("s"), Netns::new("t"));
    let e1 = env.endpoint_id(&id, "c1");
    let a1 = attach(&env, &id, &e1, &c1, "eth0", names("c1", "one")).await;

    env.restart();
    env.nets.restore().await.unwrap();
    assert_eq!(
        env.nets.network(&id).unwrap(),
        net,
        "same network after restart"
    );
    let e2 = env.endpoint_id(&id, "c2");
    let a2 = attach(&env, &id, &e2, &c2, "eth0", names("c2", "two")).await;
    assert_ne!(a1.ipv4, a2.ipv4, "no duplicate address after restart");
    assert!(c2.reaches(a1.ipv4.into()), "the old endpoint still works");
    let other = env.network_id("ipam2");
    let net2 = create_plain(&env, &other).await;
    assert_ne!(net2.subnet_v4, net.subnet_v4);
    // the restored table has every network's chains
    let chains = nft_chains(&env.table);
    assert!(
        chains.iter().filter(|c| c.starts_with("fwd-")).count() == 2,
        "{chains:?}"
    );
    env.nets.remove_network(&id).await.unwrap();
    env.nets.remove_network(&other).await.unwrap();
    let state = std::fs::read_to_string(env.state.path().join("ipam.json")).unwrap();
    assert!(!state.contains(&id), "released: {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_networks_per_container_and_failed_attach_leaves_nothing() {
    require_root!();
    let env = Env::new(false, vec![]);
    let (a, b) = (env.network_id("mna"), env.network_id("mnb"));
    let na = create_plain(&env, &a).await;
    create_plain(&env, &b).await;
    let (c1, cb) = (Netns::new("m"), Netns::new("n"));
    let (e1a, e1b, eb) = (
        env.endpoint_id(&a, "c1"),
        env.endpoint_id(&b, "c1"),
        env.endpoint_id(&b, "cb"),
    );
    attach(&env, &a, &e1a, &c1, "eth0", names("c1", "one")).await;
    attach(&env, &b, &e1b, &c1, "eth1", names("c1", "one")).await;
    let ab = attach(&env, &b, &eb, &cb, "eth0", names("cb", "bee")).await;
    let routes = String::from_utf8(c1.exec(&["ip", "route"]).stdout).unwrap();
    let defaults: Vec<&str> = routes
        .lines()
        .filter(|l| l.starts_with("default"))
        .map(str::trim_end)
        .collect();
    assert_eq!(
        defaults,
        vec![format!(
            "default via {} dev eth0 proto static",
            na.gateway_v4
        )],
        "{routes}"
    );
    assert!(
        c1.reaches(ab.ipv4.into()),
        "reaches the second network over eth1"
    );

    // network_mode: none — loopback only
    let lonely = Netns::new("o");
    berth_network::bridge::loopback_only(&lonely.path())
        .await
        .unwrap();
    let links = lonely.exec(&["ip", "-j", "link"]);
    let v: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 1, "only lo");
    assert!(v[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert!(lonely.reaches(IpAddr::V4(Ipv4Addr::LOCALHOST)));

    // attaching to a namespace that does not exist fails cleanly
    let ghost = env.endpoint_id(&a, "ghost");
    let mut c = connect(&ghost, &c1, "eth0", names("ghost", "ghost"));
    c.netns = "/run/netns/berth-no-such-namespace".into();
    let err = env.nets.connect(&a, &c).await.unwrap_err();
    assert!(err.to_string().contains("berth-no-such-namespace"), "{err}");
    assert!(!host_links().contains(&host_veth_name(&a, &ghost)));
    let state = std::fs::read_to_string(env.state.path().join("ipam.json")).unwrap();
    assert!(!state.contains(&ghost), "address released: {state}");

    env.nets.remove_network(&a).await.unwrap();
    env.nets.remove_network(&b).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_leaves_no_bridge_veth_or_rule() {
    require_root!();
    let env = Env::new(false, vec![]);
    let (a, b) = (env.network_id("tda"), env.network_id("tdb"));
    create_plain(&env, &a).await;
    env.nets
        .create_network(&NetworkConfig {
            id: b.clone(),
            internal: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let (c1, c2) = (Netns::new("u"), Netns::new("v"));
    let (e1, e2) = (env.endpoint_id(&a, "c1"), env.endpoint_id(&b, "c2"));
    let mut c = connect(&e1, &c1, "eth0", names("c1", "one"));
    c.ports = parse_ports(&format!("127.0.0.1:{}:80", random_port())).unwrap();
    env.nets.connect(&a, &c).await.unwrap();
    attach(&env, &b, &e2, &c2, "eth0", names("c2", "two")).await;
    let ours = [
        bridge_name(&a),
        bridge_name(&b),
        host_veth_name(&a, &e1),
        host_veth_name(&b, &e2),
    ];
    let links = host_links();
    assert!(ours.iter().all(|l| links.contains(l)), "{links:?}");
    assert!(nft_has_table(&env.table));

    // removing networks with endpoints still on them takes everything along
    env.nets.remove_network(&a).await.unwrap();
    env.nets.remove_network(&b).await.unwrap();
    let links = host_links();
    for l in &ours {
        assert!(!links.contains(l), "{l} left behind");
    }
    assert!(!nft_has_table(&env.table), "nft table left behind");
    let inside = String::from_utf8(c1.exec(&["ip", "-j", "link"]).stdout).unwrap();
    assert!(!inside.contains("eth0"), "{inside}");
    let state = std::fs::read_to_string(env.state.path().join("networks.json")).unwrap();
    assert!(!state.contains(&a) && !state.contains(&b), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_after_a_reboot_recreates_bridge_rules_and_dns() {
    require_root!();
    let mut env = Env::new(false, vec![]);
    let id = env.network_id("boot");
    let net = create_plain(&env, &id).await;
    let (c1, c2) = (Netns::new("x"), Netns::new("y"));
    let e1 = env.endpoint_id(&id, "c1");
    let mut c = connect(&e1, &c1, "eth0", names("c1", "one"));
    let port = random_port();
    c.ports = parse_ports(&format!("127.0.0.1:{port}:8080")).unwrap();
    env.nets.connect(&id, &c).await.unwrap();
    let chains_before = nft_chains(&env.table);

    // "reboot": the kernel forgets the bridge, the veth and the table; the agent restarts
    run(&["ip", "link", "del", &host_veth_name(&id, &e1)], true);
    run(&["ip", "link", "del", &net.bridge], true);
    run(&["nft", "delete", "table", "inet", &env.table], true);
    env.restart();
    env.nets.restore().await.unwrap();

    assert!(host_links().contains(&net.bridge), "bridge re-created");
    let mut chains_after = nft_chains(&env.table);
    let mut before = chains_before.clone();
    chains_after.sort();
    before.sort();
    assert_eq!(
        chains_after, before,
        "the same table, published ports included"
    );
    // the container comes back (same endpoint, same address) and is reachable
    // again, by name and through its published port
    env.nets.disconnect(&id, &e1).await.unwrap();
    let a1 = env.nets.connect(&id, &c).await.unwrap();
    let e2 = env.endpoint_id(&id, "c2");
    attach(&env, &id, &e2, &c2, "eth0", names("c2", "two")).await;
    assert!(c2.reaches(a1.ipv4.into()));
    let (ips, _) = dns_query(
        &c2,
        SocketAddr::new(net.gateway_v4.into(), 53),
        "c1",
        RecordType::A,
    );
    assert_eq!(ips, vec![IpAddr::V4(a1.ipv4)]);
    let servers = Servers::start(&c1, &[8080], 9999);
    let lo = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    assert_eq!(tcp_get(lo).as_deref(), Some("tcp-8080"));
    drop(servers);
    env.nets.remove_network(&id).await.unwrap();
    assert!(!nft_has_table(&env.table));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_port_is_reachable_from_containers_through_a_host_address() {
    require_root!();
    // forwarding on: a container reaching a host address that DNATs back into a bridge is
    // routed by the host
    let _forwarding = ForwardingGuard::new();
    let env = Env::new(true, vec![]);
    let host = HostAddr::new(Ipv4Addr::new(10, 234, 252, 1 + env.block as u8));
    let (a, b) = (env.network_id("hpa"), env.network_id("hpb"));
    for id in [&a, &b] {
        create_plain(&env, id).await;
    }
    let (server, same, other) = (Netns::new("h"), Netns::new("g"), Netns::new("f"));
    let (es, eg, ef) = (
        env.endpoint_id(&a, "srv"),
        env.endpoint_id(&a, "same"),
        env.endpoint_id(&b, "other"),
    );
    let port = random_port();
    let mut c = connect(&es, &server, "eth0", names("srv", "srv"));
    c.ports = parse_ports(&format!("{}:{port}:8080", host.ip)).unwrap();
    env.nets.connect(&a, &c).await.unwrap();
    attach(&env, &a, &eg, &same, "eth0", names("same", "same")).await;
    attach(&env, &b, &ef, &other, "eth0", names("other", "other")).await;
    let servers = Servers::start(&server, &[8080], 9998);
    let target = SocketAddr::new(host.ip.into(), port);
    let from = |ns: &Netns| {
        let t = spawn_in_netns(&ns.path(), move || tcp_get_blocking(target)).unwrap();
        blocking(|| t.join().unwrap())
    };
    // hairpin: same network, through the host address (masqueraded so replies come back)
    assert_eq!(from(&same).as_deref(), Some("tcp-8080"));
    // another berth network may use published ports, though not reach the container directly
    assert_eq!(from(&other).as_deref(), Some("tcp-8080"));
    drop(servers);
    env.nets.remove_network(&a).await.unwrap();
    env.nets.remove_network(&b).await.unwrap();
}

/// A TCP server on `[::]:port` (IPv4 and IPv6) inside `ns`, answering `tcp6-<port>`.
fn tcp6_server(ns: &Netns, port: u16) -> KillFlag {
    use std::sync::atomic::Ordering;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let flag = stop.clone();
    let t = spawn_in_netns(&ns.path(), move || {
        let l = TcpListener::bind(("::", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        while !flag.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(format!("tcp6-{port}").as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    })
    .unwrap();
    rx.recv().unwrap();
    KillFlag(stop, Some(t))
}

struct KillFlag(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Option<berth_network::netlink::NetnsThread<()>>,
);

impl Drop for KillFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ports_answer_on_ipv6_host_addresses() {
    require_root!();
    let env = Env::new(false, vec![]);
    let host = HostAddr::new(Ipv4Addr::new(10, 234, 249, 1 + env.block as u8));
    let h6: std::net::Ipv6Addr = format!("fd62:6572:74ff:{:x}::1", env.block)
        .parse()
        .unwrap();
    run(
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{h6}/128"),
            "dev",
            &host.link,
            "nodad",
        ],
        true,
    );
    let id = env.network_id("pub6");
    env.nets
        .create_network(&NetworkConfig {
            id: id.clone(),
            request: NetworkRequest {
                enable_ipv6: true,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
    let c1 = Netns::new("p6");
    let ep = env.endpoint_id(&id, "web");
    let base = random_port();
    let (p_h6, p_any, p_lo6) = (base, base + 1, base + 2);
    // ([::1] is accepted but not reachable: IPv6 never routes a loopback source out of lo,
    // and has no route_localnet; Docker needs its userland proxy for it)
    let mut ports = Vec::new();
    for spec in [
        format!("[{h6}]:{p_h6}:8080"),
        format!("{p_any}:8080"),
        format!("[::1]:{p_lo6}:8080"),
    ] {
        ports.extend(parse_ports(&spec).unwrap());
    }
    let mut c = connect(&ep, &c1, "eth0", names("app-web-1", "web"));
    c.ports = ports;
    env.nets.connect(&id, &c).await.unwrap();
    let _server = tcp6_server(&c1, 8080);

    let at = |ip: IpAddr, port: u16| SocketAddr::new(ip, port);
    let lo6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    // an IPv6 host address bound explicitly, and every address
    // an IPv6 host address bound explicitly (the first connection also waits for the
    // bridge's neighbour discovery), and every address
    assert!(wait_for(Duration::from_secs(5), || tcp_get(at(
        h6.into(),
        p_h6
    ))
    .as_deref()
        == Some("tcp6-8080")));
    assert_eq!(tcp_get(at(h6.into(), p_any)).as_deref(), Some("tcp6-8080"));
    // and IPv4 still, for the "every address" one
    assert_eq!(
        tcp_get(at(Ipv4Addr::LOCALHOST.into(), p_any)).as_deref(),
        Some("tcp6-8080")
    );
    // a port bound to one address is not published on another
    assert_eq!(tcp_get(at(lo6, p_h6)), None);

    env.nets.disconnect(&id, &ep).await.unwrap();
    assert_eq!(tcp_get(at(h6.into(), p_h6)), None);
    env.nets.remove_network(&id).await.unwrap();
}
