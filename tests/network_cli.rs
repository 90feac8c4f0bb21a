//! Networks, names, published ports and volumes through the CLI with real containers (root):
//! containers on a user-defined network reach each other by name through `berth-dns`, which
//! outlives every `berth` process; a stopped container's name goes; Compose service names
//! return every replica; `port`; anonymous volumes, `--volumes-from`, `--mount`, `rm -v`,
//! `volume` commands; and after teardown no bridge, veth, nft table, mount or DNS process is
//! left. Each test has its own data root and names, and removes what it made through a
//! drop guard.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_node_agent::container::Containers;
use berth_testkit::{IpForward, bins, root};
use sha2::{Digest as _, Sha256};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn bin_dir() -> PathBuf {
    bins::dir_of(BERTH)
}

struct Env {
    root: tempfile::TempDir,
    /// Short, unique per test: network and container names carry it.
    tag: String,
    _forward: IpForward,
}

impl Env {
    fn new(tag: &str) -> Env {
        bins::ensure(&bin_dir(), bins::NETWORKED);
        let root = root::busybox_root("berth-net-test-");
        let h = hex::encode(Sha256::digest(root.path().as_os_str().as_encoded_bytes()));
        Env {
            root,
            tag: format!("{tag}{}", &h[..6]),
            _forward: IpForward::hold(),
        }
    }

    /// Runs berth to completion, bounded: a hung command fails the test instead of hanging.
    fn run(&self, args: &[&str]) -> Output {
        // the single-container verbs live under `berth container`
        let group: &[&str] = match args.first() {
            Some(&("run" | "rm" | "port" | "exec" | "stop" | "inspect" | "ps" | "logs")) => {
                &["container"]
            }
            _ => &[],
        };
        berth_testkit::bounded(120, BERTH)
            .arg("--data-root")
            .arg(self.root.path())
            .args(group)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("timeout berth")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "berth {args:?} should have failed");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    fn containers(&self) -> Containers {
        root::containers(self.root.path(), &bin_dir())
    }

    fn dns_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.root.path().join("network/dns.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The nft table of this data root (see the container layer's network scope).
    fn table(&self) -> String {
        let h = hex::encode(Sha256::digest(
            self.root.path().as_os_str().as_encoded_bytes(),
        ));
        format!("berth_{}", &h[..8])
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let c = self.containers();
        root::remove_containers(&c, true);
        let _ = c.remove_networks();
    }
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    berth_testkit::wait_for(what, Duration::from_secs(20), cond);
}

/// IPv4 addresses in busybox `nslookup` output, after the server's own lines.
fn looked_up(out: &str) -> Vec<String> {
    out.split("Name:")
        .skip(1)
        .flat_map(|block| {
            block
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
                .filter(|a| a.contains('.'))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_teardown_leaves_nothing() {
    berth_testkit::require_root!();
    let env = Env::new("n");
    let net = format!("front{}", env.tag);
    let id = env.ok(&["network", "create", "--label", "tier=web", &net]);
    assert_eq!(id.trim().len(), 64, "{id}");
    // Docker-style listing and inspection
    let ls = env.ok(&["network", "ls", "--format", "json"]);
    let mine: serde_json::Value = ls
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|n| n["Name"] == net.as_str())
        .unwrap_or_else(|| panic!("{net} not in {ls}"));
    assert_eq!(mine["Labels"], "tier=web");
    assert!(env.ok(&["network", "ls"]).contains(&net));
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", &net])).unwrap();
    let gateway = inspect[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .expect("gateway")
        .to_string();
    assert!(
        env.fails(&["network", "create", &net])
            .contains("already exists")
    );
    assert!(
        env.fails(&["network", "rm", "bridge"])
            .contains("pre-defined")
    );

    // two replicas of one Compose service, the first serving HTTP
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello from web\n").unwrap();
    let bind = format!("{}:/www:ro", www.path().display());
    let (web1, web2) = (format!("web1{}", env.tag), format!("web2{}", env.tag));
    let svc = format!("svc{}", env.tag);
    let label = format!("com.docker.compose.service={svc}");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &web1,
        "--network",
        &net,
        "-l",
        &label,
        "-v",
        &bind,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        &web2,
        "--network",
        &net,
        "-l",
        &label,
        "busybox",
        "sleep",
        "600",
    ]);
    // every `berth` process that connected them has exited; berth-dns answers alone
    let dns_pid = env.dns_pid().expect("berth-dns started");
    let resolv = env.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(
        resolv.contains(&format!("nameserver {gateway}")),
        "{resolv}"
    );

    let mut fetched = String::new();
    wait_for("wget http://web1/", || {
        fetched = env.ok(&[
            "run",
            "--rm",
            "--network",
            &net,
            "busybox",
            "timeout",
            "5",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{web1}/"),
        ]);
        fetched.contains("hello from web")
    });
    let replicas = looked_up(&env.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "nslookup",
        &svc,
    ]));
    assert_eq!(replicas.len(), 2, "both replicas: {replicas:?}");
    let web2_ip = looked_up(&env.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "nslookup",
        &web2,
    ]));
    assert_eq!(web2_ip.len(), 1);

    // a stopped container's name disappears, from its own name and from the service
    env.ok(&["stop", "-t", "1", &web2]);
    let gone = env.run(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "nslookup",
        &web2,
    ]);
    assert!(
        looked_up(&String::from_utf8_lossy(&gone.stdout)).is_empty(),
        "{}",
        String::from_utf8_lossy(&gone.stdout)
    );
    let left = looked_up(&env.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "nslookup",
        &svc,
    ]));
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left.contains(&web2_ip[0]));

    // the network is in use: refused; the server is the same process throughout
    let busy = env.fails(&["network", "rm", &net]);
    assert!(busy.contains("active endpoints"), "{busy}");
    assert_eq!(env.dns_pid(), Some(dns_pid));

    // teardown: containers, then the network; nothing of them is left on the host
    env.ok(&["rm", "-f", &web1, &web2]);
    env.ok(&["network", "rm", &net]);
    assert!(!env.ok(&["network", "ls"]).contains(&net));
    let c = env.containers();
    c.remove_networks().expect("remove networks");
    let bridge = format!("br-{}", &id.trim()[..12]);
    let links = String::from_utf8(
        Command::new("ip")
            .args(["-j", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let links: serde_json::Value = serde_json::from_str(&links).unwrap();
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .collect();
    assert!(
        !names.contains(&bridge.as_str()),
        "{bridge} left: {names:?}"
    );
    let ruleset = String::from_utf8(
        Command::new("nft")
            .args(["-j", "list", "ruleset"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        !ruleset.contains(&format!("\"{}\"", env.table())),
        "nft table {} left",
        env.table()
    );
    let root = env.root.path().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.lines().any(|l| l.contains(&root)),
        "mounts under {root} left"
    );
    // gone, or a zombie waiting for whoever adopted it to reap it
    wait_for("berth-dns to exit with no network left", || {
        let stat = std::fs::read_to_string(format!("/proc/{dns_pid}/stat")).unwrap_or_default();
        let comm_state = stat
            .rsplit_once(") ")
            .map(|(c, rest)| (c, rest.chars().next()));
        match comm_state {
            Some((c, state)) => !c.ends_with("(berth-dns") || state == Some('Z'),
            None => true,
        }
    });
}

#[test]
fn port_lists_published_ports() {
    berth_testkit::require_root!();
    let env = Env::new("p");
    let name = format!("pub{}", env.tag);
    let host_port = 20000 + (u16::from_str_radix(&env.tag[1..5], 16).unwrap() % 20000);
    let spec = format!("127.0.0.1:{host_port}:80");
    env.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &spec,
        "-p",
        "9999:99/udp",
        "busybox",
        "sleep",
        "600",
    ]);
    let all = env.ok(&["port", &name]);
    assert_eq!(
        all.lines().collect::<Vec<_>>(),
        [
            format!("80/tcp -> 127.0.0.1:{host_port}"),
            "99/udp -> 0.0.0.0:9999".to_string()
        ]
    );
    assert_eq!(
        env.ok(&["port", &name, "80"]).trim(),
        format!("127.0.0.1:{host_port}")
    );
    assert!(env.fails(&["port", &name, "81"]).contains("no public port"));
}

#[test]
fn anonymous_volumes_volumes_from_mounts_and_volume_commands() {
    berth_testkit::require_root!();
    let env = Env::new("v");
    let data = format!("data{}", env.tag);
    env.ok(&["volume", "create", "--label", "keep=yes", &data]);
    let ls: Vec<String> = env
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ls, [data.as_str()]);
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["volume", "inspect", &data])).unwrap();
    assert_eq!(inspect[0]["Labels"]["keep"], "yes");
    assert_eq!(inspect[0]["Driver"], "local");

    // an anonymous volume and a named one, written by one container…
    let v1 = format!("v1{}", env.tag);
    let d = format!("{data}:/d");
    env.ok(&[
        "run",
        "--name",
        &v1,
        "-v",
        "/anon",
        "-v",
        &d,
        "busybox",
        "sh",
        "-c",
        "echo hi > /anon/f && echo x > /d/f",
    ]);
    let vols: Vec<String> = env
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(vols.len(), 2, "{vols:?}");
    let anon = vols.iter().find(|v| **v != data).unwrap().clone();
    assert_eq!(anon.len(), 64);
    // …read by another through --volumes-from (read-only)
    let out = env.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        &format!("{v1}:ro"),
        "busybox",
        "sh",
        "-c",
        "cat /anon/f /d/f; touch /d/g 2>/dev/null && echo writable || echo readonly",
    ]);
    assert_eq!(out, "hi\nx\nreadonly\n");
    // a volume in use is not removed, even by prune
    assert!(env.fails(&["volume", "rm", &data]).contains("in use"));
    env.ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    // rm -v takes the anonymous volume along, never the named one
    env.ok(&["rm", "-v", &v1]);
    let left: Vec<String> = env
        .ok(&["volume", "ls", "-q"])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(left, [data.as_str()]);
    // --rm removes the anonymous volumes of its container
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "busybox",
        "touch",
        "/scratch/x",
    ]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    // data survives its containers
    let back = env.ok(&["run", "--rm", "-v", &d, "busybox", "cat", "/d/f"]);
    assert_eq!(back, "x\n");

    // --mount: a missing bind source is an error unless asked to create it
    let missing = env.root.path().join("missing");
    let m = format!("type=bind,source={},target=/m", missing.display());
    assert!(
        env.fails(&["run", "--rm", "--mount", &m, "busybox", "true"])
            .contains("does not exist")
    );
    let m = format!("{m},bind-create-host-path,bind-propagation=rslave");
    env.ok(&["run", "--rm", "--mount", &m, "busybox", "touch", "/m/made"]);
    assert!(missing.join("made").is_file());

    // prune: anonymous only by default, unused named ones with --all and a label filter
    env.ok(&["volume", "prune", "-f"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    env.ok(&["volume", "prune", "-a", "-f", "--filter", "label=keep=no"]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    let pruned = env.ok(&["volume", "prune", "-a", "-f", "--filter", "label=keep"]);
    assert!(pruned.contains(&data), "{pruned}");
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    env.ok(&["volume", "rm", "-f", "never-existed"]);
    assert!(
        env.fails(&["volume", "rm", "never-existed"])
            .contains("no such")
    );
}

#[test]
fn network_connect_adds_an_interface_and_names_and_prune_removes_unused_networks() {
    berth_testkit::require_root!();
    let env = Env::new("c");
    let (a, b) = (format!("a{}", env.tag), format!("b{}", env.tag));
    env.ok(&["network", "create", &a]);
    env.ok(&["network", "create", "--internal", &b]);
    let x = format!("x{}", env.tag);
    env.ok(&[
        "run",
        "-d",
        "--name",
        &x,
        "--network",
        &a,
        "busybox",
        "sleep",
        "600",
    ]);
    let alias = format!("alias{}", env.tag);
    env.ok(&["network", "connect", "--alias", &alias, &b, &x]);
    let links = env.ok(&["exec", &x, "ip", "-o", "link"]);
    assert!(links.contains("eth1"), "{links}");
    // on the second network by name and by alias; the default route stays on the first
    for name in [x.as_str(), alias.as_str()] {
        let found =
            looked_up(&env.ok(&["run", "--rm", "--network", &b, "busybox", "nslookup", name]));
        assert_eq!(found.len(), 1, "{name}: {found:?}");
    }
    let routes = env.ok(&["exec", &x, "ip", "route"]);
    assert_eq!(routes.matches("default").count(), 1, "{routes}");
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", &b])).unwrap();
    assert_eq!(inspect[0]["Internal"], true);
    assert_eq!(inspect[0]["Containers"].as_object().unwrap().len(), 1);
    assert!(
        env.fails(&["network", "connect", &b, &x])
            .contains("already connected")
    );

    env.ok(&["network", "disconnect", &b, &x]);
    let gone = env.run(&[
        "run",
        "--rm",
        "--network",
        &b,
        "busybox",
        "nslookup",
        &alias,
    ]);
    assert!(looked_up(&String::from_utf8_lossy(&gone.stdout)).is_empty());
    assert!(!env.ok(&["exec", &x, "ip", "-o", "link"]).contains("eth1"));

    // prune keeps the network a container refers to, removes the other
    let pruned = env.ok(&["network", "prune", "-f"]);
    assert!(pruned.contains(&b) && !pruned.contains(&a), "{pruned}");
    env.ok(&["rm", "-f", &x]);
    assert!(env.ok(&["network", "prune", "-f"]).contains(&a));
    let ls = env.ok(&["network", "ls", "-q"]);
    assert_eq!(ls.lines().count(), 3, "bridge, host, none: {ls}");
}
