//! Benchmark (root): attaching network namespaces (stand-ins for containers) to one berth
//! network — veth pair, move, rename, MAC, addresses, default route, IPAM persistence and DNS
//! registration — and the bring-up of 100 namespaces on one network. Run with
//! `bench/network.sh` (or `cargo bench -p berth-network --bench attach`); figures go to
//! docs/benchmarks.md. Uses its own nft table and 10.234.224.0/20, and removes all it made.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_network::dns::DnsEntry;
use berth_network::ipam::Pool;
use berth_network::networks::{Connect, NetworkConfig, Networks, Options};

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn add_netns(name: &str) {
    let ok = Command::new("ip")
        .args(["netns", "add", name])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip netns add {name}");
}

fn stats(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label}: n={} median={:.2} ms p90={:.2} ms min={:.2} ms max={:.2} ms",
        v.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(v[0]),
        ms(v[v.len() - 1])
    );
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("the attach benchmark needs root");
        return;
    }
    let n: usize = std::env::var("BERTH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tag = format!("{:x}", std::process::id());
    // BERTH_BENCH_STATE_DIR=/dev/shm separates the fsync cost of the state files from the
    // kernel work; by default the state lives on the disk, as in production
    let state = match std::env::var("BERTH_BENCH_STATE_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).unwrap(),
        Err(_) => tempfile::tempdir_in("/var/tmp").unwrap(),
    };
    println!("state dir {}", state.path().display());
    let table = format!("berth_bench{tag}");
    let network_id = format!("bench-{tag}");
    rt.block_on(async {
        let nets = Networks::open(Options {
            state_dir: state.path().to_path_buf(),
            pool: Pool::single(
                "10.234.224.0/20".parse().unwrap(),
                20,
                "fd62:6572:74ff::/48".parse().unwrap(),
                64,
            )
            .unwrap(),
            table: table.clone(),
            manage_forwarding: false,
            host_upstreams: vec![],
            dns_port: 53,
            dns_binary: Some(env!("CARGO_BIN_EXE_berth-dns").into()),
        })
        .unwrap();
        let net = nets
            .create_network(&NetworkConfig {
                id: network_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        println!("network {} subnet {}", net.bridge, net.subnet_v4);

        // 1: attach only (namespaces made beforehand, as a runtime would hand them over)
        let mut spaces = Namespaces(Vec::new());
        for i in 0..n {
            let name = format!("bb{tag}-{i}");
            add_netns(&name);
            spaces.0.push(name);
        }
        let mut attach = Vec::new();
        let start_all = Instant::now();
        for (i, name) in spaces.0.iter().enumerate() {
            let c = Connect {
                endpoint_id: format!("a{i}"),
                netns: PathBuf::from(format!("/run/netns/{name}")),
                ifname: "eth0".into(),
                default_route: true,
                names: DnsEntry {
                    container_name: format!("bench-web-{i}"),
                    service: Some("web".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let t = Instant::now();
            nets.connect(&network_id, &c).await.unwrap();
            attach.push(t.elapsed());
        }
        let attach_total = start_all.elapsed();
        stats("attach one namespace", attach);
        println!(
            "attach {n} namespaces sequentially: {:.1} ms total",
            attach_total.as_secs_f64() * 1000.0
        );
        let mut detach = Vec::new();
        for i in 0..n {
            let t = Instant::now();
            nets.disconnect(&network_id, &format!("a{i}"))
                .await
                .unwrap();
            detach.push(t.elapsed());
        }
        stats("detach one namespace", detach);
        drop(spaces);

        // 2: bring-up of n namespaces: create each namespace (ip netns add) and attach it
        let mut spaces = Namespaces(Vec::new());
        let t = Instant::now();
        for i in 0..n {
            let name = format!("bc{tag}-{i}");
            add_netns(&name);
            spaces.0.push(name.clone());
            let c = Connect {
                endpoint_id: format!("b{i}"),
                netns: PathBuf::from(format!("/run/netns/{name}")),
                ifname: "eth0".into(),
                default_route: true,
                ..Default::default()
            };
            nets.connect(&network_id, &c).await.unwrap();
        }
        println!(
            "bring-up of {n} namespaces (ip netns add + attach): {:.1} ms total",
            t.elapsed().as_secs_f64() * 1000.0
        );
        let t = Instant::now();
        nets.remove_network(&network_id).await.unwrap();
        println!(
            "remove the network with {n} endpoints: {:.1} ms",
            t.elapsed().as_secs_f64() * 1000.0
        );
        drop(spaces);
    });
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &table])
        .output();
    let _ = Command::new("ip")
        .args([
            "link",
            "del",
            &berth_network::bridge::bridge_name(&network_id),
        ])
        .output();
}
