//! Places 100,000 tasks of 100 services on 1,000 simulated nodes with constraints,
//! reservations and spread preferences: the pure scheduler, no I/O.
//!
//! `cargo bench -p berth-controller --bench scheduler`

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;

use berth_controller::scheduler::{Decision, schedule};
use berth_controller::store::placement::Constraint;
use berth_controller::store::{
    Availability, DesiredState, Node, NodeResources, NodeStatus, Platform, Role, ServiceSpec, Task,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const NODES: usize = 1_000;
const SERVICES: usize = 100;
const TASKS: usize = 100_000;
const GIB: u64 = 1 << 30;

fn cluster() -> Vec<Node> {
    (0..NODES)
        .map(|i| Node {
            id: format!("node-{i:04}"),
            hostname: format!("host-{i:04}"),
            role: if i % 100 == 0 {
                Role::Manager
            } else {
                Role::Worker
            },
            availability: if i % 97 == 0 {
                Availability::Drain
            } else {
                Availability::Active
            },
            labels: BTreeMap::from([
                ("zone".to_owned(), format!("z{}", i % 5)),
                (
                    "disk".to_owned(),
                    if i % 2 == 0 { "ssd" } else { "hdd" }.to_owned(),
                ),
            ]),
            platform: Platform::new("linux", "amd64"),
            resources: NodeResources {
                nano_cpus: 64_000_000_000,
                memory: 256 * GIB,
            },
            status: NodeStatus::Ready,
            address: String::new(),
            raft_id: 0,
        })
        .collect()
}

fn services() -> HashMap<(String, String), ServiceSpec> {
    (0..SERVICES)
        .map(|s| {
            let mut spec = ServiceSpec::new("img", format!("h{s}"));
            spec.replicas = (TASKS / SERVICES) as u32;
            spec.resources.reserve_nano_cpus = 10_000_000;
            spec.resources.reserve_memory = 64 << 20;
            spec.placement.constraints = vec![Constraint::parse("node.role != manager").unwrap()];
            if s % 2 == 0 {
                spec.placement
                    .constraints
                    .push(Constraint::parse("node.labels.disk == ssd").unwrap());
            }
            if s % 3 == 0 {
                spec.placement.spread_over = vec!["zone".to_owned()];
            }
            (("bench".to_owned(), format!("svc{s}")), spec)
        })
        .collect()
}

fn pending() -> Vec<Task> {
    (0..TASKS)
        .map(|i| {
            let service = i % SERVICES;
            let mut task = Task::new(
                format!("task-{i:06}"),
                "bench",
                &format!("svc{service}"),
                &format!("h{service}"),
                DesiredState::Running,
                0,
            );
            task.slot = Some((i / SERVICES) as u32 + 1);
            task
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let nodes = cluster();
    let specs = services();
    let tasks = pending();
    let placed = schedule(&nodes, [], &tasks, &specs)
        .iter()
        .filter(|d| matches!(d, Decision::Assign { .. }))
        .count();
    assert_eq!(placed, TASKS, "every task fits this cluster");
    let mut group = c.benchmark_group("scheduler");
    group.sample_size(10);
    group.throughput(Throughput::Elements(TASKS as u64));
    group.bench_function("place_100k_tasks_1k_nodes", |b| {
        b.iter(|| black_box(schedule(&nodes, [], &tasks, &specs)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
