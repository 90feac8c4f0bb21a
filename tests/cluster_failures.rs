//! Failures of a whole cluster in the rig (`tests/cluster_rig`): a partition of a manager
//! minority, and every node restarting. Real berthd processes in their own network
//! namespaces; the partition takes a node's veth off the rig's bridge, so nothing outside
//! the rig is touched. Root only.

mod cluster_rig;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_rig::Rig;

fn app(replicas: u32) -> String {
    format!(
        "services:\n  web:\n    image: busybox:latest\n    command: [\"sleep\", \"3600\"]\n    deploy:\n      replicas: {replicas}\n"
    )
}

/// Live tasks of `service` that run, as node `i` sees them: (task id, node id).
fn running(rig: &Rig, i: usize, service: &str) -> Vec<(String, String)> {
    rig.service_tasks(i, service)
        .iter()
        .filter(|t| t["Live"] == true && t["CurrentState"] == "Running")
        .map(|t| {
            (
                t["ID"].as_str().unwrap_or_default().to_owned(),
                t["NodeID"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn desired(rig: &Rig, i: usize, service: &str) -> Option<u64> {
    let out = rig.berth(i, &["service", "ls", "--format", "json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    all.iter().find(|s| s["Name"] == service)?["Desired"].as_u64()
}

#[test]
fn a_partitioned_minority_refuses_writes_the_majority_serves_them_and_healing_rejoins() {
    let rig = Rig::new(3);
    rig.form_cluster(3);
    let compose = rig.compose(0, &app(3));
    let compose = compose.to_str().unwrap().to_owned();
    rig.ok(0, &["-f", &compose, "-p", "part", "up", "-d"]);
    rig.wait_for("3 running", Duration::from_secs(90), |r| {
        running(r, 0, "part_web").len() == 3
    });

    // Cut the leader off: it is the minority of one.
    let minority = rig.leader_seen_by(0).expect("a leader");
    let majority: Vec<usize> = (0..3).filter(|i| *i != minority).collect();
    let cut_id = rig.id_of(minority);
    rig.cut(minority);
    rig.wait_for(
        "a leader among the majority",
        Duration::from_secs(15),
        |r| {
            r.leader_seen_by(majority[0])
                .is_some_and(|l| majority.contains(&l))
        },
    );

    // The majority accepts writes, marks the cut node down and runs its tasks elsewhere.
    rig.ok(majority[1], &["service", "scale", "part_web=4"]);
    rig.wait_for("4 running on the majority", Duration::from_secs(90), |r| {
        let tasks = running(r, majority[0], "part_web");
        tasks.len() == 4 && tasks.iter().all(|(_, node)| *node != cut_id)
    });

    // The minority refuses writes with a clear error, bounded in time.
    let refused = rig.berth(minority, &["service", "scale", "part_web=5"]);
    assert!(
        !refused.status.success(),
        "a write on the minority succeeded\n{}",
        rig.logs()
    );
    let error = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(error.trim().lines().count(), 1, "{error}");
    assert!(error.contains("leader"), "{error}");

    // Healing: the cut node rejoins, learns what happened meanwhile, and its writes are
    // accepted again (forwarded to the current leader).
    rig.heal(minority);
    rig.wait_for(
        "the healed node to catch up",
        Duration::from_secs(60),
        |r| {
            desired(r, minority, "part_web") == Some(4)
                && r.leader_seen_by(minority).is_some()
                && r.nodes_seen_by(majority[0])
                    .iter()
                    .all(|n| n["Status"] == "ready")
        },
    );
    rig.ok(minority, &["service", "scale", "part_web=2"]);
    rig.wait_for("2 running, seen everywhere", Duration::from_secs(60), |r| {
        (0..3).all(|i| desired(r, i, "part_web") == Some(2)) && running(r, 0, "part_web").len() == 2
    });
}

#[test]
fn restarting_every_node_keeps_the_app_and_its_tasks() {
    let mut rig = Rig::new(3);
    rig.form_cluster(3);
    let compose = rig.compose(0, &app(3));
    let compose = compose.to_str().unwrap().to_owned();
    rig.ok(0, &["-f", &compose, "-p", "keep", "up", "-d"]);
    rig.wait_for("3 running", Duration::from_secs(90), |r| {
        running(r, 0, "keep_web").len() == 3
    });
    let before: BTreeSet<(String, String)> = running(&rig, 0, "keep_web").into_iter().collect();

    for i in 0..3 {
        rig.stop(i);
    }
    rig.start_all(&[0, 1, 2]);
    rig.wait_for("a leader again", Duration::from_secs(30), |r| {
        r.leader_seen_by(0).is_some()
    });
    // The same tasks, on the same nodes: their containers ran on through the restart and
    // were adopted, nothing was rescheduled.
    rig.wait_for(
        "the same 3 tasks running, seen from every node",
        Duration::from_secs(60),
        |r| {
            (0..3).all(|i| {
                let now: BTreeSet<(String, String)> =
                    running(r, i, "keep_web").into_iter().collect();
                now == before
            })
        },
    );
    // and the cluster still takes writes
    rig.ok(1, &["service", "scale", "keep_web=4"]);
    rig.wait_for("4 running", Duration::from_secs(60), |r| {
        running(r, 2, "keep_web").len() == 4
    });
}
