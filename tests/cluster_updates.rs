//! Rolling updates, rollbacks and `berth service` in the rig (`tests/cluster_rig`): real
//! berthd processes in their own network namespaces, joined over mutual TLS. Root only.

mod cluster_rig;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_rig::Rig;

const PROJECT: &str = "roll";
const WEB: &str = "roll_web";

/// The app at `version`: `web` (3 replicas, a healthcheck, one task at a time, roll back on
/// failure) and `other`, which never changes. A `failing` web exits with code 3 a second
/// after it starts.
fn app(version: u32, failing: bool) -> String {
    let command = if failing {
        r#"["sh", "-c", "sleep 1; exit 3"]"#
    } else {
        r#"["sleep", "3600"]"#
    };
    format!(
        r#"services:
  web:
    image: busybox:latest
    command: {command}
    environment:
      VERSION: "{version}"
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
      timeout: 2s
      retries: 3
    deploy:
      replicas: 3
      update_config:
        parallelism: 1
        delay: 1s
        order: stop-first
        failure_action: rollback
        monitor: 10s
        max_failure_ratio: 0
      rollback_config:
        parallelism: 0
  other:
    image: busybox:latest
    command: ["sleep", "3600"]
"#
    )
}

fn is_up(task: &serde_json::Value) -> bool {
    task["CurrentState"] == "Running (healthy)"
}

fn live(tasks: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    tasks.iter().filter(|t| t["Live"] == true).collect()
}

/// Live tasks of `service` that run healthy from the spec with `hash`, as node `i` sees it.
fn up_with(rig: &Rig, i: usize, service: &str, hash: &str) -> usize {
    live(&rig.service_tasks(i, service))
        .iter()
        .filter(|t| is_up(t) && t["SpecHash"] == hash)
        .count()
}

fn web_hash(rig: &Rig, i: usize) -> String {
    let out = rig.ok(i, &["service", "inspect", WEB]);
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).expect("inspect json");
    all[0]["Spec"]["config_hash"]
        .as_str()
        .expect("config_hash")
        .to_owned()
}

fn service_row(rig: &Rig, i: usize, name: &str) -> serde_json::Value {
    let out = rig.ok(i, &["service", "ls", "--format", "json"]);
    let all: Vec<serde_json::Value> = serde_json::from_str(&out).expect("ls json");
    all.into_iter()
        .find(|s| s["Name"] == name)
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn updates_roll_one_task_at_a_time_and_a_failing_version_rolls_back() {
    let rig = Rig::new(3);
    rig.form_cluster(3);
    let compose = rig.compose(0, &app(1, false));
    let compose = compose.to_str().unwrap().to_owned();
    let up = |rig: &Rig| rig.spawn_berth(0, &["-f", &compose, "-p", PROJECT, "up", "-d"]);

    // v1: three healthy replicas across the nodes.
    let out = up(&rig).finish();
    assert!(
        out.status.success(),
        "up v1: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        rig.logs()
    );
    let v1 = web_hash(&rig, 0);
    rig.wait_for("3 healthy v1 replicas", Duration::from_secs(90), |r| {
        up_with(r, 0, WEB, &v1) == 3
    });
    let other_before: Vec<String> = live(&rig.service_tasks(0, "roll_other"))
        .iter()
        .map(|t| t["ID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(other_before.len(), 1);
    let row = service_row(&rig, 1, WEB);
    assert_eq!(row["Replicas"], "3/3", "{row}");
    assert_eq!(row["UpdateState"], "completed", "{row}");

    // v2: `up` applies only the difference; web rolls one task at a time, each next one
    // only after the previous one is running and healthy.
    rig.compose(0, &app(2, false));
    let rolling = up(&rig);
    let started = Instant::now();
    let mut seen_new = BTreeSet::new();
    let v2 = loop {
        let hash = web_hash(&rig, 0);
        if hash != v1 {
            break hash;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "v2 never deployed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    loop {
        let tasks = rig.service_tasks(0, WEB);
        let live = live(&tasks);
        if !live.is_empty() {
            let up = live.iter().filter(|t| is_up(t)).count();
            let new = live
                .iter()
                .filter(|t| is_up(t) && t["SpecHash"] == v2.as_str())
                .count();
            seen_new.insert(new);
            assert!(
                live.len() - up <= 1 && up >= 2,
                "more than one task in flight at once: {tasks:#?}"
            );
            if new == 3 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the update did not finish: {tasks:#?}\n{}",
            rig.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        seen_new.contains(&1) && seen_new.contains(&2),
        "the roll was not observed step by step: {seen_new:?}"
    );
    let out = rolling.finish();
    assert!(
        out.status.success(),
        "up v2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other_after: Vec<String> = live(&rig.service_tasks(0, "roll_other"))
        .iter()
        .map(|t| t["ID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        other_before, other_after,
        "an unchanged service was touched"
    );
    rig.wait_for("the update completed", Duration::from_secs(20), |r| {
        service_row(r, 2, WEB)["UpdateState"] == "completed"
    });

    // `service rollback` returns to v1.
    rig.ok(1, &["service", "rollback", WEB]);
    rig.wait_for(
        "3 healthy v1 replicas again",
        Duration::from_secs(90),
        |r| up_with(r, 0, WEB, &v1) == 3 && live(&r.service_tasks(0, WEB)).len() == 3,
    );
    assert_eq!(web_hash(&rig, 2), v1);
    rig.wait_for("the rollback completed", Duration::from_secs(20), |r| {
        service_row(r, 0, WEB)["UpdateState"] == "rollback_completed"
    });

    // v3 fails a second after it starts: failure_action rollback brings v1 back by itself,
    // running (the agents build from the restored definition, not the failed one).
    rig.compose(0, &app(3, true));
    let failing = up(&rig);
    rig.wait_for(
        "the failed update to roll back",
        Duration::from_secs(120),
        |r| {
            let row = service_row(r, 0, WEB);
            row["UpdateState"] == "rollback_completed"
                && row["UpdateMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains("failed"))
                && up_with(r, 0, WEB, &v1) == 3
        },
    );
    assert_eq!(web_hash(&rig, 1), v1);
    // the `up -d` of v3 gave up waiting once the rollback completed, saying why
    let out = failing.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "up of a rolled-back update succeeded"
    );
    assert!(
        stderr.contains("did not reach its new configuration") && stderr.contains("rolled back"),
        "{stderr}"
    );
    let tasks = rig.service_tasks(0, WEB);
    assert!(
        tasks
            .iter()
            .any(|t| t["SpecHash"] != v1.as_str() && t["SpecHash"] != v2.as_str()),
        "no v3 task was ever made: {tasks:#?}"
    );
    let message = service_row(&rig, 0, WEB)["UpdateMessage"].clone();
    assert!(
        message.as_str().is_some_and(|m| m.contains("code 3")),
        "{message}"
    );
}

#[test]
fn service_ps_says_why_a_task_cannot_be_placed_until_it_can() {
    let rig = Rig::new(1);
    let compose = rig.compose(
        0,
        r#"services:
  mars:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      placement:
        constraints: ["node.labels.zone == mars"]
"#,
    );
    let compose = compose.to_str().unwrap().to_owned();
    // `up -d` waits for the task to start, which it cannot yet: leave it in the background
    let _up = rig.spawn_berth(0, &["-f", &compose, "-p", "place", "up", "-d"]);
    rig.wait_for("an unplaceable task", Duration::from_secs(30), |r| {
        r.service_tasks(0, "place_mars").iter().any(|t| {
            t["Error"]
                .as_str()
                .is_some_and(|e| e.contains("no suitable node"))
                && t["Node"] == ""
                && t["DesiredState"] == "Running"
        })
    });
    let table = rig.ok(0, &["service", "ps", "place_mars"]);
    assert!(
        table.contains("no suitable node (1 node does not satisfy"),
        "{table}"
    );
    let ls = service_row(&rig, 0, "place_mars");
    assert_eq!(ls["Replicas"], "0/1", "{ls}");

    // once a node qualifies, the task is placed and runs
    let id = rig.id_of(0);
    rig.ok(0, &["node", "update", "--label-add", "zone=mars", &id]);
    rig.wait_for(
        "the task placed and running",
        Duration::from_secs(60),
        |r| {
            r.service_tasks(0, "place_mars")
                .iter()
                .any(|t| t["Live"] == true && t["CurrentState"] == "Running" && t["Error"] == "")
        },
    );
}

/// Live tasks of `service` per node id, as node 0 sees them.
fn placed(rig: &Rig, service: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for t in live(&rig.service_tasks(0, service)) {
        if t["CurrentState"] == "Running" {
            *out.entry(t["NodeID"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    out
}

#[test]
fn global_label_spread_binpack_and_per_node_caps_place_across_nodes() {
    let rig = Rig::new(3);
    rig.form_cluster(3);
    let ids: Vec<String> = (0..3).map(|i| rig.id_of(i)).collect();
    rig.ok(0, &["node", "update", "--label-add", "zone=a", &ids[0]]);
    rig.ok(0, &["node", "update", "--label-add", "zone=b", &ids[1]]);
    rig.ok(0, &["node", "update", "--label-add", "zone=b", &ids[2]]);
    let compose = rig.compose(
        0,
        r#"services:
  agent:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      mode: global
  zoned:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      replicas: 4
      placement:
        preferences:
          - spread: node.labels.zone
  packed:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      replicas: 2
      placement:
        x-berth-strategy: binpack
  capped:
    image: busybox:latest
    command: ["sleep", "3600"]
    deploy:
      replicas: 4
      placement:
        max_replicas_per_node: 1
"#,
    );
    let compose = compose.to_str().unwrap().to_owned();
    // one `capped` task can never run, so `up -d` would wait: leave it in the background
    let _up = rig.spawn_berth(0, &["-f", &compose, "-p", "place", "up", "-d"]);
    rig.wait_for(
        "every placeable task running",
        Duration::from_secs(120),
        |r| {
            placed(r, "place_agent").values().sum::<usize>() == 3
                && placed(r, "place_zoned").values().sum::<usize>() == 4
                && placed(r, "place_packed").values().sum::<usize>() == 2
                && placed(r, "place_capped").values().sum::<usize>() == 3
        },
    );
    // global: one on each node
    let agent = placed(&rig, "place_agent");
    assert!(ids.iter().all(|id| agent.get(id) == Some(&1)), "{agent:?}");
    // spread over the zone label: zone a (one node) gets as many as zone b (two nodes)
    let zoned = placed(&rig, "place_zoned");
    let zone_a = zoned.get(&ids[0]).copied().unwrap_or(0);
    assert_eq!(zone_a, 2, "{zoned:?}");
    // binpack: both on one node
    let packed = placed(&rig, "place_packed");
    assert_eq!(packed.len(), 1, "{packed:?}");
    // the cap: one per node, the fourth says why it waits
    let capped = placed(&rig, "place_capped");
    assert!(capped.values().all(|n| *n == 1), "{capped:?}");
    let waiting: Vec<String> = live(&rig.service_tasks(0, "place_capped"))
        .iter()
        .filter_map(|t| t["Error"].as_str().filter(|e| !e.is_empty()))
        .map(str::to_owned)
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(
        waiting[0].contains("3 nodes already run max_replicas_per_node (1)"),
        "{waiting:?}"
    );
}
