//! Debian's docker-compose (v1, which speaks the Engine API through docker-py) against
//! berth's Docker API: `up -d`, `ps`, `logs`, `down -v` on a small busybox project with a
//! named volume and the project network. The containers carry the `com.docker.compose.*`
//! labels and are ordinary berth containers.

mod support;

use support::Server;

const PROJECT: &str = r#"version: "3"
services:
  web:
    image: busybox
    command: sh -c 'echo web-up; echo kept > /data/f; exec sleep 600'
    volumes:
      - data:/data
  worker:
    image: busybox
    command: sh -c 'echo worker-up; exec sleep 600'
    depends_on: [web]
volumes:
  data:
"#;

#[test]
fn compose_v1_up_ps_logs_down() {
    let s = Server::start();
    let dir = s.root.path().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), PROJECT).unwrap();
    let p = "berthcomposetest";

    s.compose(&dir, p, &["up", "-d"]);
    let ps = s.compose(&dir, p, &["ps"]);
    for name in [format!("{p}_web_1"), format!("{p}_worker_1")] {
        let line = ps
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("{name} missing: {ps}"));
        assert!(line.contains(" Up"), "{line}");
    }
    support::wait_for("both services' output", 20, || {
        let logs = s.compose(&dir, p, &["logs", "--no-color"]);
        logs.contains("web-up") && logs.contains("worker-up")
    });

    // the docker CLI and berth see the same containers, grouped by compose's labels
    let labelled = s.ok(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={p}"),
        "--format",
        "{{.Label \"com.docker.compose.service\"}}",
    ]);
    let mut services: Vec<&str> = labelled.lines().collect();
    services.sort();
    assert_eq!(services, ["web", "worker"]);
    let records = s.containers().records().unwrap();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| {
        r.labels
            .get("com.docker.compose.project")
            .map(String::as_str)
            == Some(p)
    }));
    assert!(
        s.ok(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|l| l == format!("{p}_default"))
    );
    assert!(
        s.ok(&["volume", "ls", "-q"])
            .lines()
            .any(|l| l == format!("{p}_data"))
    );

    s.compose(&dir, p, &["down", "-v"]);
    assert_eq!(s.ok(&["ps", "-a", "-q"]), "");
    assert!(s.containers().ids().unwrap().is_empty());
    assert!(!s.ok(&["network", "ls"]).contains(&format!("{p}_default")));
    assert!(!s.ok(&["volume", "ls", "-q"]).contains(&format!("{p}_data")));
}
