//! Root tests on the real kernel: network namespaces stand in for containers, bridges, veths,
//! nftables and the DNS server are the real ones. Each test uses its own names, subnets
//! (10.234.0.0/16 only), nft table and state dir, and removes them even when it fails.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use berth_network::bridge::{bridge_name, host_veth_name};
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
    let env = Env::new(false, vec![]);
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
    let a1 = env
        .nets
        .connect(&id, &connect(&e1, &c1, "eth0", names("app-one-1", "one")))
        .await
        .unwrap();
    let a2 = env
        .nets
        .connect(&id, &connect(&e2, &c2, "eth0", names("app-two-1", "two")))
        .await
        .unwrap();
    assert_ne!(a1.ipv4, a2.ipv4);
    assert!(net.subnet_v4.contains(a1.ipv4));

    // interface, MTU, MAC and default route inside the "container"
    let links = c1.exec(&["ip", "-j", "link", "show", "eth0"]);
    let v: serde_json::Value = serde_json::from_slice(&links.stdout).unwrap();
    assert_eq!(v[0]["mtu"], 1400);
    assert_eq!(v[0]["address"].as_str().unwrap(), format_mac(a1.mac));
    let routes = String::from_utf8(c1.exec(&["ip", "route"]).stdout).unwrap();
    assert!(
        routes.contains(&format!("default via {}", net.gateway_v4)),
        "{routes}"
    );

    assert!(c1.ping(a2.ipv4.into()), "c1 pings c2 over IPv4");
    assert!(c2.ping(net.gateway_v4.into()), "c2 pings its gateway");
    let v6 = a2.ipv6.expect("dual stack");
    assert!(
        wait_for(Duration::from_secs(5), || c1.ping(v6.into())),
        "c1 pings c2 over IPv6"
    );

    // by name, through the embedded DNS on the gateway
    let dns = SocketAddr::new(net.gateway_v4.into(), 53);
    let (ips, rc) = dns_query(&c1, dns, "app-two-1", RecordType::A);
    assert_eq!(rc, ResponseCode::NoError);
    assert_eq!(ips, vec![IpAddr::V4(a2.ipv4)]);
    let (ips, _) = dns_query(&c1, dns, "two", RecordType::AAAA);
    assert_eq!(ips, vec![IpAddr::V6(v6)]);

    // and with real tools: busybox httpd in c2, wget by service name from c1
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from two\n").unwrap();
    let mut httpd = std::process::Command::new("ip")
        .args(["netns", "exec", &c2.name, "busybox", "httpd", "-f", "-p", "80", "-h"])
        .arg(www.path())
        .spawn()
        .unwrap();
    let _kill = KillOnDrop(&mut httpd);
    c1.set_resolv_conf(&resolv_conf(Some(net.gateway_v4.into()), &[], &[], &[]).unwrap());
    let fetched = wait_for(Duration::from_secs(5), || {
        let out = c1.exec(&["timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://two/"]);
        String::from_utf8_lossy(&out.stdout).contains("hello from two")
    });
    assert!(fetched, "wget http://two/ from c1");

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
