//! Shared fixtures of the root tests: throwaway network namespaces standing in for containers,
//! a berth `Networks` confined to a per-test nft table, subnet pool and state directory, and
//! Drop guards that remove everything a test made even when it fails.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_network::bridge::{bridge_name, host_veth_name};
use berth_network::ipam::Pool;
use berth_network::netlink::spawn_in_netns;
use berth_network::networks::{Networks, Options};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short random suffix: time, pid and a counter, so parallel tests and processes differ.
pub fn suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mix = t ^ ((std::process::id() as u64) << 20) ^ ((n as u64) << 40);
    format!("{:06x}", (mix ^ (mix >> 24)) & 0xff_ffff)
}

/// Runs blocking `f` without stalling the tokio worker it is called from: tasks queued on
/// that worker (such as the DNS server answering this very test) keep running elsewhere.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Runs a command and returns its output; panics with stderr when it fails and `check`.
pub fn run(args: &[&str], check: bool) -> Output {
    let out = blocking(|| Command::new(args[0]).args(&args[1..]).output())
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    if check && !out.status.success() {
        panic!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out
}

/// Skips (by returning false) when not root: these tests need real namespaces.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A network namespace standing in for a container; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!("bt{tag}-{}", suffix());
        run(&["ip", "netns", "add", &name], true);
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full, false)
    }

    /// Gives `ip netns exec` a resolv.conf for this namespace (bind-mounted over /etc).
    pub fn set_resolv_conf(&self, text: &str) {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/resolv.conf"), text).unwrap();
    }

    /// Whether `ip` answers a ping within a few seconds (retried: a fresh link may drop the
    /// first packets while neighbours are resolved).
    pub fn reaches(&self, ip: IpAddr) -> bool {
        wait_for(Duration::from_secs(5), || self.ping(ip))
    }

    /// One ping with a one-second wait.
    pub fn ping(&self, ip: IpAddr) -> bool {
        let ip = ip.to_string();
        self.exec(&["busybox", "ping", "-c1", "-W1", &ip])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// A link in the host namespace holding one "other host address".
pub struct HostAddr {
    pub link: String,
    pub ip: Ipv4Addr,
}

impl HostAddr {
    pub fn new(ip: Ipv4Addr) -> Self {
        let link = format!("bd{}", suffix());
        // a bridge, not a dummy: some kernels here are built without the dummy driver
        run(&["ip", "link", "add", &link, "type", "bridge"], true);
        let guard = HostAddr { link, ip };
        run(
            &["ip", "addr", "add", &format!("{ip}/32"), "dev", &guard.link],
            true,
        );
        run(&["ip", "link", "set", &guard.link, "up"], true);
        guard
    }
}

impl Drop for HostAddr {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
    }
}

/// Held by tests that let the firewall turn IP forwarding on: the last one to finish puts the
/// host's original `net.ipv4.ip_forward` back, so the tests leave the machine as they found it.
pub struct ForwardingGuard;

static FORWARDING: std::sync::Mutex<(u32, Option<String>)> = std::sync::Mutex::new((0, None));
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

impl ForwardingGuard {
    pub fn new() -> Self {
        let mut g = FORWARDING.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 == 0 {
            g.1 = std::fs::read_to_string(IP_FORWARD).ok();
        }
        g.0 += 1;
        ForwardingGuard
    }
}

impl Drop for ForwardingGuard {
    fn drop(&mut self) {
        let mut g = FORWARDING.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0
            && let Some(original) = g.1.take()
        {
            let _ = std::fs::write(IP_FORWARD, original.trim());
        }
    }
}

/// Which /20 of 10.234.0.0/16 this test's networks come from (unique per test in a process).
static BLOCK: AtomicU32 = AtomicU32::new(0);

/// A `Networks` confined to this test: own nft table, own /20 pool of 10.234.0.0/16 (one /24
/// per network), own state dir. Drop deletes the table and every bridge and veth it named.
pub struct Env {
    pub nets: Networks,
    pub table: String,
    pub state: tempfile::TempDir,
    pub block: u32,
    network_ids: std::sync::Mutex<Vec<String>>,
    endpoint_ids: std::sync::Mutex<Vec<(String, String)>>,
}

pub fn test_pool(block: u32) -> Pool {
    let v4 = format!("10.234.{}.0/20", (block % 14) * 16)
        .parse()
        .unwrap();
    let v6 = format!("fd62:6572:74{:02x}::/48", 0x80 + (block % 14))
        .parse()
        .unwrap();
    Pool::single(v4, 24, v6, 64).unwrap()
}

impl Env {
    pub fn new(manage_forwarding: bool, upstreams: Vec<IpAddr>) -> Self {
        let block = BLOCK.fetch_add(1, Ordering::Relaxed);
        let state = tempfile::tempdir().unwrap();
        let table = format!("berth_t{}", suffix());
        Self::open(state, table, block, manage_forwarding, upstreams)
    }

    pub fn open(
        state: tempfile::TempDir,
        table: String,
        block: u32,
        manage_forwarding: bool,
        upstreams: Vec<IpAddr>,
    ) -> Self {
        let opts = Options {
            state_dir: state.path().to_path_buf(),
            pool: test_pool(block),
            table: table.clone(),
            manage_forwarding,
            host_upstreams: upstreams,
            dns_port: 53,
            dns_binary: Some(env!("CARGO_BIN_EXE_berth-dns").into()),
        };
        let nets = Networks::open(opts).expect("open networks");
        Env {
            nets,
            table,
            state,
            block,
            network_ids: Default::default(),
            endpoint_ids: Default::default(),
        }
    }

    /// Simulates an agent restart: drops the running `Networks` (berth-dns keeps serving) and
    /// opens a new one on the same state dir, without any teardown.
    pub fn restart(&mut self) {
        let opts = Options {
            state_dir: self.state.path().to_path_buf(),
            pool: test_pool(self.block),
            table: self.table.clone(),
            manage_forwarding: false,
            host_upstreams: vec![],
            dns_port: 53,
            dns_binary: Some(env!("CARGO_BIN_EXE_berth-dns").into()),
        };
        self.nets = Networks::open(opts).expect("reopen networks");
    }

    /// A network id unique to this run; remembered for cleanup.
    pub fn network_id(&self, tag: &str) -> String {
        let id = format!("{tag}-{}", suffix());
        self.network_ids.lock().unwrap().push(id.clone());
        id
    }

    pub fn endpoint_id(&self, network: &str, tag: &str) -> String {
        let id = format!("{tag}-{}", suffix());
        self.endpoint_ids
            .lock()
            .unwrap()
            .push((network.to_string(), id.clone()));
        id
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // berth-dns outlives any Networks: stop this state dir's one
        self.nets.stop_dns();
        for (net, ep) in self.endpoint_ids.lock().unwrap().iter() {
            let _ = Command::new("ip")
                .args(["link", "del", &host_veth_name(net, ep)])
                .output();
        }
        for id in self.network_ids.lock().unwrap().iter() {
            let _ = Command::new("ip")
                .args(["link", "del", &bridge_name(id)])
                .output();
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .output();
    }
}

/// Names of every link in the host namespace.
pub fn host_links() -> Vec<String> {
    let out = run(&["ip", "-j", "link"], true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect()
}

/// Whether `nft -j list ruleset` mentions table `table` at all.
pub fn nft_has_table(table: &str) -> bool {
    let out = run(&["nft", "-j", "list", "ruleset"], true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"].as_array().unwrap().iter().any(|o| {
        o.get("table")
            .is_some_and(|t| t["name"].as_str() == Some(table))
            || o.get("chain")
                .is_some_and(|t| t["table"].as_str() == Some(table))
            || o.get("rule")
                .is_some_and(|t| t["table"].as_str() == Some(table))
    })
}

/// Chain names of table `inet <table>`.
pub fn nft_chains(table: &str) -> Vec<String> {
    let out = run(&["nft", "-j", "list", "table", "inet", table], false);
    if !out.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| {
            o.get("chain")
                .and_then(|c| c["name"].as_str())
                .map(String::from)
        })
        .collect()
}

/// Sends one DNS query from inside `ns` to `server` and returns the answer addresses and the
/// response code (runs on a thread that entered the namespace).
pub fn dns_query(
    ns: &Netns,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
) -> (Vec<IpAddr>, hickory_proto::op::ResponseCode) {
    let name = name.to_string();
    let path = ns.path();
    blocking(move || dns_query_blocking(path, server, name, qtype))
}

fn dns_query_blocking(
    path: PathBuf,
    server: SocketAddr,
    name: String,
    qtype: RecordType,
) -> (Vec<IpAddr>, hickory_proto::op::ResponseCode) {
    let t = spawn_in_netns(&path, move || {
        let any = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = std::net::UdpSocket::bind(any).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut q = Message::new();
        q.set_id(4242)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(&name).unwrap(), qtype));
        sock.send_to(&q.to_vec().unwrap(), server).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no DNS answer for {name} within 3 s: {e}"));
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.id(), 4242);
        let ips = m
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        (ips, m.response_code())
    })
    .unwrap();
    t.join().unwrap()
}

/// Polls `f` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    blocking(|| wait_for_blocking(timeout, f))
}

fn wait_for_blocking(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A random high port for published ports.
pub fn random_port() -> u16 {
    let s = u32::from_str_radix(&suffix(), 16).unwrap();
    20000 + (s % 30000) as u16
}

/// Like [`dns_query`] over TCP (length-prefixed); asserts the answer is not truncated.
pub fn dns_query_tcp(ns: &Netns, server: SocketAddr, name: &str, qtype: RecordType) -> Vec<IpAddr> {
    use std::io::{Read, Write};
    let name = name.to_string();
    let path = ns.path();
    blocking(move || {
        spawn_in_netns(&path, move || {
            let mut s =
                std::net::TcpStream::connect_timeout(&server, Duration::from_secs(3)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut q = Message::new();
            q.set_id(77)
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query)
                .add_query(Query::query(Name::from_ascii(&name).unwrap(), qtype));
            let body = q.to_vec().unwrap();
            let mut out = (body.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&body);
            s.write_all(&out).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).unwrap();
            let m = Message::from_vec(&buf).unwrap();
            assert!(!m.truncated());
            m.answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect()
        })
        .unwrap()
        .join()
        .unwrap()
    })
}
