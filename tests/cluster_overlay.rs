//! Networking and images across the nodes of a cluster, in the rig (`tests/cluster_rig`):
//! an app's services on different nodes reach each other by name over the overlay (VXLAN
//! between the nodes' namespaces), its published port answers on the node that runs it,
//! and the image imported on one node only runs on the other, fetched from its peer.
//! Root only; everything lives in the rig's namespaces and goes with them.

mod cluster_rig;

use std::process::{Command, Stdio};
use std::time::Duration;

use cluster_rig::Rig;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `berth ps --format json` of project `p` as node `from` sees it.
fn ps(rig: &Rig, from: usize, compose: &str, p: &str) -> Vec<serde_json::Value> {
    let out = rig.berth(from, &["-f", compose, "-p", p, "ps", "--format", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn running(rig: &Rig, from: usize, compose: &str, p: &str, service: &str) -> bool {
    ps(rig, from, compose, p)
        .iter()
        .any(|c| c["Service"] == service && c["State"] == "running")
}

/// `berth ARGS…` on node `i` with its run root too (exec and build run containers from the
/// CLI), bounded to 120 s.
fn berth_local(rig: &Rig, i: usize, args: &[&str]) -> std::process::Output {
    let node = &rig.nodes[i];
    Command::new("timeout")
        .args(["--kill-after=5", "120", cluster_rig::BERTH])
        .arg("--data-root")
        .arg(node.data_root())
        .arg("-H")
        .arg(node.host())
        .args(args)
        .env("BERTH_RUN_ROOT", node.root.join("run"))
        .current_dir(&node.root)
        .stdin(Stdio::null())
        .output()
        .expect("berth")
}

/// Forms a cluster of node 0 (manager) and node 1 (worker); the node ids.
fn form(rig: &Rig) -> Vec<String> {
    let advertise = rig.nodes[0].ip.clone();
    rig.ok(0, &["cluster", "init", "--advertise-addr", &advertise]);
    let token = rig
        .ok(0, &["cluster", "join-token", "worker", "-q"])
        .trim()
        .to_owned();
    let (ip1, ip0) = (rig.nodes[1].ip.clone(), rig.nodes[0].ip.clone());
    rig.ok(
        1,
        &[
            "cluster",
            "join",
            "--token",
            &token,
            "--advertise-addr",
            &ip1,
            &ip0,
        ],
    );
    rig.wait_for("2 ready nodes", Duration::from_secs(30), |r| {
        let nodes = r.nodes_seen_by(0);
        nodes.len() == 2 && nodes.iter().all(|n| n["Status"] == "ready")
    });
    let ids: Vec<String> = (0..2).map(|i| rig.id_of(i)).collect();
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
    ids
}

/// `wget` of `url` inside service `svc`'s container on node `i`, bounded; its output, or
/// what went wrong.
fn fetch_in(
    rig: &Rig,
    i: usize,
    compose: &str,
    p: &str,
    svc: &str,
    url: &str,
) -> Result<String, String> {
    exec_in(
        rig,
        i,
        &["-f", compose, "-p", p, "exec", "-T", svc],
        &["timeout", "5", "wget", "-q", "-O", "-", url],
    )
}

/// `berth exec` of `command` with `exec` (`-f … exec -T svc`) on node `i`; its stdout, or
/// what went wrong.
fn exec_in(rig: &Rig, i: usize, exec: &[&str], command: &[&str]) -> Result<String, String> {
    let args: Vec<&str> = exec.iter().chain(command).copied().collect();
    let out = berth_local(rig, i, &args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The overlay addresses `nslookup NAME` answers (the resolver's own lines left out).
fn resolved(output: &str) -> std::collections::BTreeSet<String> {
    output
        .split("Name:")
        .skip(1)
        .flat_map(|answer| answer.lines())
        .filter_map(|l| l.trim().strip_prefix("Address:"))
        .map(|a| a.trim().to_owned())
        .filter(|a| a.starts_with("10.208."))
        .collect()
}

/// Links, forwarding and neighbour entries of every node, for failure messages.
fn overlay_state(rig: &Rig) -> String {
    let mut out = String::new();
    for node in &rig.nodes {
        for args in [
            &["ip", "-n", &node.ns, "-d", "-br", "link"][..],
            &["ip", "-n", &node.ns, "-br", "addr"][..],
            &["bridge", "-n", &node.ns, "fdb", "show"][..],
            &["ip", "-n", &node.ns, "neigh", "show"][..],
        ] {
            let o = Command::new("timeout")
                .arg("10")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.push_str(&format!("$ {}\n{o}", args.join(" ")));
        }
        let dns = std::fs::read_to_string(node.data_root().join("network").join("dns.json"))
            .unwrap_or_default();
        out.push_str(&format!("dns.json: {dns}\n"));
    }
    out
}

fn app(a_node: &str, b_node: &str) -> String {
    format!(
        r#"services:
  a:
    image: busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-a > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["18080:80"]
    networks:
      default:
        aliases: [web]
    deploy:
      placement:
        constraints: ["node.id == {a_node}"]
  b:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: ["node.id == {b_node}"]
  c:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      mode: global
networks:
  default:
    driver: overlay
"#
    )
}

#[test]
fn services_on_two_nodes_reach_each_other_by_name_and_the_image_comes_from_the_peer() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // busybox only on node 0: node 1 must fetch it from node 0's image service
    let mut rig = Rig::with_busybox_on(2, |i| i == 0);
    let ids = form(&rig);
    let ip0 = rig.nodes[0].ip.clone();

    let compose = rig.compose(0, &app(&ids[0], &ids[1]));
    let compose = compose.to_str().unwrap().to_owned();
    // node 1 runs b from the same file (exec names its local container)
    let compose1 = rig.compose(1, &app(&ids[0], &ids[1]));
    let compose1 = compose1.to_str().unwrap().to_owned();
    rig.ok(0, &["-f", &compose, "-p", "ovl", "up", "-d"]);
    rig.wait_for("a and b running", Duration::from_secs(120), |r| {
        running(r, 0, &compose, "ovl", "a") && running(r, 0, &compose, "ovl", "b")
    });

    // the image was not on node 1 before: it came from node 0
    let store = berth_image::Store::open(rig.nodes[1].data_root().join("image")).expect("store");
    let busybox = berth_image::Reference::parse("busybox:latest").expect("ref");
    assert!(store.resolve(&busybox).is_ok(), "busybox is not on node 1");
    let names: Vec<String> = store
        .list_images()
        .expect("images")
        .iter()
        .filter_map(|i| i.reference.as_ref().map(ToString::to_string))
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(":4246/")),
        "the peer's name was left behind: {names:?}"
    );

    // b (node 1) reaches a (node 0) by service name, alias and tasks.<service>, over VXLAN
    for name in ["a", "web", "tasks.a"] {
        let url = format!("http://{name}/");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let got = loop {
            match fetch_in(&rig, 1, &compose1, "ovl", "b", &url) {
                Ok(page) => break page,
                Err(e) if std::time::Instant::now() > deadline => panic!(
                    "b cannot fetch {url}: {e}\n{}\n{}",
                    overlay_state(&rig),
                    rig.logs()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        };
        assert_eq!(got.trim(), "hello-from-a", "{name}");
    }
    // a global service's name answers with its tasks on both nodes, from either node
    rig.wait_for("c running on both nodes", Duration::from_secs(60), |r| {
        ps(r, 0, &compose, "ovl")
            .iter()
            .filter(|c| c["Service"] == "c" && c["State"] == "running")
            .count()
            == 2
    });
    let exec_b = ["-f", compose1.as_str(), "-p", "ovl", "exec", "-T", "b"];
    let mut last = String::new();
    let found = (0..100).any(|_| {
        last = exec_in(&rig, 1, &exec_b, &["nslookup", "tasks.c"]).unwrap_or_else(|e| e);
        let ok = resolved(&last).len() == 2;
        if !ok {
            std::thread::sleep(Duration::from_millis(300));
        }
        ok
    });
    assert!(found, "tasks.c from b: {last}\n{}", overlay_state(&rig));

    // the overlay is real: node 1 has the VXLAN port and a static entry for a's MAC
    let links = Command::new("timeout")
        .args(["10", "ip", "-n", &rig.nodes[1].ns, "-d", "link", "show"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert!(
        links.contains("bvx-") && links.contains("vxlan id"),
        "{links}"
    );

    // a's published port answers on the node that runs it
    let page = Command::new("timeout")
        .args([
            "10",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{ip0}:18080/"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("wget");
    assert_eq!(
        String::from_utf8_lossy(&page.stdout).trim(),
        "hello-from-a",
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );

    // node 1 dies: node 0 forgets where b was (forwarding entry and name)
    assert!(
        b_mac_on_node0(&rig).is_some(),
        "node 0 has no forwarding entry for b\n{}",
        overlay_state(&rig)
    );
    rig.kill9(1);
    // one sync pass drops the forwarding entry, then the names: wait for both
    let dns = |r: &Rig| {
        std::fs::read_to_string(r.nodes[0].data_root().join("network/dns.json")).expect("dns.json")
    };
    rig.wait_for(
        "node 0 drops b's entry and name",
        Duration::from_secs(30),
        |r| b_mac_on_node0(r).is_none() && !dns(r).contains("\"peer-"),
    );

    // back again: b runs on node 1 again and is reachable again
    rig.start(1);
    rig.wait_for("b reachable again", Duration::from_secs(90), |r| {
        fetch_in(r, 1, &compose1, "ovl", "b", "http://a/").is_ok_and(|p| p.trim() == "hello-from-a")
    });

    // down: the containers go, and with them the VXLAN ports
    rig.ok(0, &["-f", &compose, "-p", "ovl", "down"]);
    rig.wait_for("the VXLAN ports removed", Duration::from_secs(60), |r| {
        r.nodes.iter().all(|n| {
            let out = Command::new("timeout")
                .args(["10", "ip", "-n", &n.ns, "link", "show"])
                .output()
                .expect("ip link");
            !String::from_utf8_lossy(&out.stdout).contains("bvx-")
        })
    });
}

/// The MAC of a remote endpoint in node 0's VXLAN forwarding table (b's), if any.
fn b_mac_on_node0(rig: &Rig) -> Option<String> {
    let out = Command::new("timeout")
        .args(["10", "bridge", "-n", &rig.nodes[0].ns, "fdb", "show"])
        .output()
        .expect("bridge fdb");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("dev bvx-") && l.contains(" dst "))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
}

#[test]
fn an_image_built_on_one_node_runs_on_another() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let rig = Rig::with_busybox_on(2, |i| i == 0);
    let ids = form(&rig);
    let app = format!(
        r#"services:
  c:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox:latest
        RUN echo built-on-node-0 > /built
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: ["node.id == {}"]
"#,
        ids[1]
    );
    let compose = rig.compose(0, &app);
    let compose = compose.to_str().unwrap().to_owned();
    let compose1 = rig.compose(1, &app);
    let compose1 = compose1.to_str().unwrap().to_owned();
    // built on node 0 (where berth runs), placed on node 1, which has neither the image
    // nor its base
    let up = berth_local(
        &rig,
        0,
        &["-f", &compose, "-p", "bld", "up", "-d", "--build"],
    );
    assert!(
        up.status.success(),
        "up --build: {}\n{}",
        String::from_utf8_lossy(&up.stderr),
        rig.logs()
    );
    rig.wait_for("c running on node 1", Duration::from_secs(120), |r| {
        running(r, 0, &compose, "bld", "c")
    });
    let out = berth_local(
        &rig,
        1,
        &[
            "-f", &compose1, "-p", "bld", "exec", "-T", "c", "cat", "/built",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "built-on-node-0",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rig.ok(0, &["-f", &compose, "-p", "bld", "down"]);
}
