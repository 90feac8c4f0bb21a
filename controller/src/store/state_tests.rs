use std::time::{Duration, Instant};

use super::*;
use crate::raft_node::{NoPeers, RaftConfig, RaftHandle};
use crate::store::{
    Availability, DesiredState, Health, NodeResources, NodeStatus, Platform, Role, TaskStatus,
};

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        hostname: id.into(),
        role: Role::Worker,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        platform: Platform::new("linux", "amd64"),
        resources: NodeResources {
            nano_cpus: 1_000_000_000,
            memory: 1 << 30,
        },
        status: NodeStatus::Ready,
        address: "10.0.0.1:4243".into(),
        raft_id: 0,
    }
}

fn app(hash: &str) -> AppSpec {
    AppSpec {
        name: "shop".into(),
        services: [("web".to_owned(), ServiceSpec::new("img", hash))]
            .into_iter()
            .collect(),
        networks: vec!["front".into()],
        volumes: vec![],
        document: serde_json::json!({"name": "shop", "services": {"web": {"image": "img"}}}),
        working_dir: String::new(),
        config_files: Vec::new(),
    }
}

fn task(id: &str) -> Task {
    Task::new(id, "shop", "web", "h1", DesiredState::Running, 5)
}

#[test]
fn commands_are_validated_against_the_state() {
    let mut state = State::default();
    let cases: Vec<(Command, ApplyError)> = vec![
        (
            Command::CreateTasks(vec![task("t1")]),
            ApplyError::UnknownApp { app: "shop".into() },
        ),
        (
            Command::ScaleService {
                app: "shop".into(),
                service: "web".into(),
                replicas: 2,
            },
            ApplyError::UnknownApp { app: "shop".into() },
        ),
        (
            Command::NodeStatus {
                id: "n9".into(),
                status: NodeStatus::Down,
            },
            ApplyError::UnknownNode { id: "n9".into() },
        ),
        (
            Command::RollbackService {
                app: "shop".into(),
                service: "web".into(),
                reason: String::new(),
                at: 0,
            },
            ApplyError::UnknownApp { app: "shop".into() },
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(
            state.apply_command(command.clone()),
            Err(expected),
            "{command:?}"
        );
    }
    assert_eq!(state, State::default(), "refused commands change nothing");

    state.apply_command(Command::DeployApp(app("h1"))).unwrap();
    state
        .apply_command(Command::RegisterNode(node("n1")))
        .unwrap();
    state
        .apply_command(Command::CreateTasks(vec![task("t1")]))
        .unwrap();
    let cases: Vec<(Command, ApplyError)> = vec![
        (
            Command::CreateTasks(vec![task("t2"), task("t2")]),
            ApplyError::DuplicateTask { id: "t2".into() },
        ),
        (
            Command::CreateTasks(vec![Task::new(
                "t3",
                "shop",
                "api",
                "h",
                DesiredState::Running,
                0,
            )]),
            ApplyError::UnknownService {
                app: "shop".into(),
                service: "api".into(),
            },
        ),
        (
            Command::AssignTasks(vec![("t1".into(), "n2".into())]),
            ApplyError::UnknownNode { id: "n2".into() },
        ),
        (
            Command::RollbackService {
                app: "shop".into(),
                service: "web".into(),
                reason: String::new(),
                at: 0,
            },
            ApplyError::NoPreviousSpec {
                app: "shop".into(),
                service: "web".into(),
            },
        ),
        (
            Command::RemoveTasks(vec!["t1".into(), "nope".into()]),
            ApplyError::UnknownTask { id: "nope".into() },
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(
            state.apply_command(command.clone()),
            Err(expected),
            "{command:?}"
        );
    }
    assert!(state.tasks.contains_key("t1") && !state.tasks.contains_key("t2"));
    let err = state
        .apply_command(Command::ScaleService {
            app: "shop".into(),
            service: "web".into(),
            replicas: u32::MAX,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "service \"web\" of app \"shop\": 4294967295 replicas is more than the 100000 a \
         service may have"
    );

    state
        .apply_command(Command::SetDesired(vec![(
            "t1".into(),
            DesiredState::Shutdown,
        )]))
        .unwrap();
    assert_eq!(
        state.apply_command(Command::SetDesired(vec![(
            "t1".into(),
            DesiredState::Running
        )])),
        Err(ApplyError::DesiredRegression {
            id: "t1".into(),
            from: DesiredState::Shutdown,
            to: DesiredState::Running,
        })
    );
    // Never placed, so it is finished as soon as it is not wanted.
    assert_eq!(state.tasks["t1"].status.state, TaskState::Shutdown);
}

#[test]
fn stale_status_reports_are_skipped_and_the_rest_applied() {
    let mut state = State::default();
    state.apply_command(Command::DeployApp(app("h1"))).unwrap();
    state
        .apply_command(Command::RegisterNode(node("n1")))
        .unwrap();
    state
        .apply_command(Command::CreateTasks(vec![task("t1"), task("t2")]))
        .unwrap();
    state
        .apply_command(Command::AssignTasks(vec![
            ("t1".into(), "n1".into()),
            ("t2".into(), "n1".into()),
        ]))
        .unwrap();
    let mut running = TaskStatus::new(TaskState::Running, 40);
    running.health = Health::Starting;
    let applied = state
        .apply_command(Command::TaskStatusUpdate(vec![
            ("t1".into(), running.clone()),
            ("t2".into(), TaskStatus::new(TaskState::Complete, 41)),
        ]))
        .unwrap();
    assert_eq!(applied.changed, 2);
    assert_eq!(state.tasks["t1"].started_at, Some(40));
    let applied = state
        .apply_command(Command::TaskStatusUpdate(vec![
            ("t1".into(), TaskStatus::new(TaskState::Starting, 42)),
            ("t2".into(), TaskStatus::new(TaskState::Running, 43)),
            ("t9".into(), TaskStatus::new(TaskState::Running, 43)),
            (
                "t1".into(),
                TaskStatus {
                    health: Health::Healthy,
                    ..running
                },
            ),
        ]))
        .unwrap();
    assert_eq!(applied.changed, 1, "only the health change is news");
    assert_eq!(
        applied.rejected,
        vec![
            ApplyError::StatusRegression {
                id: "t1".into(),
                from: TaskState::Running,
                to: TaskState::Starting,
            },
            ApplyError::StatusRegression {
                id: "t2".into(),
                from: TaskState::Complete,
                to: TaskState::Running,
            },
            ApplyError::UnknownTask { id: "t9".into() },
        ]
    );
    assert_eq!(state.tasks["t1"].status.health, Health::Healthy);
    assert_eq!(
        state.tasks["t1"].started_at,
        Some(40),
        "first start is kept"
    );
}

#[test]
fn a_redeploy_keeps_the_previous_spec_of_changed_services_only() {
    let mut state = State::default();
    let mut first = app("h1");
    first
        .services
        .insert("db".into(), ServiceSpec::new("db", "d1"));
    state.apply_command(Command::DeployApp(first)).unwrap();
    let mut second = app("h2");
    second
        .services
        .insert("db".into(), ServiceSpec::new("db", "d1"));
    second.document["services"]["web"]["image"] = "img:2".into();
    state.apply_command(Command::DeployApp(second)).unwrap();
    let web = state.service_record("shop", "web").unwrap();
    assert_eq!(web.update, UpdateState::Pending);
    assert_eq!(web.previous.as_ref().unwrap().config_hash, "h1");
    let db = state.service_record("shop", "db").unwrap();
    assert_eq!(db.update, UpdateState::Completed);
    assert!(db.previous.is_none());

    state
        .apply_command(Command::RollbackService {
            app: "shop".into(),
            service: "web".into(),
            reason: "bad".into(),
            at: 7,
        })
        .unwrap();
    assert_eq!(state.service("shop", "web").unwrap().config_hash, "h1");
    // the agents build from the document: its entry for the service rolls back too
    let document = &state.apps["shop"].spec.document;
    assert_eq!(document["services"]["web"]["image"], "img");
    let web = state.service_record("shop", "web").unwrap();
    assert_eq!(web.previous.as_ref().unwrap().config_hash, "h2");
    assert_eq!(web.previous_document.as_ref().unwrap()["image"], "img:2");
    assert_eq!(
        web.update,
        UpdateState::RollingBack {
            started_at: 7,
            reason: "bad".into()
        }
    );
}

#[test]
fn node_updates_survive_a_reregistration() {
    let mut state = State::default();
    state
        .apply_command(Command::RegisterNode(node("n1")))
        .unwrap();
    state
        .apply_command(Command::UpdateNode {
            id: "n1".into(),
            availability: Some(Availability::Drain),
            labels_add: [("zone".to_owned(), "a".to_owned())].into(),
            labels_rm: vec![],
            role: Some(Role::Manager),
        })
        .unwrap();
    let mut again = node("n1");
    again.address = "10.0.0.2:4243".into();
    state.apply_command(Command::RegisterNode(again)).unwrap();
    let n1 = &state.nodes["n1"];
    assert_eq!(n1.address, "10.0.0.2:4243");
    assert_eq!(n1.availability, Availability::Drain);
    assert_eq!(n1.role, Role::Manager);
    assert_eq!(n1.labels["zone"], "a");
}

#[test]
fn stop_timeout_and_keep_volumes_are_state_and_survive_a_snapshot() {
    let mut state = State::default();
    state.apply_command(Command::DeployApp(app("h1"))).unwrap();
    state
        .apply_command(Command::CreateTasks(vec![task("t1"), task("t2")]))
        .unwrap();
    // a task that went between the proposer's read and the commit is skipped
    let applied = state
        .apply_command(Command::SetStopTimeout {
            tasks: vec!["t1".into(), "t2".into(), "gone".into()],
            timeout_ms: Some(3000),
        })
        .unwrap();
    assert_eq!(applied.changed, 2);
    let keep = Command::SetKeepVolumes {
        tasks: vec!["t1".into()],
        keep: true,
    };
    assert_eq!(state.apply_command(keep.clone()).unwrap().changed, 1);
    assert_eq!(state.apply_command(keep).unwrap().changed, 0, "idempotent");
    assert_eq!(state.tasks["t1"].stop_timeout_ms, Some(3000));
    assert!(state.tasks["t1"].keep_volumes);
    assert!(!state.tasks["t2"].keep_volumes);

    // through the Raft encodings: the command as logged, the state as snapshotted
    let mut replayed = State::default();
    for command in [
        Command::DeployApp(app("h1")),
        Command::CreateTasks(vec![task("t1"), task("t2")]),
        Command::SetStopTimeout {
            tasks: vec!["t1".into(), "t2".into()],
            timeout_ms: Some(3000),
        },
        Command::SetKeepVolumes {
            tasks: vec!["t1".into()],
            keep: true,
        },
    ] {
        decode_reply(&StateMachine::apply(&mut replayed, 1, &encode(&command))).unwrap();
    }
    assert_eq!(replayed, state);
    let mut restored = State::default();
    restored.restore(&state.snapshot()).unwrap();
    assert_eq!(restored, state);

    // `stop` without `-t` goes back to the grace period
    state
        .apply_command(Command::SetStopTimeout {
            tasks: vec!["t2".into()],
            timeout_ms: None,
        })
        .unwrap();
    assert_eq!(state.tasks["t2"].stop_timeout_ms, None);

    // old snapshots and logs (tasks without the fields) still load, and a task that
    // never had them encodes exactly as before
    let mut old = serde_json::to_value(task("t9")).unwrap();
    let fields = old.as_object_mut().unwrap();
    assert!(!fields.contains_key("stop_timeout_ms") && !fields.contains_key("keep_volumes"));
    fields.remove("restart_history");
    let decoded: Task = serde_json::from_value(old).unwrap();
    assert_eq!(decoded.stop_timeout_ms, None);
    assert!(!decoded.keep_volumes);
}

#[test]
fn a_takedown_is_ready_once_the_app_and_its_tasks_are_gone() {
    let mut state = State::default();
    state.apply_command(Command::DeployApp(app("h1"))).unwrap();
    state
        .apply_command(Command::CreateTasks(vec![task("t1")]))
        .unwrap();
    let begin = Command::BeginTakedown {
        app: "shop".into(),
        remove_volumes: true,
        timeout_seconds: Some(3),
    };
    assert_eq!(state.apply_command(begin.clone()).unwrap().changed, 1);
    assert_eq!(state.apply_command(begin.clone()).unwrap().changed, 0);
    assert!(state.takedowns_ready().is_empty(), "the app is still there");
    state
        .apply_command(Command::RemoveApp {
            name: "shop".into(),
        })
        .unwrap();
    assert!(
        state.takedowns_ready().is_empty(),
        "its task is still there"
    );
    state
        .apply_command(Command::RemoveTasks(vec!["t1".into()]))
        .unwrap();
    let expected = Takedown {
        remove_volumes: true,
        timeout_seconds: Some(3),
    };
    assert_eq!(
        state.takedowns_ready(),
        vec![("shop".to_owned(), expected.clone())]
    );

    // replicated: the command as logged, the state as snapshotted
    let mut replayed = State::default();
    for command in [
        Command::DeployApp(app("h1")),
        Command::CreateTasks(vec![task("t1")]),
        begin,
        Command::RemoveApp {
            name: "shop".into(),
        },
        Command::RemoveTasks(vec!["t1".into()]),
    ] {
        decode_reply(&StateMachine::apply(&mut replayed, 1, &encode(&command))).unwrap();
    }
    assert_eq!(replayed, state);
    let mut restored = State::default();
    restored.restore(&state.snapshot()).unwrap();
    assert_eq!(restored.takedowns["shop"], expected);

    // ending it twice is fine (a second `down`, or the node that finished it)
    let end = Command::EndTakedown { app: "shop".into() };
    assert_eq!(state.apply_command(end.clone()).unwrap().changed, 1);
    assert_eq!(state.apply_command(end).unwrap().changed, 0);
    assert!(state.takedowns.is_empty());

    // a later `up` of the same name cancels a takedown left pending
    state
        .apply_command(Command::BeginTakedown {
            app: "shop".into(),
            remove_volumes: false,
            timeout_seconds: None,
        })
        .unwrap();
    state.apply_command(Command::DeployApp(app("h2"))).unwrap();
    assert!(
        state.takedowns.is_empty(),
        "the new app's networks must stay"
    );
}

#[test]
fn states_and_commands_without_takedowns_keep_their_encoding() {
    // written before takedowns existed: loads, and encodes the same way back
    let state = State::default();
    let text = String::from_utf8(state.snapshot()).unwrap();
    assert!(!text.contains("takedowns"), "{text}");
    let mut restored = State::default();
    restored.restore(text.as_bytes()).unwrap();
    assert_eq!(restored, state);
    let begin: Command = serde_json::from_str(r#"{"BeginTakedown":{"app":"shop"}}"#).unwrap();
    assert_eq!(
        begin,
        Command::BeginTakedown {
            app: "shop".into(),
            remove_volumes: false,
            timeout_seconds: None,
        }
    );
}

#[test]
fn garbage_in_the_log_is_answered_not_applied() {
    let mut state = State::default();
    let reply = StateMachine::apply(&mut state, 1, b"{not json");
    assert!(matches!(
        decode_reply(&reply),
        Err(ApplyError::Decode { .. })
    ));
    assert!(state.restore(b"[]").is_err());
}

fn wait_for(raft: &RaftHandle<State>, expected: &State) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while raft.read(|state| state != expected) {
        assert!(Instant::now() < deadline, "state not restored");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_store_survives_a_restart_through_raft_with_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let config = RaftConfig {
        tick: Duration::from_millis(10),
        compact_every: 20,
        keep_after_compaction: 5,
        ..RaftConfig::single(1, dir.path().to_owned())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut commands = vec![
        Command::RegisterNode(node("n1")),
        Command::DeployApp(app("h1")),
    ];
    for i in 0..40 {
        commands.push(Command::CreateTasks(vec![task(&format!("t{i:02}"))]));
        commands.push(Command::AssignTasks(vec![(
            format!("t{i:02}"),
            "n1".into(),
        )]));
    }
    commands.push(Command::ScaleService {
        app: "shop".into(),
        service: "web".into(),
        replicas: 40,
    });
    // `-t` and `-v` of a `down` are state: a daemon restarted mid-way finds them
    commands.push(Command::SetStopTimeout {
        tasks: vec!["t03".into(), "t04".into()],
        timeout_ms: Some(7000),
    });
    commands.push(Command::SetKeepVolumes {
        tasks: vec!["t04".into()],
        keep: true,
    });
    let expected = {
        let raft = RaftHandle::start(config.clone(), State::default(), NoPeers).unwrap();
        for command in &commands {
            let reply = rt.block_on(raft.propose(encode(command))).unwrap();
            decode_reply(&reply).unwrap();
        }
        // A refused command comes back as a typed error and changes nothing.
        let reply = rt
            .block_on(raft.propose(encode(&Command::RemoveApp { name: "x".into() })))
            .unwrap();
        assert_eq!(
            decode_reply(&reply),
            Err(ApplyError::UnknownApp { app: "x".into() })
        );
        let state = raft.read(Clone::clone);
        raft.stop().unwrap();
        state
    };
    assert_eq!(expected.tasks.len(), 40);
    assert_eq!(expected.tasks["t03"].stop_timeout_ms, Some(7000));
    assert!(!expected.tasks["t03"].keep_volumes);
    assert!(expected.tasks["t04"].keep_volumes);
    assert_eq!(expected.service("shop", "web").unwrap().replicas, 40);
    assert!(
        dir.path().join("snapshot").exists(),
        "83 entries with compact_every=20"
    );
    let raft = RaftHandle::start(config, State::default(), NoPeers).unwrap();
    wait_for(&raft, &expected);
    raft.stop().unwrap();
}
