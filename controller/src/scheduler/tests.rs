use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::store::placement::{Constraint, Strategy};
use crate::store::{
    Availability, DesiredState, NodeResources, NodeStatus, Platform, PortMode, Protocol,
    PublishedPort, Role, Task,
};

const GIB: u64 = 1 << 30;
const CPU: u64 = 1_000_000_000;

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        hostname: format!("host-{id}"),
        role: Role::Worker,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        platform: Platform::new("linux", "amd64"),
        resources: NodeResources {
            nano_cpus: 4 * CPU,
            memory: 8 * GIB,
        },
        status: NodeStatus::Ready,
        address: String::new(),
        raft_id: 0,
    }
}

fn task(id: &str, service: &str) -> Task {
    Task::new(id, "app", service, "h1", DesiredState::Running, 0)
}

fn placed(id: &str, service: &str, node: &str) -> Task {
    let mut task = task(id, service);
    task.node = Some(node.into());
    task.status.state = TaskState::Running;
    task
}

type Specs = HashMap<(String, String), ServiceSpec>;

fn specs(entries: &[(&str, ServiceSpec)]) -> Specs {
    entries
        .iter()
        .map(|(name, spec)| (("app".to_owned(), (*name).to_owned()), spec.clone()))
        .collect()
}

fn assigned(decisions: &[Decision]) -> HashMap<String, usize> {
    let mut per_node = HashMap::new();
    for decision in decisions {
        if let Decision::Assign { node, .. } = decision {
            *per_node.entry(node.clone()).or_insert(0) += 1;
        }
    }
    per_node
}

fn reason(decisions: &[Decision]) -> &str {
    match &decisions[0] {
        Decision::Unplaceable { reason, .. } => reason,
        other => panic!("expected an unplaceable decision, got {other:?}"),
    }
}

#[test]
fn each_filter_rejects_and_explains() {
    let web_port = PublishedPort {
        ip: String::new(),
        port: 80,
        protocol: Protocol::Tcp,
        mode: PortMode::Host,
    };
    // (what is wrong with the only node, spec tweak, expected explanation)
    type Tweak = fn(&mut Node, &mut ServiceSpec);
    let cases: [(&str, Tweak, &str); 8] = [
        (
            "down",
            |n, _| n.status = NodeStatus::Down,
            "no suitable node (1 node is not ready)",
        ),
        (
            "drained",
            |n, _| n.availability = Availability::Drain,
            "no suitable node (1 node not available for new tasks)",
        ),
        (
            "platform",
            |_, s| s.placement.platforms = vec![Platform::new("linux", "arm64")],
            "no suitable node (1 node has an unsupported platform)",
        ),
        (
            "constraint",
            |_, s| {
                s.placement.constraints = vec![Constraint::parse("node.labels.ssd == yes").unwrap()]
            },
            "no suitable node (1 node does not satisfy the placement constraints [node.labels.ssd == yes])",
        ),
        (
            "cpu",
            |_, s| s.resources.reserve_nano_cpus = 5 * CPU,
            "no suitable node (1 node has insufficient cpu)",
        ),
        (
            "memory",
            |_, s| s.resources.reserve_memory = 9 * GIB,
            "no suitable node (1 node has insufficient memory)",
        ),
        (
            "port",
            |_, _| {},
            "no suitable node (1 node has the published host port in use)",
        ),
        (
            "max replicas",
            |_, s| s.placement.max_replicas_per_node = 1,
            "no suitable node (1 node already runs max_replicas_per_node (1) tasks of the service)",
        ),
    ];
    for (name, tweak, expected) in cases {
        let mut n = node("n1");
        let mut spec = ServiceSpec::new("img", "h1");
        if name == "port" {
            spec.ports = vec![web_port.clone()];
        }
        tweak(&mut n, &mut spec);
        let specs = specs(&[("web", spec)]);
        // One task of the service already runs there (it uses the port and counts toward
        // the replica cap, but reserves nothing more than the tweak asks).
        let existing = if matches!(name, "port" | "max replicas") {
            vec![placed("old", "web", "n1")]
        } else {
            vec![]
        };
        let pending = [task("t1", "web")];
        let decisions = schedule([&n], &existing, &pending, &specs);
        assert_eq!(reason(&decisions), expected, "{name}");
    }
}

#[test]
fn the_explanation_counts_nodes_per_first_failing_filter() {
    let mut paused = node("n1");
    paused.availability = Availability::Pause;
    let mut small_a = node("n2");
    small_a.resources.memory = GIB;
    let mut small_b = node("n3");
    small_b.resources.memory = GIB;
    let mut spec = ServiceSpec::new("img", "h1");
    spec.resources.reserve_memory = 2 * GIB;
    let specs = specs(&[("db", spec)]);
    let nodes = [paused, small_a, small_b];
    let decisions = schedule(&nodes, [], &[task("t", "db")], &specs);
    assert_eq!(
        reason(&decisions),
        "no suitable node (1 node not available for new tasks; 2 nodes have insufficient memory)"
    );
    let empty: [Node; 0] = [];
    let decisions = schedule(&empty, [], &[task("t", "db")], &specs);
    assert_eq!(
        reason(&decisions),
        "no suitable node (the cluster has no nodes)"
    );
}

#[test]
fn reservations_fill_nodes_up_to_capacity() {
    let mut spec = ServiceSpec::new("img", "h1");
    spec.resources.reserve_memory = 3 * GIB;
    let specs = specs(&[("db", spec)]);
    let nodes = [node("n1"), node("n2")];
    let pending: Vec<Task> = (0..5).map(|i| task(&format!("t{i}"), "db")).collect();
    let decisions = schedule(&nodes, [], &pending, &specs);
    // 8 GiB per node holds two 3 GiB tasks: four fit, the fifth is explained.
    assert_eq!(
        assigned(&decisions),
        HashMap::from([("n1".into(), 2), ("n2".into(), 2)])
    );
    assert!(reason(&decisions[4..]).contains("2 nodes have insufficient memory"));
}

#[test]
fn host_ports_conflict_only_on_the_same_address_and_protocol() {
    let port = |ip: &str, protocol| PublishedPort {
        ip: ip.into(),
        port: 53,
        protocol,
        mode: PortMode::Host,
    };
    let cases = [
        (port("", Protocol::Udp), port("", Protocol::Udp), true),
        (port("", Protocol::Udp), port("", Protocol::Tcp), false),
        (
            port("10.0.0.1", Protocol::Udp),
            port("10.0.0.2", Protocol::Udp),
            false,
        ),
        (
            port("10.0.0.1", Protocol::Udp),
            port("", Protocol::Udp),
            true,
        ),
    ];
    for (used, wanted, conflict) in cases {
        let mut a = ServiceSpec::new("img", "h1");
        a.ports = vec![used.clone()];
        let mut b = ServiceSpec::new("img", "h1");
        b.ports = vec![wanted.clone()];
        let specs = specs(&[("a", a), ("b", b)]);
        let decisions = schedule(
            [&node("n1")],
            &[placed("old", "a", "n1")],
            &[task("t", "b")],
            &specs,
        );
        let refused = matches!(decisions[0], Decision::Unplaceable { .. });
        assert_eq!(refused, conflict, "{used:?} vs {wanted:?}");
    }
    // Ingress ports never conflict per node.
    let mut spec = ServiceSpec::new("img", "h1");
    spec.ports = vec![PublishedPort {
        mode: PortMode::Ingress,
        ..port("", Protocol::Tcp)
    }];
    let specs = specs(&[("a", spec)]);
    let pending = [task("t1", "a"), task("t2", "a")];
    assert_eq!(
        assigned(&schedule([&node("n1")], [], &pending, &specs))["n1"],
        2
    );
}

#[test]
fn spread_places_evenly_and_prefers_emptier_nodes() {
    let specs = specs(&[
        ("web", ServiceSpec::new("img", "h1")),
        ("db", ServiceSpec::new("img", "h1")),
    ]);
    let nodes = [node("n1"), node("n2"), node("n3")];
    // n1 already runs two tasks of another service.
    let existing = [placed("d1", "db", "n1"), placed("d2", "db", "n1")];
    let pending: Vec<Task> = (0..7).map(|i| task(&format!("w{i}"), "web")).collect();
    let decisions = schedule(&nodes, &existing, &pending, &specs);
    let counts = assigned(&decisions);
    assert_eq!(counts["n2"] + counts["n3"] + counts["n1"], 7);
    assert!(counts.values().all(|&c| (2..=3).contains(&c)), "{counts:?}");
    assert_eq!(
        counts["n1"], 2,
        "the busier node gets the remainder last: {counts:?}"
    );
}

#[test]
fn preferences_spread_over_label_values_first() {
    let mut a = node("a1");
    a.labels.insert("zone".into(), "a".into());
    let mut nodes = vec![a];
    for i in 1..=3 {
        let mut b = node(&format!("b{i}"));
        b.labels.insert("zone".into(), "b".into());
        nodes.push(b);
    }
    let mut spec = ServiceSpec::new("img", "h1");
    spec.placement.spread_over = vec!["zone".into()];
    let specs = specs(&[("web", spec)]);
    let pending: Vec<Task> = (0..6).map(|i| task(&format!("w{i}"), "web")).collect();
    let counts = assigned(&schedule(&nodes, [], &pending, &specs));
    // Half of the tasks go to zone a's single node, the other half spread over zone b.
    assert_eq!(counts["a1"], 3, "{counts:?}");
    assert_eq!(counts["b1"] + counts["b2"] + counts["b3"], 3, "{counts:?}");
    assert!(counts["b1"] == 1 && counts["b2"] == 1 && counts["b3"] == 1);
}

#[test]
fn binpack_fills_the_fullest_node_that_fits() {
    let mut spec = ServiceSpec::new("img", "h1");
    spec.resources.reserve_memory = 2 * GIB;
    spec.placement.strategy = Strategy::Binpack;
    let mut other = ServiceSpec::new("img", "h1");
    other.resources.reserve_memory = 2 * GIB;
    let specs = specs(&[("web", spec), ("db", other)]);
    let nodes = [node("n1"), node("n2"), node("n3")];
    // n2 is already partly used: binpack starts there.
    let existing = [placed("d1", "db", "n2")];
    let pending: Vec<Task> = (0..5).map(|i| task(&format!("w{i}"), "web")).collect();
    let decisions = schedule(&nodes, &existing, &pending, &specs);
    let order: Vec<&str> = decisions
        .iter()
        .map(|d| match d {
            Decision::Assign { node, .. } => node.as_str(),
            Decision::Unplaceable { .. } => "-",
        })
        .collect();
    assert_eq!(order, ["n2", "n2", "n2", "n1", "n1"]);
}

#[test]
fn pinned_tasks_are_only_checked_against_their_node() {
    let mut spec = ServiceSpec::new("img", "h1");
    spec.resources.reserve_memory = 5 * GIB;
    let specs = specs(&[("agent", spec)]);
    let mut small = node("n2");
    small.resources.memory = GIB;
    let nodes = [node("n1"), small];
    let mut on_n1 = task("g1", "agent");
    on_n1.node = Some("n1".into());
    let mut on_n2 = task("g2", "agent");
    on_n2.node = Some("n2".into());
    let mut gone = task("g3", "agent");
    gone.node = Some("n9".into());
    let decisions = schedule(&nodes, [], &[on_n1, on_n2, gone], &specs);
    assert_eq!(
        decisions[0],
        Decision::Assign {
            task: "g1".into(),
            node: "n1".into()
        }
    );
    assert_eq!(
        reason(&decisions[1..]),
        "no suitable node (1 node has insufficient memory)"
    );
    assert_eq!(
        reason(&decisions[2..]),
        "node \"n9\" is not part of the cluster"
    );
}

#[test]
fn plan_records_decisions_once() {
    use crate::store::{AppSpec, Command};
    let mut state = State::default();
    let mut spec = ServiceSpec::new("img", "h1");
    spec.resources.reserve_memory = 5 * GIB;
    state
        .apply_command(Command::DeployApp(AppSpec {
            name: "app".into(),
            services: [("db".to_owned(), spec)].into_iter().collect(),
            networks: vec![],
            volumes: vec![],
            document: serde_json::Value::Null,
            working_dir: String::new(),
            config_files: Vec::new(),
        }))
        .unwrap();
    state
        .apply_command(Command::RegisterNode(node("n1")))
        .unwrap();
    state
        .apply_command(Command::CreateTasks(vec![
            task("t1", "db"),
            task("t2", "db"),
        ]))
        .unwrap();
    let commands = plan(&state);
    assert_eq!(
        commands,
        vec![
            Command::AssignTasks(vec![("t1".into(), "n1".into())]),
            Command::MarkUnplaceable(vec![(
                "t2".into(),
                "no suitable node (1 node has insufficient memory)".into()
            )]),
        ]
    );
    for command in commands {
        state.apply_command(command).unwrap();
    }
    assert_eq!(state.tasks["t1"].status.state, TaskState::Assigned);
    assert!(plan(&state).is_empty(), "nothing new to record");
}
