//! Scaling through `berth scale` and `up --scale` on a real daemon: replicas come and go,
//! named `<project>-<service>-<n>`.

mod compose_support;

use compose_support::Env;

const POOL: &str = r#"
services:
  worker:
    image: busybox:latest
    command: ["sleep", "3600"]
"#;

#[test]
fn scale_up_and_down() {
    let env = Env::with_daemon("cmp-scale", POOL);
    env.ok(&["up", "-d", "--scale", "worker=2"]);
    assert_eq!(env.count("worker", "running"), 2);
    env.ok(&["scale", "worker=5"]);
    let mut names: Vec<String> = env
        .ps(&[])
        .iter()
        .filter_map(|c| c["Name"].as_str().map(String::from))
        .collect();
    names.sort();
    assert_eq!(
        names,
        (1..=5)
            .map(|n| format!("cmp-scale-worker-{n}"))
            .collect::<Vec<_>>()
    );
    env.ok(&["scale", "worker=1"]);
    let left = env.ps(&[]);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["Name"], "cmp-scale-worker-1");
    assert!(
        env.ps(&["-a"]).iter().all(|c| c["State"] == "running"),
        "scaled-down containers are removed, not left stopped"
    );
}
