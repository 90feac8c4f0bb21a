//! NAT, published ports and isolation with nftables, all in one berth-owned `inet` table.
//!
//! The desired rules are a pure function of a [`FirewallState`] (networks and published
//! ports). Every change is rendered as one nft script and loaded with `nft -f -`, which the
//! kernel applies as a single transaction: either the whole change is in, or none of it.
//!
//! Table layout (`table inet <name>`, name `berth` unless configured):
//! - base chains `forward`, `input` (filter), `prerouting`, `output`, `postrouting` (nat) hold
//!   only dispatch rules, regenerated in each batch (flush + refill);
//! - one regular chain per object: `fwd-<hex>` (forwarding policy of a network),
//!   `in-<hex>` (host access of an internal network), `nat-<hex>` (masquerade of a network),
//!   `pub-<hex>` (DNAT of one endpoint's published ports). Removing an object flushes and
//!   deletes its chain after the dispatch rules stop jumping to it, so removal is exact and
//!   needs no rule handles;
//! - set `bridges` of all berth bridge names, used for network isolation.
//!
//! This module must not create links or addresses.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bridge::BridgeNetwork;

/// Errors of rule changes, with nft's own message.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft rejected the {what} batch for table {table}: {stderr}")]
    Nft {
        table: String,
        what: String,
        stderr: String,
    },
    #[error("invalid table name {0:?} (letters, digits and '_' only)")]
    BadTable(String),
    #[error("invalid port mapping {spec:?}: {reason}")]
    BadPort { spec: String, reason: &'static str },
    #[error("host port {port}/{protocol} is already published by endpoint {endpoint}")]
    PortInUse {
        port: u16,
        protocol: &'static str,
        endpoint: String,
    },
    #[error("unknown network {0}")]
    UnknownNetwork(String),
    #[error("network {network} is internal: ports cannot be published on it")]
    InternalPublish { network: String },
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One host port forwarded to one container port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    /// Only packets to this host address are forwarded; `None` means every host address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

fn parse_range(s: &str, spec: &str) -> Result<(u16, u16), FirewallError> {
    let bad = |reason| FirewallError::BadPort {
        spec: spec.to_string(),
        reason,
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.parse().map_err(|_| bad("port is not a number 1-65535"))?;
    let b: u16 = b.parse().map_err(|_| bad("port is not a number 1-65535"))?;
    if a == 0 || b < a {
        return Err(bad("port range must be ascending and start at 1 or more"));
    }
    Ok((a, b))
}

/// Parses the Compose short syntax `[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/PROTO]`
/// (an IPv6 host address in brackets) into one mapping per port. A host port must be given:
/// berth does not pick ephemeral host ports.
pub fn parse_ports(spec: &str) -> Result<Vec<PortMapping>, FirewallError> {
    let bad = |reason| FirewallError::BadPort {
        spec: spec.to_string(),
        reason,
    };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, "tcp")) => (r, Protocol::Tcp),
        Some((r, "udp")) => (r, Protocol::Udp),
        Some(_) => return Err(bad("protocol must be tcp or udp")),
        None => (spec, Protocol::Tcp),
    };
    let (host_ip, ports) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, tail) = after.split_once("]:").ok_or_else(|| bad("unclosed '['"))?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad("bad IPv6 host address"))?;
        (Some(IpAddr::V6(ip)), tail)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [_, _] => (None, rest),
            [ip, _, _] => {
                let ip: Ipv4Addr = ip.parse().map_err(|_| bad("bad IPv4 host address"))?;
                let tail = rest.split_once(':').map_or("", |(_, t)| t);
                (Some(IpAddr::V4(ip)), tail)
            }
            [_] => return Err(bad("a host port is required (HOST:CONTAINER)")),
            _ => return Err(bad("too many ':'")),
        }
    };
    let (host, container) = ports
        .split_once(':')
        .ok_or_else(|| bad("expected HOST:CONTAINER"))?;
    let (h0, h1) = parse_range(host, spec)?;
    let (c0, c1) = parse_range(container, spec)?;
    if h1 - h0 != c1 - c0 {
        return Err(bad("host and container ranges differ in length"));
    }
    let host_ip = host_ip.filter(|ip| !ip.is_unspecified());
    Ok((0..=(h1 - h0))
        .map(|i| PortMapping {
            protocol,
            host_ip,
            host_port: h0 + i,
            container_port: c0 + i,
        })
        .collect())
}

/// The published ports of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub network_id: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ports: Vec<PortMapping>,
}

/// Everything the table must express; serializable so the agent can save it and call
/// [`Firewall::restore`] after a reboot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallState {
    pub networks: BTreeMap<String, BridgeNetwork>,
    /// Keyed by endpoint id (unique per network).
    pub published: BTreeMap<String, Published>,
}

fn hex12(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..12].to_string()
}

fn net_chain(kind: &str, network_id: &str) -> String {
    format!("{kind}-{}", hex12(network_id))
}

fn pub_chain(endpoint_key: &str) -> String {
    format!("pub-{}", hex12(endpoint_key))
}

/// The first mapping of `p` that another endpoint already publishes: same protocol and host
/// port, and host addresses that overlap (no address means every address).
fn port_conflict(
    state: &FirewallState,
    endpoint_id: &str,
    p: &Published,
) -> Option<(String, PortMapping)> {
    for (other_id, other) in &state.published {
        if other_id == endpoint_id {
            continue;
        }
        for m in &p.ports {
            let clash = other.ports.iter().any(|o| {
                o.protocol == m.protocol
                    && o.host_port == m.host_port
                    && (o.host_ip.is_none() || m.host_ip.is_none() || o.host_ip == m.host_ip)
            });
            if clash {
                return Some((other_id.clone(), *m));
            }
        }
    }
    None
}

/// Chains (with their rules) that belong to one object.
fn network_chains(net: &BridgeNetwork) -> Vec<(String, Vec<String>)> {
    let br = &net.bridge;
    let mut fwd = vec![format!("oifname \"{br}\" accept")];
    if net.internal {
        // not even published ports of other networks: an internal network has no way out
        fwd.push("drop".to_string());
    } else {
        // published ports of another network are reachable, as with Docker
        fwd.push("ct status dnat accept".to_string());
        fwd.push("oifname @bridges drop".to_string());
    }
    let mut chains = vec![(net_chain("fwd", &net.id), fwd)];
    if net.internal {
        let mut input = vec![
            // replies to connections the host opened into the network
            "ct state established,related accept".to_string(),
            format!(
                "ip daddr {} meta l4proto {{ tcp, udp }} th dport 53 accept",
                net.gateway_v4
            ),
        ];
        if let Some(g) = net.gateway_v6 {
            input.push(format!(
                "ip6 daddr {g} meta l4proto {{ tcp, udp }} th dport 53 accept"
            ));
        }
        input.push(
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept"
                .to_string(),
        );
        input.push("drop".to_string());
        chains.push((net_chain("in", &net.id), input));
    } else {
        let mut nat = vec![
            format!("ip saddr {} oifname != \"{br}\" masquerade", net.subnet_v4),
            // host-originated connections to a published port on 127.0.0.1 keep their
            // loopback source after the output DNAT; rewrite it so the container can answer
            format!("oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade"),
            // hairpin: a container reaching a published port of its own network via a host IP
            format!(
                "oifname \"{br}\" ip saddr {} ct status dnat masquerade",
                net.subnet_v4
            ),
        ];
        if let Some(s6) = net.subnet_v6 {
            nat.push(format!("ip6 saddr {s6} oifname != \"{br}\" masquerade"));
        }
        chains.push((net_chain("nat", &net.id), nat));
    }
    chains
}

fn published_rules(p: &Published) -> Vec<String> {
    let mut rules = Vec::new();
    for m in &p.ports {
        let proto = m.protocol.nft();
        match m.host_ip {
            Some(IpAddr::V4(h)) => rules.push(format!(
                "ip daddr {h} {proto} dport {} dnat ip to {}:{}",
                m.host_port, p.ipv4, m.container_port
            )),
            Some(IpAddr::V6(h)) => {
                if let Some(c6) = p.ipv6 {
                    rules.push(format!(
                        "ip6 daddr {h} {proto} dport {} dnat ip6 to [{c6}]:{}",
                        m.host_port, m.container_port
                    ));
                }
            }
            None => {
                rules.push(format!(
                    "meta nfproto ipv4 {proto} dport {} dnat ip to {}:{}",
                    m.host_port, p.ipv4, m.container_port
                ));
                if let Some(c6) = p.ipv6 {
                    rules.push(format!(
                        "meta nfproto ipv6 {proto} dport {} dnat ip6 to [{c6}]:{}",
                        m.host_port, m.container_port
                    ));
                }
            }
        }
    }
    rules
}

fn object_chains(state: &FirewallState) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for net in state.networks.values() {
        out.extend(network_chains(net));
    }
    for (key, p) in &state.published {
        out.insert(pub_chain(key), published_rules(p));
    }
    out
}

const BASE_CHAINS: &[(&str, &str)] = &[
    (
        "forward",
        "type filter hook forward priority filter; policy accept;",
    ),
    (
        "input",
        "type filter hook input priority filter; policy accept;",
    ),
    (
        "prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
    ),
    (
        "output",
        "type nat hook output priority -100; policy accept;",
    ),
    (
        "postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
    ),
];

fn dispatch_rules(state: &FirewallState) -> Vec<(&'static str, Vec<String>)> {
    let mut forward = vec!["ct state established,related accept".to_string()];
    let mut input = Vec::new();
    let mut postrouting = Vec::new();
    for net in state.networks.values() {
        forward.push(format!(
            "iifname \"{}\" jump {}",
            net.bridge,
            net_chain("fwd", &net.id)
        ));
        if net.internal {
            input.push(format!(
                "iifname \"{}\" jump {}",
                net.bridge,
                net_chain("in", &net.id)
            ));
        } else {
            postrouting.push(format!("jump {}", net_chain("nat", &net.id)));
        }
    }
    // nothing from outside enters an internal network
    for net in state.networks.values().filter(|n| n.internal) {
        forward.push(format!("oifname \"{}\" drop", net.bridge));
    }
    let published: Vec<String> = state
        .published
        .keys()
        .map(|k| format!("jump {}", pub_chain(k)))
        .collect();
    vec![
        ("forward", forward),
        ("input", input),
        ("postrouting", postrouting),
        (
            "prerouting",
            vec!["fib daddr type local jump published".into()],
        ),
        ("output", vec!["fib daddr type local jump published".into()]),
        ("published", published),
    ]
}

/// The nft script that takes the table from `old` to `new` in one transaction. Only objects
/// that appear, change or disappear are touched, apart from the small dispatch chains.
pub fn render_change(table: &str, old: &FirewallState, new: &FirewallState) -> String {
    let t = format!("inet {table}");
    let mut s = String::new();
    let _ = writeln!(s, "add table {t}");
    for (name, spec) in BASE_CHAINS {
        let _ = writeln!(s, "add chain {t} {name} {{ {spec} }}");
    }
    let _ = writeln!(s, "add chain {t} published");
    let _ = writeln!(s, "add set {t} bridges {{ type ifname; }}");
    let old_chains = object_chains(old);
    let new_chains = object_chains(new);
    // new or changed object chains first, so the dispatch rules can jump to them
    for (name, rules) in &new_chains {
        if old_chains.get(name) == Some(rules) {
            continue;
        }
        let _ = writeln!(s, "add chain {t} {name}");
        let _ = writeln!(s, "flush chain {t} {name}");
        for r in rules {
            let _ = writeln!(s, "add rule {t} {name} {r}");
        }
    }
    let _ = writeln!(s, "flush set {t} bridges");
    let bridges: Vec<String> = new
        .networks
        .values()
        .map(|n| format!("\"{}\"", n.bridge))
        .collect();
    if !bridges.is_empty() {
        let _ = writeln!(s, "add element {t} bridges {{ {} }}", bridges.join(", "));
    }
    for (chain, rules) in dispatch_rules(new) {
        let _ = writeln!(s, "flush chain {t} {chain}");
        for r in rules {
            let _ = writeln!(s, "add rule {t} {chain} {r}");
        }
    }
    // gone objects last: nothing jumps to them any more
    for name in old_chains.keys() {
        if !new_chains.contains_key(name) {
            let _ = writeln!(s, "flush chain {t} {name}");
            let _ = writeln!(s, "delete chain {t} {name}");
        }
    }
    s
}

/// The nft script that replaces whatever the table holds with exactly `state`.
pub fn render_restore(table: &str, state: &FirewallState) -> String {
    // `add` then `delete` makes the deletion valid whether or not the table exists (nft 1.0.6
    // has no `destroy`); all in one transaction, so there is no moment without rules
    let mut s = format!("add table inet {table}\ndelete table inet {table}\n");
    s.push_str(&render_change(table, &FirewallState::default(), state));
    s
}

/// Loads `script` with `nft -f -` (one kernel transaction).
fn apply(table: &str, what: &str, script: &str) -> Result<(), FirewallError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .map_err(FirewallError::Spawn)?;
    let out = child.wait_with_output().map_err(FirewallError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(FirewallError::Nft {
            table: table.to_string(),
            what: what.to_string(),
            stderr: stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .collect::<Vec<_>>()
                .join(" | "),
        })
    }
}

/// The firewall of one node: the desired state in memory and the table in the kernel, kept
/// equal by applying every change as one batch.
#[derive(Debug)]
pub struct Firewall {
    table: String,
    manage_forwarding: bool,
    state: FirewallState,
    /// Whether the kernel table is known to match `state` (so changes can be incremental).
    in_kernel: bool,
}

impl Firewall {
    /// A firewall owning `table inet <table>`. With `manage_forwarding`, adding the first
    /// non-internal network turns on `net.ipv4.ip_forward` (and IPv6 forwarding for dual-stack
    /// networks), which masquerade and published ports from other hosts need; it is never
    /// turned off again, since other software may rely on it by then.
    pub fn new(table: &str, manage_forwarding: bool) -> Result<Self, FirewallError> {
        if table.is_empty()
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(FirewallError::BadTable(table.to_string()));
        }
        Ok(Firewall {
            table: table.to_string(),
            manage_forwarding,
            state: FirewallState::default(),
            // a table left by an earlier run may hold stale chains: the first change rewrites it
            in_kernel: false,
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn state(&self) -> &FirewallState {
        &self.state
    }

    /// Takes `state` as the desired state (loaded from disk) without touching the kernel,
    /// which may not hold it (after a reboot): the next change then rewrites the whole table.
    pub fn set_state_unapplied(&mut self, state: FirewallState) {
        self.state = state;
        self.in_kernel = false;
    }

    fn change(&mut self, what: &str, new: FirewallState) -> Result<(), FirewallError> {
        let t = &self.table;
        let script = if new == FirewallState::default() {
            // nothing left to express: leave no table behind
            format!("add table inet {t}\ndelete table inet {t}\n")
        } else if self.in_kernel {
            render_change(&self.table, &self.state, &new)
        } else {
            render_restore(&self.table, &new)
        };
        apply(&self.table, what, &script)?;
        self.state = new;
        self.in_kernel = true;
        Ok(())
    }

    /// Re-creates the whole table from `state` in one batch (after a reboot or restart).
    pub fn restore(&mut self, state: FirewallState) -> Result<(), FirewallError> {
        if self.manage_forwarding {
            for net in state.networks.values() {
                self.enable_forwarding(net)?;
            }
        }
        let t = &self.table;
        let script = if state == FirewallState::default() {
            format!("add table inet {t}\ndelete table inet {t}\n")
        } else {
            render_restore(t, &state)
        };
        apply(t, "restore", &script)?;
        self.state = state;
        self.in_kernel = true;
        Ok(())
    }

    fn enable_forwarding(&self, net: &BridgeNetwork) -> Result<(), FirewallError> {
        if net.internal {
            return Ok(());
        }
        let mut sysctls = vec!["/proc/sys/net/ipv4/ip_forward"];
        if net.subnet_v6.is_some() {
            sysctls.push("/proc/sys/net/ipv6/conf/all/forwarding");
        }
        for path in sysctls {
            if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
                continue;
            }
            std::fs::write(path, "1").map_err(|source| FirewallError::Sysctl { path, source })?;
        }
        Ok(())
    }

    /// Adds (or updates) the isolation, host-access and masquerade rules of `net`.
    pub fn add_network(&mut self, net: &BridgeNetwork) -> Result<(), FirewallError> {
        if self.manage_forwarding {
            self.enable_forwarding(net)?;
        }
        let mut new = self.state.clone();
        new.networks.insert(net.id.clone(), net.clone());
        self.change("add network", new)
    }

    /// Removes every rule of network `id`, including the published ports of its endpoints.
    pub fn remove_network(&mut self, id: &str) -> Result<(), FirewallError> {
        let mut new = self.state.clone();
        new.networks.remove(id);
        new.published.retain(|_, p| p.network_id != id);
        self.change("remove network", new)
    }

    /// Publishes the ports of endpoint `endpoint_id` (replacing earlier ones of it).
    pub fn publish(
        &mut self,
        endpoint_id: &str,
        published: Published,
    ) -> Result<(), FirewallError> {
        let net = self
            .state
            .networks
            .get(&published.network_id)
            .ok_or_else(|| FirewallError::UnknownNetwork(published.network_id.clone()))?;
        if net.internal {
            return Err(FirewallError::InternalPublish {
                network: net.id.clone(),
            });
        }
        if let Some((other, m)) = port_conflict(&self.state, endpoint_id, &published) {
            return Err(FirewallError::PortInUse {
                port: m.host_port,
                protocol: m.protocol.nft(),
                endpoint: other,
            });
        }
        let mut new = self.state.clone();
        new.published.insert(endpoint_id.to_string(), published);
        self.change("publish", new)
    }

    /// Removes the published ports of endpoint `endpoint_id` (none is fine).
    pub fn unpublish(&mut self, endpoint_id: &str) -> Result<(), FirewallError> {
        let mut new = self.state.clone();
        if new.published.remove(endpoint_id).is_none() {
            return Ok(());
        }
        self.change("unpublish", new)
    }

    /// Deletes the whole table (uninstall, or the end of a test).
    pub fn delete_table(&mut self) -> Result<(), FirewallError> {
        let t = format!("inet {}", self.table);
        apply(
            &self.table,
            "delete table",
            &format!("add table {t}\ndelete table {t}\n"),
        )?;
        self.state = FirewallState::default();
        self.in_kernel = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, subnet: &str, internal: bool) -> BridgeNetwork {
        let s: ipnetwork::Ipv4Network = subnet.parse().unwrap();
        BridgeNetwork {
            id: id.into(),
            bridge: crate::bridge::bridge_name(id),
            subnet_v4: s,
            gateway_v4: s.nth(1).unwrap(),
            subnet_v6: None,
            gateway_v6: None,
            mtu: None,
            internal,
            labels: Default::default(),
            created: String::new(),
        }
    }

    #[test]
    fn port_short_syntax() {
        let m = parse_ports("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            m,
            vec![PortMapping {
                protocol: Protocol::Tcp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080,
                container_port: 80
            }]
        );
        let m = parse_ports("9000-9002:7000-7002/udp").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].host_port, 9002);
        assert_eq!(m[2].container_port, 7002);
        assert_eq!(m[0].protocol, Protocol::Udp);
        let m = parse_ports("[::1]:53:53/udp").unwrap();
        assert_eq!(m[0].host_ip, Some("::1".parse().unwrap()));
        let m = parse_ports("0.0.0.0:80:80").unwrap();
        assert_eq!(m[0].host_ip, None);
        for bad in [
            "80",
            "a:80",
            "80:80/sctp",
            "1-3:1-2",
            "5-3:5-3",
            "0:80",
            "1.2.3:80:80",
        ] {
            assert!(parse_ports(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn change_touches_only_what_changed_and_deletes_gone_chains() {
        let mut a = FirewallState::default();
        a.networks
            .insert("n1".into(), net("n1", "10.234.1.0/24", false));
        let mut b = a.clone();
        b.networks
            .insert("n2".into(), net("n2", "10.234.2.0/24", true));
        let script = render_change("t", &a, &b);
        let n1fwd = net_chain("fwd", "n1");
        let n2fwd = net_chain("fwd", "n2");
        assert!(!script.contains(&format!("add chain inet t {n1fwd}")));
        assert!(script.contains(&format!("add chain inet t {n2fwd}")));
        assert!(script.contains(&format!("add chain inet t {}", net_chain("in", "n2"))));
        assert!(
            !script.contains(&net_chain("nat", "n2")),
            "internal: no masquerade"
        );
        let back = render_change("t", &b, &a);
        assert!(back.contains(&format!("delete chain inet t {n2fwd}")));
        let del = back.find("delete chain").unwrap();
        let flush_dispatch = back.find("flush chain inet t forward").unwrap();
        assert!(flush_dispatch < del, "dispatch refilled before chains go");
    }

    #[test]
    fn published_rules_bind_host_ip() {
        let p = Published {
            network_id: "n".into(),
            ipv4: "10.234.1.2".parse().unwrap(),
            ipv6: None,
            ports: parse_ports("127.0.0.1:8080:80")
                .unwrap()
                .into_iter()
                .chain(parse_ports("5353:53/udp").unwrap())
                .collect(),
        };
        let r = published_rules(&p);
        assert_eq!(
            r,
            vec![
                "ip daddr 127.0.0.1 tcp dport 8080 dnat ip to 10.234.1.2:80".to_string(),
                "meta nfproto ipv4 udp dport 5353 dnat ip to 10.234.1.2:53".to_string(),
            ]
        );
    }

    #[test]
    fn a_host_port_is_published_once() {
        let mut s = FirewallState::default();
        let p = |spec: &str| Published {
            network_id: "n".into(),
            ipv4: "10.234.1.2".parse().unwrap(),
            ipv6: None,
            ports: parse_ports(spec).unwrap(),
        };
        s.published.insert("a".into(), p("127.0.0.1:8080:80"));
        assert!(
            port_conflict(&s, "b", &p("8080:80")).is_some(),
            "any address overlaps"
        );
        assert!(port_conflict(&s, "b", &p("127.0.0.1:8080:80")).is_some());
        assert!(port_conflict(&s, "b", &p("127.0.0.2:8080:80")).is_none());
        assert!(port_conflict(&s, "b", &p("127.0.0.1:8080:80/udp")).is_none());
        assert!(
            port_conflict(&s, "a", &p("8080:80")).is_none(),
            "itself: a replacement"
        );
        let (who, m) = port_conflict(&s, "b", &p("8079-8081:79-81")).unwrap();
        assert_eq!((who.as_str(), m.host_port), ("a", 8080));
    }

    #[test]
    fn restore_starts_from_an_empty_table() {
        let mut s = FirewallState::default();
        s.networks
            .insert("n1".into(), net("n1", "10.234.1.0/24", false));
        let script = render_restore("berth_x", &s);
        assert!(script.starts_with("add table inet berth_x\ndelete table inet berth_x\n"));
        assert!(script.contains("masquerade"));
    }

    #[test]
    fn table_names_are_checked() {
        assert!(Firewall::new("berth", false).is_ok());
        assert!(Firewall::new("bad name", false).is_err());
        assert!(Firewall::new("", false).is_err());
    }
}
