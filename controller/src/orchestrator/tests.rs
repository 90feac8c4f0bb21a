//! The orchestrator driven through a small simulation: the real store applies every
//! command, the real scheduler places tasks, and a scripted agent reports statuses.

use std::collections::BTreeMap;

use indexmap::IndexMap;

use super::*;
use crate::scheduler;
use crate::store::placement::Constraint;
use crate::store::{
    AppSpec, Availability, Dependency, DependencyCondition, FailureAction, Health, Mode, Node,
    NodeResources, NodeStatus, Platform, RestartCondition, RestartPolicy, Role, ServiceSpec,
    TaskState, UpdateOrder, UpdateState,
};

/// What the scripted agent does with a task: `None` leaves it as it is.
type Agent = Box<dyn Fn(&Task, &ServiceSpec) -> Option<(TaskState, Health, Option<i32>)>>;

/// Starts what should run (healthy when there is a healthcheck), stops what should stop.
fn obedient() -> Agent {
    Box::new(|task, spec| {
        if task.desired == DesiredState::Running && task.status.state < TaskState::Running {
            let health = if spec.healthcheck {
                Health::Healthy
            } else {
                Health::None
            };
            return Some((TaskState::Running, health, None));
        }
        None
    })
}

struct Sim {
    state: State,
    now: Timestamp,
    next_id: u64,
    agent: Agent,
    /// Every task ever created, even those trimmed from the history since.
    created: Vec<Task>,
}

impl Sim {
    fn new(nodes: usize) -> Self {
        let mut sim = Sim {
            state: State::default(),
            now: 1_000_000,
            next_id: 0,
            agent: obedient(),
            created: Vec::new(),
        };
        for i in 1..=nodes {
            sim.apply(Command::RegisterNode(node(&format!("n{i}"))));
        }
        sim
    }

    fn apply(&mut self, command: Command) {
        if let Command::CreateTasks(tasks) = &command {
            self.created.extend(tasks.iter().cloned());
        }
        let outcome = self.state.apply_command(command.clone());
        let applied = outcome.unwrap_or_else(|e| panic!("{command:?} refused: {e}"));
        assert!(
            applied.rejected.is_empty(),
            "{command:?}: {:?}",
            applied.rejected
        );
    }

    fn reconcile(&mut self) -> Vec<Command> {
        let mut next_id = self.next_id;
        let commands = reconcile(&self.state, self.now, &mut || {
            next_id += 1;
            format!("t{next_id:04}")
        });
        self.next_id = next_id;
        commands
    }

    /// One turn of orchestrator, scheduler and agent; whether anything changed.
    fn round(&mut self) -> bool {
        let mut commands = self.reconcile();
        let changed = !commands.is_empty();
        for command in commands.drain(..) {
            self.apply(command);
        }
        let placed = scheduler::plan(&self.state);
        let changed = changed || !placed.is_empty();
        for command in placed {
            self.apply(command);
        }
        let mut updates = Vec::new();
        for task in self.state.tasks.values() {
            if task.node.is_none() || task.status.state.is_terminal() {
                continue;
            }
            let node_up = self.state.nodes[task.node.as_ref().unwrap()].status == NodeStatus::Ready;
            if !node_up {
                continue;
            }
            let next = if task.desired >= DesiredState::Shutdown {
                Some((TaskState::Shutdown, Health::None, None))
            } else {
                let spec = self.state.service(&task.app, &task.service).unwrap();
                (self.agent)(task, spec)
            };
            if let Some((state, health, exit_code)) = next {
                let mut status = TaskStatus::new(state, self.now);
                status.health = health;
                status.exit_code = exit_code;
                updates.push((task.id.clone(), status));
            }
        }
        let changed = changed || !updates.is_empty();
        if !updates.is_empty() {
            self.apply(Command::TaskStatusUpdate(updates));
        }
        changed
    }

    fn settle(&mut self) {
        for _ in 0..100 {
            if !self.round() {
                return;
            }
        }
        panic!("no convergence: {:#?}", self.state.tasks);
    }

    /// Lets `ms` pass in steps of `step`, settling after each.
    fn run_for(&mut self, ms: u64, step: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += step;
            self.settle();
        }
    }

    fn tasks(&self, service: &str) -> Vec<&Task> {
        self.state
            .tasks
            .values()
            .filter(|t| t.service == service)
            .collect()
    }

    fn running(&self, service: &str) -> Vec<&Task> {
        self.tasks(service)
            .into_iter()
            .filter(|t| t.is_live() && t.status.state == TaskState::Running)
            .collect()
    }

    fn slots_running(&self, service: &str) -> Vec<u32> {
        let mut slots: Vec<u32> = self
            .running(service)
            .iter()
            .filter_map(|t| t.slot)
            .collect();
        slots.sort();
        slots
    }
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        hostname: id.into(),
        role: Role::Worker,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        platform: Platform::new("linux", "amd64"),
        resources: NodeResources {
            nano_cpus: 8_000_000_000,
            memory: 16 << 30,
        },
        status: NodeStatus::Ready,
        address: String::new(),
        raft_id: 0,
    }
}

fn app(services: Vec<(&str, ServiceSpec)>) -> AppSpec {
    AppSpec {
        name: "shop".into(),
        services: services
            .into_iter()
            .map(|(name, spec)| (name.to_owned(), spec))
            .collect::<IndexMap<_, _>>(),
        networks: vec![],
        volumes: vec![],
        document: serde_json::Value::Null,
        working_dir: String::new(),
        config_files: Vec::new(),
    }
}

fn service(hash: &str, replicas: u32) -> ServiceSpec {
    ServiceSpec {
        replicas,
        ..ServiceSpec::new("img", hash)
    }
}

fn with_restart(mut spec: ServiceSpec, policy: &str) -> ServiceSpec {
    spec.restart = RestartPolicy::parse_compose(policy).unwrap();
    spec
}

#[test]
fn replicas_scale_up_and_down_highest_slots_first() {
    let mut sim = Sim::new(2);
    sim.apply(Command::DeployApp(app(vec![("web", service("h1", 3))])));
    sim.settle();
    assert_eq!(sim.slots_running("web"), [1, 2, 3]);
    assert!(
        sim.reconcile().is_empty(),
        "a converged state yields no command"
    );

    sim.apply(Command::ScaleService {
        app: "shop".into(),
        service: "web".into(),
        replicas: 5,
    });
    sim.settle();
    assert_eq!(sim.slots_running("web"), [1, 2, 3, 4, 5]);

    sim.apply(Command::ScaleService {
        app: "shop".into(),
        service: "web".into(),
        replicas: 2,
    });
    let commands = sim.reconcile();
    let Some(Command::SetDesired(changes)) = commands.first() else {
        panic!("expected shutdowns, got {commands:?}");
    };
    let slots: Vec<u32> = changes
        .iter()
        .map(|(id, desired)| {
            assert_eq!(*desired, DesiredState::Shutdown);
            sim.state.tasks[id].slot.unwrap()
        })
        .collect();
    assert_eq!(slots, [5, 4, 3]);
    sim.settle();
    assert_eq!(sim.slots_running("web"), [1, 2]);
}

#[test]
fn a_changed_hash_replaces_only_that_service() {
    let mut sim = Sim::new(2);
    sim.apply(Command::DeployApp(app(vec![
        ("web", service("w1", 2)),
        ("db", service("d1", 1)),
    ])));
    sim.settle();
    let db_before: Vec<String> = sim.running("db").iter().map(|t| t.id.clone()).collect();
    let web_before: Vec<String> = sim.running("web").iter().map(|t| t.id.clone()).collect();

    sim.apply(Command::DeployApp(app(vec![
        ("web", service("w2", 2)),
        ("db", service("d1", 1)),
    ])));
    sim.settle();
    let db_after: Vec<String> = sim.running("db").iter().map(|t| t.id.clone()).collect();
    assert_eq!(db_after, db_before, "the unchanged service keeps its tasks");
    let web_after = sim.running("web");
    assert_eq!(web_after.len(), 2);
    assert!(web_after.iter().all(|t| t.spec_hash == "w2"));
    assert!(web_after.iter().all(|t| !web_before.contains(&t.id)));
    let record = sim.state.service_record("shop", "web").unwrap();
    assert_eq!(record.update, UpdateState::Completed);
    assert_eq!(record.previous.as_ref().unwrap().config_hash, "w1");
}

fn crashing(code: i32) -> Agent {
    Box::new(move |task, _| {
        let state = if code == 0 {
            TaskState::Complete
        } else {
            TaskState::Failed
        };
        (task.desired == DesiredState::Running && task.status.state < TaskState::Running)
            .then_some((state, Health::None, Some(code)))
    })
}

#[test]
fn on_failure_3_gives_up_after_three_restarts() {
    let mut sim = Sim::new(1);
    sim.agent = crashing(1);
    sim.apply(Command::DeployApp(app(vec![(
        "job",
        with_restart(service("h1", 1), "on-failure:3"),
    )])));
    sim.run_for(60_000, 50);
    let tasks = sim.tasks("job");
    assert_eq!(tasks.len(), 4, "the first run and three restarts");
    let last = tasks.iter().max_by_key(|t| t.restart_count).unwrap();
    assert_eq!(last.restart_count, 3);
    assert_eq!(last.desired, DesiredState::Running, "it stays as it ended");
    assert_eq!(last.status.state, TaskState::Failed);
    assert!(sim.reconcile().is_empty());
}

#[test]
fn restarts_back_off_exponentially_up_to_the_cap() {
    let mut sim = Sim::new(1);
    sim.agent = crashing(2);
    sim.apply(Command::DeployApp(app(vec![(
        "job",
        with_restart(service("h1", 1), "always"),
    )])));
    sim.run_for(40_000, 10);
    let mut created: Vec<u64> = sim.created.iter().map(|t| t.created_at).collect();
    created.sort();
    let gaps: Vec<u64> = created.windows(2).map(|w| w[1] - w[0]).collect();
    // Each gap is the back-off (rounded up to the 10 ms step of the simulation).
    let expected = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
    assert!(gaps.len() >= expected.len(), "{gaps:?}");
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(*gap >= want && *gap < want + 10, "gaps {gaps:?}");
    }
}

#[test]
fn the_next_wakeup_is_the_end_of_the_backoff() {
    let mut sim = Sim::new(1);
    sim.agent = crashing(1);
    sim.apply(Command::DeployApp(app(vec![(
        "job",
        with_restart(service("h1", 1), "always"),
    )])));
    sim.settle();
    let failed_at = sim.tasks("job")[0].status.timestamp;
    assert_eq!(next_wakeup(&sim.state, sim.now), Some(failed_at + 100));
    sim.now = failed_at + 100;
    sim.settle();
    assert_eq!(sim.tasks("job").len(), 2);
    assert_eq!(next_wakeup(&sim.state, sim.now), Some(sim.now + 200));
}

#[test]
fn an_explicit_delay_replaces_the_backoff() {
    let mut sim = Sim::new(1);
    sim.agent = crashing(1);
    let mut spec = service("h1", 1);
    spec.restart = RestartPolicy::from_deploy("on-failure", Some(1_000), Some(2), None).unwrap();
    sim.apply(Command::DeployApp(app(vec![("job", spec)])));
    sim.run_for(10_000, 100);
    let mut created: Vec<u64> = sim.tasks("job").iter().map(|t| t.created_at).collect();
    created.sort();
    let gaps: Vec<u64> = created.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [1_000, 1_000], "two attempts a second apart");
}

#[test]
fn restart_no_never_restarts_and_on_failure_ignores_success() {
    for (policy, code, tasks) in [("no", 1, 1), ("on-failure", 0, 1), ("on-failure", 1, 3)] {
        let mut sim = Sim::new(1);
        sim.agent = crashing(code);
        let mut spec = with_restart(service("h1", 1), policy);
        spec.restart.max_attempts = spec.restart.max_attempts.or(Some(2));
        sim.apply(Command::DeployApp(app(vec![("job", spec)])));
        sim.run_for(5_000, 50);
        assert_eq!(sim.tasks("job").len(), tasks, "{policy} after exit {code}");
    }
}

#[test]
fn unless_stopped_stays_stopped_across_a_daemon_restart_and_always_comes_back() {
    let mut sim = Sim::new(1);
    sim.apply(Command::DeployApp(app(vec![
        ("a", with_restart(service("h1", 1), "always")),
        ("u", with_restart(service("h1", 1), "unless-stopped")),
    ])));
    sim.settle();
    for name in ["a", "u"] {
        sim.apply(Command::StopService {
            app: "shop".into(),
            service: name.into(),
        });
    }
    sim.run_for(20_000, 1_000);
    assert!(sim.running("a").is_empty() && sim.running("u").is_empty());
    assert!(sim.tasks("a").iter().all(|t| t.stopped_by_user));
    let stopped_a = sim.tasks("a")[0].id.clone();
    let stopped_u = sim.tasks("u")[0].id.clone();

    sim.apply(Command::DaemonRestarted);
    sim.settle();
    assert_eq!(
        sim.running("a").len(),
        1,
        "always: back after the daemon restart"
    );
    assert_eq!(
        sim.running("a")[0].id,
        stopped_a,
        "the same task (container)"
    );
    assert!(sim.running("u").is_empty(), "unless-stopped: stays stopped");

    sim.apply(Command::StartService {
        app: "shop".into(),
        service: "u".into(),
    });
    sim.settle();
    assert_eq!(sim.running("u").len(), 1);
    assert_eq!(
        sim.running("u")[0].id,
        stopped_u,
        "start revives the stopped task"
    );
    assert_eq!(sim.tasks("u").len(), 1, "no new task for a started service");
}

#[test]
fn up_no_start_creates_held_tasks_that_start_releases() {
    let mut sim = Sim::new(1);
    sim.apply(Command::DeployAppNoStart(app(vec![
        ("db", service("h1", 1)),
        ("web", service("h1", 2)),
    ])));
    sim.settle();
    for name in ["db", "web"] {
        let tasks = sim.tasks(name);
        assert!(!tasks.is_empty());
        assert!(
            tasks
                .iter()
                .all(|t| t.desired == DesiredState::Ready && t.node.is_some()),
            "{tasks:?}"
        );
        assert!(sim.running(name).is_empty());
    }
    let ids: Vec<String> = sim.tasks("web").iter().map(|t| t.id.clone()).collect();
    sim.apply(Command::StartService {
        app: "shop".into(),
        service: "web".into(),
    });
    sim.settle();
    let mut running: Vec<String> = sim.running("web").iter().map(|t| t.id.clone()).collect();
    running.sort();
    assert_eq!(running, ids, "the created tasks start, no new ones");
    assert!(sim.running("db").is_empty(), "db was not started");
    // a plain deploy releases the rest
    sim.apply(Command::DeployApp(app(vec![
        ("db", service("h1", 1)),
        ("web", service("h1", 2)),
    ])));
    sim.settle();
    assert_eq!(sim.running("db").len(), 1);
}

#[test]
fn an_unhealthy_task_is_restarted_when_the_policy_says_so() {
    for (policy, restarted) in [("always", true), ("on-failure", true), ("no", false)] {
        let mut sim = Sim::new(1);
        let mut spec = with_restart(service("h1", 1), policy);
        spec.healthcheck = true;
        sim.apply(Command::DeployApp(app(vec![("web", spec)])));
        sim.settle();
        let first = sim.running("web")[0].id.clone();
        let mut status = TaskStatus::new(TaskState::Running, sim.now);
        status.health = Health::Unhealthy;
        sim.apply(Command::TaskStatusUpdate(vec![(first.clone(), status)]));
        sim.run_for(1_000, 100);
        let running = sim.running("web");
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].id != first, restarted, "{policy}");
    }
}

fn depends(on: &[(&str, DependencyCondition)], mut spec: ServiceSpec) -> ServiceSpec {
    for (name, condition) in on {
        spec.depends_on
            .insert((*name).to_owned(), Dependency::on(*condition));
    }
    spec
}

#[test]
fn a_dependent_waits_until_its_dependency_is_healthy() {
    let mut sim = Sim::new(1);
    // The database reports "starting" until the test says otherwise.
    sim.agent = Box::new(|task, spec| {
        if task.desired == DesiredState::Running && task.status.state < TaskState::Running {
            let health = if spec.healthcheck {
                Health::Starting
            } else {
                Health::None
            };
            return Some((TaskState::Running, health, None));
        }
        None
    });
    let mut db = service("h1", 1);
    db.healthcheck = true;
    let web = depends(&[("db", DependencyCondition::Healthy)], service("h1", 2));
    sim.apply(Command::DeployApp(app(vec![("db", db), ("web", web)])));
    sim.settle();
    let web_tasks = sim.tasks("web");
    assert_eq!(web_tasks.len(), 2);
    for task in &web_tasks {
        assert_eq!(task.desired, DesiredState::Ready);
        assert_eq!(
            task.status.state,
            TaskState::Assigned,
            "placed but not started"
        );
        assert_eq!(
            task.waiting_for.as_deref(),
            Some("waiting for db to be healthy (0/1 tasks healthy)")
        );
    }
    let db_task = sim.running("db")[0].id.clone();
    let mut healthy = TaskStatus::new(TaskState::Running, sim.now);
    healthy.health = Health::Healthy;
    sim.apply(Command::TaskStatusUpdate(vec![(db_task, healthy)]));
    sim.settle();
    assert_eq!(sim.running("web").len(), 2);
    assert!(sim.running("web").iter().all(|t| t.waiting_for.is_none()));
}

#[test]
fn healthy_gating_on_a_service_without_healthcheck_says_it_never_becomes_healthy() {
    let mut sim = Sim::new(1);
    let web = depends(&[("db", DependencyCondition::Healthy)], service("h1", 1));
    sim.apply(Command::DeployApp(app(vec![
        ("db", service("h1", 1)),
        ("web", web),
    ])));
    sim.run_for(1_000, 100);
    let web = sim.tasks("web");
    assert_eq!(web[0].desired, DesiredState::Ready);
    let message = web[0].waiting_for.as_deref().unwrap();
    assert!(
        message.contains("db has no healthcheck so it never becomes healthy"),
        "{message}"
    );
}

#[test]
fn completed_successfully_runs_the_migration_first() {
    for (exit, released) in [(0, true), (3, false)] {
        let mut sim = Sim::new(1);
        // The migration runs to completion; everything else keeps running.
        sim.agent = Box::new(move |task, _| {
            if task.desired != DesiredState::Running {
                return None;
            }
            match (task.service.as_str(), task.status.state) {
                ("migrate", TaskState::Running) => {
                    let state = if exit == 0 {
                        TaskState::Complete
                    } else {
                        TaskState::Failed
                    };
                    Some((state, Health::None, Some(exit)))
                }
                (_, state) if state < TaskState::Running => {
                    Some((TaskState::Running, Health::None, None))
                }
                _ => None,
            }
        });
        let api = depends(
            &[("migrate", DependencyCondition::CompletedSuccessfully)],
            service("h1", 1),
        );
        sim.apply(Command::DeployApp(app(vec![
            ("migrate", service("h1", 1)),
            ("api", api),
        ])));
        sim.settle();
        let api = sim.tasks("api");
        if released {
            assert_eq!(sim.running("api").len(), 1);
            assert_eq!(sim.tasks("migrate")[0].status.state, TaskState::Complete);
        } else {
            assert_eq!(api[0].desired, DesiredState::Ready);
            assert_eq!(
                api[0].waiting_for.as_deref(),
                Some("waiting for migrate to complete successfully, but it exited with code 3")
            );
        }
    }
}

#[test]
fn a_missing_optional_dependency_is_ignored_and_a_required_one_holds() {
    for (required, runs) in [(false, true), (true, false)] {
        let mut sim = Sim::new(1);
        let mut web = service("h1", 1);
        web.depends_on.insert(
            "cache".into(),
            Dependency {
                condition: DependencyCondition::Started,
                restart: false,
                required,
            },
        );
        sim.apply(Command::DeployApp(app(vec![("web", web)])));
        sim.settle();
        assert_eq!(sim.running("web").len() == 1, runs, "required: {required}");
        if !runs {
            assert_eq!(
                sim.tasks("web")[0].waiting_for.as_deref(),
                Some("waiting for cache: it is not a service of app \"shop\"")
            );
        }
    }
}

#[test]
fn restart_true_restarts_dependents_when_the_dependency_restarts() {
    for (restart, replaced) in [(true, true), (false, false)] {
        let mut sim = Sim::new(1);
        let mut web = service("h1", 1);
        web.depends_on.insert(
            "db".into(),
            Dependency {
                condition: DependencyCondition::Started,
                restart,
                required: true,
            },
        );
        sim.apply(Command::DeployApp(app(vec![
            ("db", with_restart(service("h1", 1), "always")),
            ("web", web),
        ])));
        sim.settle();
        sim.run_for(100, 10);
        let web_before = sim.running("web")[0].id.clone();
        let db_task = sim.running("db")[0].id.clone();
        let mut crash = TaskStatus::new(TaskState::Failed, sim.now);
        crash.exit_code = Some(1);
        sim.apply(Command::TaskStatusUpdate(vec![(db_task, crash)]));
        sim.run_for(1_000, 50);
        assert_eq!(sim.running("db").len(), 1);
        let web_after = sim.running("web")[0].id.clone();
        assert_eq!(web_after != web_before, replaced, "restart: {restart}");
    }
}

#[test]
fn tasks_of_a_node_that_goes_down_are_orphaned_and_replaced_elsewhere() {
    let mut sim = Sim::new(2);
    sim.apply(Command::DeployApp(app(vec![("web", service("h1", 4))])));
    sim.settle();
    let on_n1: Vec<String> = sim
        .running("web")
        .iter()
        .filter(|t| t.node.as_deref() == Some("n1"))
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(on_n1.len(), 2, "spread over both nodes");
    sim.apply(Command::NodeStatus {
        id: "n1".into(),
        status: NodeStatus::Down,
    });
    sim.settle();
    for id in &on_n1 {
        let task = &sim.state.tasks[id];
        assert_eq!(task.status.state, TaskState::Orphaned);
        assert_eq!(task.status.message, "node n1 is down");
        assert_eq!(task.desired, DesiredState::Shutdown);
    }
    let running = sim.running("web");
    assert_eq!(running.len(), 4);
    assert!(running.iter().all(|t| t.node.as_deref() == Some("n2")));
    assert_eq!(sim.slots_running("web"), [1, 2, 3, 4]);
}

#[test]
fn draining_a_node_moves_its_tasks() {
    let mut sim = Sim::new(3);
    sim.apply(Command::DeployApp(app(vec![("web", service("h1", 6))])));
    sim.settle();
    sim.apply(Command::UpdateNode {
        id: "n3".into(),
        availability: Some(Availability::Drain),
        labels_add: BTreeMap::new(),
        labels_rm: vec![],
        role: None,
    });
    sim.settle();
    let running = sim.running("web");
    assert_eq!(running.len(), 6);
    assert!(running.iter().all(|t| t.node.as_deref() != Some("n3")));
    let drained = sim
        .tasks("web")
        .into_iter()
        .filter(|t| t.node.as_deref() == Some("n3"))
        .collect::<Vec<_>>();
    assert_eq!(drained.len(), 2);
    assert!(
        drained
            .iter()
            .all(|t| t.status.state == TaskState::Shutdown)
    );
}

#[test]
fn a_global_service_runs_once_on_every_eligible_node() {
    let mut sim = Sim::new(3);
    sim.apply(Command::UpdateNode {
        id: "n1".into(),
        availability: None,
        labels_add: BTreeMap::new(),
        labels_rm: vec![],
        role: Some(Role::Manager),
    });
    let mut agent = service("h1", 1);
    agent.mode = Mode::Global;
    agent.placement.constraints = vec![Constraint::parse("node.role != manager").unwrap()];
    sim.apply(Command::DeployApp(app(vec![("agent", agent)])));
    sim.settle();
    let nodes = |sim: &Sim| {
        let mut nodes: Vec<String> = sim
            .running("agent")
            .iter()
            .map(|t| t.node.clone().unwrap())
            .collect();
        nodes.sort();
        nodes
    };
    assert_eq!(nodes(&sim), ["n2", "n3"]);
    sim.apply(Command::RegisterNode(node("n4")));
    sim.settle();
    assert_eq!(nodes(&sim), ["n2", "n3", "n4"]);
    sim.apply(Command::UpdateNode {
        id: "n2".into(),
        availability: Some(Availability::Drain),
        labels_add: BTreeMap::new(),
        labels_rm: vec![],
        role: None,
    });
    sim.apply(Command::UpdateNode {
        id: "n3".into(),
        availability: Some(Availability::Pause),
        labels_add: BTreeMap::new(),
        labels_rm: vec![],
        role: None,
    });
    sim.settle();
    assert_eq!(
        nodes(&sim),
        ["n3", "n4"],
        "drained loses its task, paused keeps it"
    );
    assert!(matches!(
        sim.state.apply_command(Command::ScaleService {
            app: "shop".into(),
            service: "agent".into(),
            replicas: 3
        }),
        Err(crate::store::ApplyError::ScaleGlobal { .. })
    ));
}

fn rolling(hash: &str, replicas: u32, order: UpdateOrder, parallelism: u32) -> ServiceSpec {
    let mut spec = service(hash, replicas);
    spec.update_config.order = order;
    spec.update_config.parallelism = parallelism;
    spec
}

/// Rounds of orchestrator → scheduler → agent, calling `check` after each.
fn roll(sim: &mut Sim, mut check: impl FnMut(&Sim)) {
    for _ in 0..200 {
        sim.now += 10;
        let changed = sim.round();
        check(sim);
        if !changed {
            return;
        }
    }
    panic!("the update did not converge");
}

#[test]
fn a_stop_first_update_replaces_one_task_at_a_time() {
    let mut sim = Sim::new(2);
    sim.apply(Command::DeployApp(app(vec![(
        "web",
        rolling("v1", 4, UpdateOrder::StopFirst, 1),
    )])));
    sim.settle();
    sim.apply(Command::DeployApp(app(vec![(
        "web",
        rolling("v2", 4, UpdateOrder::StopFirst, 1),
    )])));
    let mut fewest = 4;
    roll(&mut sim, |sim| {
        let running = sim.running("web").len();
        fewest = fewest.min(running);
        assert!(
            running >= 3,
            "stop-first with parallelism 1 stops one at a time"
        );
        assert!(running <= 4, "stop-first never runs more than the replicas");
    });
    assert_eq!(fewest, 3);
    let running = sim.running("web");
    assert_eq!(running.len(), 4);
    assert!(running.iter().all(|t| t.spec_hash == "v2"));
    assert_eq!(
        sim.state.service_record("shop", "web").unwrap().update,
        UpdateState::Completed
    );
}

#[test]
fn a_start_first_update_starts_the_successor_before_stopping() {
    let mut sim = Sim::new(2);
    sim.apply(Command::DeployApp(app(vec![(
        "web",
        rolling("v1", 3, UpdateOrder::StartFirst, 2),
    )])));
    sim.settle();
    sim.apply(Command::DeployApp(app(vec![(
        "web",
        rolling("v2", 3, UpdateOrder::StartFirst, 2),
    )])));
    let mut most = 0;
    roll(&mut sim, |sim| {
        let running = sim.running("web").len();
        most = most.max(running);
        assert!(running >= 3, "start-first never dips below the replicas");
        assert!(running <= 5, "parallelism 2 adds at most two");
    });
    assert_eq!(most, 5);
    let running = sim.running("web");
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|t| t.spec_hash == "v2"));
}

#[test]
fn update_delay_spaces_the_batches() {
    let mut sim = Sim::new(1);
    let mut v1 = rolling("v1", 3, UpdateOrder::StopFirst, 1);
    v1.update_config.delay = 1_000;
    let mut v2 = v1.clone();
    v2.config_hash = "v2".into();
    sim.apply(Command::DeployApp(app(vec![("web", v1)])));
    sim.settle();
    sim.apply(Command::DeployApp(app(vec![("web", v2)])));
    sim.run_for(5_000, 100);
    let mut starts: Vec<u64> = sim
        .running("web")
        .iter()
        .map(|t| t.started_at.unwrap())
        .collect();
    starts.sort();
    assert_eq!(starts.len(), 3);
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] >= 1_000),
        "{starts:?}"
    );
}

/// v2 of the service crashes as soon as it starts.
fn v2_crashes() -> Agent {
    Box::new(|task, _| {
        if task.desired != DesiredState::Running || task.status.state >= TaskState::Running {
            return None;
        }
        if task.spec_hash == "v2" {
            Some((TaskState::Failed, Health::None, Some(1)))
        } else {
            Some((TaskState::Running, Health::None, None))
        }
    })
}

#[test]
fn a_failing_update_rolls_back_by_itself() {
    let mut sim = Sim::new(2);
    let mut v1 = with_restart(rolling("v1", 3, UpdateOrder::StopFirst, 1), "always");
    v1.update_config.failure_action = FailureAction::Rollback;
    let mut v2 = v1.clone();
    v2.config_hash = "v2".into();
    v2.image = "img:broken".into();
    sim.apply(Command::DeployApp(app(vec![("web", v1)])));
    sim.settle();
    sim.agent = v2_crashes();
    sim.apply(Command::DeployApp(app(vec![("web", v2)])));
    sim.run_for(10_000, 50);
    let record = sim.state.service_record("shop", "web").unwrap();
    let UpdateState::RolledBack { reason } = &record.update else {
        panic!("expected a rollback, got {:?}", record.update);
    };
    assert!(
        reason.starts_with("update rolled back: 1 of 3 updated tasks failed"),
        "{reason}"
    );
    assert!(reason.contains("exited with code 1"), "{reason}");
    let spec = sim.state.service("shop", "web").unwrap();
    assert_eq!(spec.config_hash, "v1");
    assert_eq!(record.previous.as_ref().unwrap().config_hash, "v2");
    let running = sim.running("web");
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|t| t.spec_hash == "v1"));
    let v2_made = sim
        .tasks("web")
        .iter()
        .filter(|t| t.spec_hash == "v2")
        .count();
    assert_eq!(
        v2_made, 1,
        "parallelism 1 exposed a single task to the bad version"
    );
}

#[test]
fn a_failing_update_pauses_when_told_to() {
    let mut sim = Sim::new(1);
    let v1 = rolling("v1", 3, UpdateOrder::StopFirst, 1);
    let mut v2 = v1.clone();
    v2.config_hash = "v2".into();
    sim.apply(Command::DeployApp(app(vec![("web", v1)])));
    sim.settle();
    sim.agent = v2_crashes();
    sim.apply(Command::DeployApp(app(vec![("web", v2)])));
    sim.run_for(5_000, 50);
    let record = sim.state.service_record("shop", "web").unwrap();
    assert!(
        matches!(record.update, UpdateState::Paused { .. }),
        "{:?}",
        record.update
    );
    let running = sim.running("web");
    assert_eq!(running.len(), 2, "the two untouched v1 tasks keep running");
    assert!(running.iter().all(|t| t.spec_hash == "v1"));
}

#[test]
fn removing_an_app_stops_and_forgets_its_tasks() {
    let mut sim = Sim::new(1);
    sim.apply(Command::DeployApp(app(vec![("web", service("h1", 2))])));
    sim.settle();
    sim.apply(Command::RemoveApp {
        name: "shop".into(),
    });
    sim.settle();
    assert!(sim.state.tasks.is_empty(), "{:?}", sim.state.tasks);
}

#[test]
fn finished_tasks_are_trimmed_to_a_short_history_per_slot() {
    let mut sim = Sim::new(1);
    sim.agent = crashing(1);
    sim.apply(Command::DeployApp(app(vec![(
        "job",
        with_restart(service("h1", 1), "always"),
    )])));
    sim.run_for(30_000, 100);
    let tasks = sim.tasks("job");
    assert!(tasks.len() <= HISTORY_PER_SLOT + 1, "{}", tasks.len());
    assert!(
        tasks.iter().any(|t| t.restart_count >= 8),
        "restarts went on"
    );
    let _ = RestartCondition::Always;
}

#[test]
fn a_rollback_follows_the_rollback_config() {
    let mut sim = Sim::new(2);
    let mut v1 = rolling("v1", 4, UpdateOrder::StopFirst, 1);
    v1.update_config.failure_action = FailureAction::Rollback;
    v1.update_config.max_failure_ratio = 0.5;
    v1.rollback_config.parallelism = 0;
    let mut v2 = v1.clone();
    v2.config_hash = "v2".into();
    sim.apply(Command::DeployApp(app(vec![("web", v1)])));
    sim.settle();
    sim.agent = v2_crashes();
    sim.apply(Command::DeployApp(app(vec![("web", v2)])));
    for _ in 0..100 {
        if matches!(
            sim.state.service_record("shop", "web").unwrap().update,
            UpdateState::RollingBack { .. }
        ) {
            break;
        }
        sim.now += 10;
        sim.round();
    }
    let record = sim.state.service_record("shop", "web").unwrap();
    let UpdateState::RollingBack { reason, .. } = &record.update else {
        panic!("no rollback: {:?}", record.update);
    };
    assert!(reason.contains("3 of 4 updated tasks failed"), "{reason}");
    // Parallelism 0 in rollback_config: every failed slot is rolled back in one pass.
    let commands = sim.reconcile();
    let created = commands
        .iter()
        .find_map(|c| match c {
            Command::CreateTasks(tasks) => Some(tasks),
            _ => None,
        })
        .expect("replacements");
    assert_eq!(created.len(), 3);
    assert!(created.iter().all(|t| t.spec_hash == "v1"));
}

#[test]
fn an_unplaceable_task_is_placed_when_a_fitting_node_joins() {
    let mut sim = Sim::new(1);
    let mut db = service("h1", 1);
    db.placement.constraints = vec![Constraint::parse("node.labels.disk == ssd").unwrap()];
    sim.apply(Command::DeployApp(app(vec![("db", db)])));
    sim.settle();
    let task = &sim.tasks("db")[0];
    assert_eq!(task.status.state, TaskState::New);
    assert_eq!(
        task.unplaceable_reason.as_deref(),
        Some(
            "no suitable node (1 node does not satisfy the placement constraints \
             [node.labels.disk == ssd])"
        )
    );
    let mut ssd = node("n2");
    ssd.labels.insert("disk".into(), "ssd".into());
    sim.apply(Command::RegisterNode(ssd));
    sim.settle();
    let running = sim.running("db");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].node.as_deref(), Some("n2"));
    assert_eq!(running[0].unplaceable_reason, None);
}

#[test]
fn a_global_service_rolls_node_by_node() {
    let mut sim = Sim::new(3);
    let mut v1 = rolling("v1", 1, UpdateOrder::StopFirst, 1);
    v1.mode = Mode::Global;
    let mut v2 = v1.clone();
    v2.config_hash = "v2".into();
    sim.apply(Command::DeployApp(app(vec![("agent", v1)])));
    sim.settle();
    assert_eq!(sim.running("agent").len(), 3);
    sim.apply(Command::DeployApp(app(vec![("agent", v2)])));
    roll(&mut sim, |sim| {
        assert!(sim.running("agent").len() >= 2, "one node at a time");
    });
    let running = sim.running("agent");
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|t| t.spec_hash == "v2"));
    let mut nodes: Vec<&str> = running.iter().filter_map(|t| t.node.as_deref()).collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
}
