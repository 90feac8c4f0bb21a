//! Overlay networks on a two-node rig: each "node" is a network namespace with its own
//! bridge network and VXLAN port, joined by a veth underlay; a container namespace on each
//! node reaches the other only while the forwarding and neighbour entries say where it is.
//! Everything lives in namespaces the test made and goes with them.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use berth_network::bridge::{self, BridgeNetwork, Endpoint, bridge_name, mac_for};
use berth_network::ipnetwork::Ipv4Network;
use berth_network::netlink::{Netlink, spawn_in_netns};
use berth_network::overlay::{self, Overlay, RemoteEndpoint, overlay_mtu};
use common::{Netns, is_root, run, suffix};

/// Runs `f` with a netlink handle inside namespace `ns` on its own thread and runtime.
fn in_node<T: Send + 'static>(
    ns: PathBuf,
    f: impl FnOnce(Netlink) -> std::pin::Pin<Box<dyn Future<Output = T>>> + Send + 'static,
) -> T {
    spawn_in_netns(&ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move { f(Netlink::connect().expect("netlink")).await })
    })
    .expect("enter node namespace")
    .join()
    .expect("node thread")
}

struct Node {
    ns: Netns,
    container: Netns,
    underlay: Ipv4Addr,
    ip: Ipv4Addr,
}

#[test]
fn containers_on_two_nodes_reach_each_other_over_vxlan() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let id = format!("ovl{}", suffix());
    let subnet = Ipv4Network::from_str("10.213.7.0/24").unwrap();
    let nodes = [
        Node {
            ns: Netns::new("on"),
            container: Netns::new("oc"),
            underlay: Ipv4Addr::new(198, 18, 213, 1),
            ip: Ipv4Addr::new(10, 213, 7, 2),
        },
        Node {
            ns: Netns::new("on"),
            container: Netns::new("oc"),
            underlay: Ipv4Addr::new(198, 18, 213, 2),
            ip: Ipv4Addr::new(10, 213, 7, 3),
        },
    ];
    // the underlay: one veth between the two node namespaces
    let (u0, u1) = (format!("bu{}", suffix()), format!("bu{}", suffix()));
    run(
        &[
            "ip",
            "link",
            "add",
            &u0,
            "netns",
            &nodes[0].ns.name,
            "type",
            "veth",
            "peer",
            "name",
            &u1,
            "netns",
            &nodes[1].ns.name,
        ],
        true,
    );
    for (node, link) in nodes.iter().zip([&u0, &u1]) {
        let cidr = format!("{}/24", node.underlay);
        for args in [
            vec!["ip", "addr", "add", &cidr, "dev", link],
            vec!["ip", "link", "set", link, "up"],
            vec!["ip", "link", "set", "lo", "up"],
        ] {
            assert!(node.ns.exec(&args).status.success(), "{args:?}");
        }
    }

    let net = BridgeNetwork {
        id: id.clone(),
        bridge: bridge_name(&id),
        subnet_v4: subnet,
        gateway_v4: Ipv4Addr::new(10, 213, 7, 1),
        subnet_v6: None,
        gateway_v6: None,
        mtu: Some(overlay_mtu(1500)),
        // no NAT, no host access: nothing here may leave the rig
        internal: true,
        labels: Default::default(),
        created: String::new(),
    };
    for node in &nodes {
        let (net, container, ip, local) =
            (net.clone(), node.container.path(), node.ip, node.underlay);
        let id = id.clone();
        in_node(node.ns.path(), move |nl| {
            Box::pin(async move {
                bridge::create_network(&nl, &net).await.expect("bridge");
                let ov = Overlay {
                    network_id: id.clone(),
                    vni: 4242,
                    local,
                };
                overlay::ensure(&nl, &ov, &net.bridge, net.mtu)
                    .await
                    .expect("vxlan port");
                // a second ensure finds what the first made
                overlay::ensure(&nl, &ov, &net.bridge, net.mtu)
                    .await
                    .expect("vxlan port again");
                let ep = Endpoint {
                    id: "c".into(),
                    netns: container,
                    ifname: "eth0".into(),
                    ipv4: ip,
                    ipv6: None,
                    default_route: false,
                    mac: None,
                };
                bridge::attach(&nl, &net, &ep).await.expect("attach");
            })
        });
    }

    let sync = |node: &Node, remote: Vec<RemoteEndpoint>| {
        let ov = Overlay {
            network_id: id.clone(),
            vni: 4242,
            local: node.underlay,
        };
        in_node(node.ns.path(), move |nl| {
            Box::pin(async move {
                overlay::sync_endpoints(&nl, &ov, &remote)
                    .await
                    .expect("sync")
            })
        })
    };
    let remote_of = |n: &Node| RemoteEndpoint {
        ip: IpAddr::V4(n.ip),
        mac: mac_for(n.ip),
        node: IpAddr::V4(n.underlay),
    };

    // before anyone is told where the other container runs, nothing crosses
    assert!(!nodes[0].container.ping(IpAddr::V4(nodes[1].ip)));

    let p0 = sync(&nodes[0], vec![remote_of(&nodes[1])]);
    let p1 = sync(&nodes[1], vec![remote_of(&nodes[0])]);
    assert_eq!((p0.add_fdb.len(), p0.add_neighbours.len()), (1, 1));
    assert_eq!((p1.add_fdb.len(), p1.add_neighbours.len()), (1, 1));
    assert!(
        nodes[0].container.reaches(IpAddr::V4(nodes[1].ip)),
        "node 0's container cannot reach node 1's over the overlay"
    );
    assert!(nodes[1].container.reaches(IpAddr::V4(nodes[0].ip)));

    // in step already: a second sync changes nothing
    let again = sync(&nodes[0], vec![remote_of(&nodes[1])]);
    assert!(again.is_empty(), "{again:?}");

    // the remote container is gone: its entries go, and so does the path
    let p = sync(&nodes[0], Vec::new());
    assert_eq!((p.delete_fdb.len(), p.delete_neighbours.len()), (1, 1));
    let left = in_node(nodes[0].ns.path(), {
        let name = overlay::vxlan_name(&id);
        move |nl| {
            Box::pin(async move {
                let index = nl.link_index(&name).await.unwrap().unwrap();
                (
                    nl.fdb_entries(index).await.unwrap().len(),
                    nl.neighbours(index).await.unwrap().len(),
                )
            })
        }
    });
    assert_eq!(left, (0, 0));
    assert!(!nodes[0].container.ping(IpAddr::V4(nodes[1].ip)));

    // removal takes the port away; the namespaces' drop takes the rest
    in_node(nodes[0].ns.path(), {
        let id = id.clone();
        move |nl| {
            Box::pin(async move {
                overlay::remove(&nl, &id).await.expect("remove");
                assert!(
                    nl.link_index(&overlay::vxlan_name(&id))
                        .await
                        .unwrap()
                        .is_none()
                );
            })
        }
    });
}

#[test]
fn a_vni_out_of_range_is_refused() {
    if !is_root() {
        return;
    }
    let ns = Netns::new("ov");
    let err = in_node(ns.path(), |nl| {
        Box::pin(async move {
            overlay::ensure(
                &nl,
                &Overlay {
                    network_id: "n".into(),
                    vni: 1 << 24,
                    local: Ipv4Addr::LOCALHOST,
                },
                "nobridge",
                None,
            )
            .await
            .unwrap_err()
            .to_string()
        })
    });
    assert!(err.contains("VNI 16777216"), "{err}");
}
