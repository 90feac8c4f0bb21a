//! Debian's docker-compose (v1, docker-py underneath) using the container options berth's
//! Docker API now honours: a service waits for another's healthcheck
//! (`depends_on: condition: service_healthy`, which compose decides by reading
//! `State.Health.Status`), legacy `links`, `ulimits` and `stop_signal`.

mod support;

use support::Server;

const PROJECT: &str = r#"version: "2.4"
services:
  db:
    image: busybox
    command: sh -c 'sleep 2; touch /tmp/ready; exec sleep 600'
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 1s
      timeout: 5s
      retries: 30
  app:
    image: busybox
    command: sh -c 'trap "exit 9" USR2; while true; do sleep 0.1; done'
    stop_signal: SIGUSR2
    ulimits:
      nofile:
        soft: 1111
        hard: 2222
    links:
      - db:database
    depends_on:
      db:
        condition: service_healthy
"#;

#[test]
fn compose_v1_waits_for_a_healthy_dependency_and_applies_links_ulimits_stop_signal() {
    let s = Server::start();
    let dir = s.root.path().join("project");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), PROJECT).unwrap();
    let p = "berthhealthtest";
    let db = format!("{p}_db_1");
    let app = format!("{p}_app_1");

    // `up` returns only after db turned healthy and app started
    s.compose(&dir, p, &["up", "-d"]);
    let inspect = |name: &str, f: &str| s.ok(&["inspect", "--format", f, name]).trim().to_string();
    assert_eq!(inspect(&db, "{{.State.Health.Status}}"), "healthy");
    assert_eq!(inspect(&app, "{{.State.Status}}"), "running");
    // the app started after the verdict: db's first success came before app's start
    let db_healthy_at = s.ok(&[
        "inspect",
        "--format",
        "{{range .State.Health.Log}}{{if eq .ExitCode 0}}{{.End}}\n{{end}}{{end}}",
        &db,
    ]);
    let first_ok = db_healthy_at
        .lines()
        .next()
        .expect("a passing probe")
        .to_string();
    let app_started = inspect(&app, "{{.State.StartedAt}}");
    assert!(
        first_ok.as_str() <= app_started.as_str(),
        "app started at {app_started}, before db's first passing probe at {first_ok}"
    );

    let db_ip = inspect(
        &db,
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let hosts = s.ok(&["exec", &app, "cat", "/etc/hosts"]);
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&db_ip) && l.split_whitespace().any(|w| w == "database")),
        "no {db_ip} database in {hosts}"
    );
    assert_eq!(
        s.ok(&["exec", &app, "sh", "-c", "ulimit -n; ulimit -Hn"]),
        "1111\n2222\n"
    );

    s.compose(&dir, p, &["stop", "-t", "30", "app"]);
    assert_eq!(inspect(&app, "{{.State.ExitCode}}"), "9");
    s.compose(&dir, p, &["down", "-v"]);
    assert_eq!(s.ok(&["ps", "-aq"]).trim(), "");
}
