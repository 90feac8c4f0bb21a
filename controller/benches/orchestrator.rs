//! One reconcile pass over a converged cluster of 1,000 nodes running 100,000 tasks of 100
//! services (the pass every change pays), and the pass after one service is scaled up.
//!
//! `cargo bench -p berth-controller --bench orchestrator`

use std::collections::BTreeMap;
use std::hint::black_box;

use berth_controller::orchestrator::reconcile;
use berth_controller::store::{
    AppSpec, Availability, Command, DesiredState, Node, NodeResources, NodeStatus, Platform, Role,
    ServiceSpec, State, Task, TaskState, TaskStatus,
};
use criterion::{Criterion, criterion_group, criterion_main};

const NODES: usize = 1_000;
const SERVICES: usize = 100;
const REPLICAS: u32 = 1_000;

fn converged() -> State {
    let mut state = State::default();
    for i in 0..NODES {
        let node = Node {
            id: format!("node-{i:04}"),
            hostname: format!("host-{i:04}"),
            role: Role::Worker,
            availability: Availability::Active,
            labels: BTreeMap::new(),
            platform: Platform::new("linux", "amd64"),
            resources: NodeResources {
                nano_cpus: 64_000_000_000,
                memory: 256 << 30,
            },
            status: NodeStatus::Ready,
            address: String::new(),
            raft_id: 0,
        };
        state.apply_command(Command::RegisterNode(node)).unwrap();
    }
    let services = (0..SERVICES)
        .map(|s| {
            let mut spec = ServiceSpec::new("img", format!("h{s}"));
            spec.replicas = REPLICAS;
            (format!("svc{s}"), spec)
        })
        .collect();
    let app = AppSpec {
        name: "bench".into(),
        services,
        networks: vec![],
        volumes: vec![],
        document: serde_json::Value::Null,
        working_dir: String::new(),
        config_files: Vec::new(),
    };
    state.apply_command(Command::DeployApp(app)).unwrap();
    let mut n = 0usize;
    for s in 0..SERVICES {
        let mut tasks = Vec::new();
        let mut assign = Vec::new();
        let mut status = Vec::new();
        for slot in 1..=REPLICAS {
            n += 1;
            let id = format!("task-{n:06}");
            let mut task = Task::new(
                id.clone(),
                "bench",
                &format!("svc{s}"),
                &format!("h{s}"),
                DesiredState::Running,
                1,
            );
            task.slot = Some(slot);
            tasks.push(task);
            assign.push((id.clone(), format!("node-{:04}", n % NODES)));
            status.push((id, TaskStatus::new(TaskState::Running, 2)));
        }
        state.apply_command(Command::CreateTasks(tasks)).unwrap();
        state.apply_command(Command::AssignTasks(assign)).unwrap();
        state
            .apply_command(Command::TaskStatusUpdate(status))
            .unwrap();
    }
    state
}

fn bench(c: &mut Criterion) {
    let state = converged();
    let mut next = 0u64;
    let mut ids = || {
        next += 1;
        format!("new-{next}")
    };
    assert!(reconcile(&state, 10, &mut ids).is_empty(), "converged");
    let mut scaled = state.clone();
    scaled
        .apply_command(Command::ScaleService {
            app: "bench".into(),
            service: "svc7".into(),
            replicas: REPLICAS + 500,
        })
        .unwrap();
    let mut group = c.benchmark_group("orchestrator");
    group.sample_size(10);
    group.bench_function("reconcile_converged_100k_tasks", |b| {
        b.iter(|| black_box(reconcile(&state, 10, &mut ids)))
    });
    group.bench_function("reconcile_scale_up_500_of_100k_tasks", |b| {
        b.iter(|| {
            let commands = reconcile(&scaled, 10, &mut ids);
            assert!(matches!(&commands[0], Command::CreateTasks(t) if t.len() == 500));
            black_box(commands)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
