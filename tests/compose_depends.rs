//! `depends_on` conditions on real containers: a dependent starts only once its dependency's
//! healthcheck passes; `service_completed_successfully` runs a migration to completion first.
//! The containers write the order of events into a bind-mounted file.

mod compose_support;

use compose_support::Env;

const HEALTHY: &str = r#"
services:
  api:
    image: busybox:latest
    # healthy only once /tmp/ready exists, two seconds after start
    command: ["sh", "-c", "sleep 2; echo api-ready >> /out/order; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
    volumes:
      - ./out:/out
  web:
    image: busybox:latest
    command: ["sh", "-c", "echo web-start >> /out/order; exec sleep 3600"]
    depends_on:
      api:
        condition: service_healthy
    volumes:
      - ./out:/out
"#;

#[test]
fn a_dependent_waits_until_its_dependency_is_healthy() {
    let env = Env::with_daemon("cmp-healthy", HEALTHY);
    env.ok(&["up", "-d", "--wait", "--wait-timeout", "120"]);
    assert_eq!(env.out_lines("order"), ["api-ready", "web-start"]);
    let api: Vec<_> = env
        .ps(&[])
        .into_iter()
        .filter(|c| c["Service"] == "api")
        .collect();
    assert_eq!(api.len(), 1);
    assert_eq!(api[0]["Health"], "healthy", "{api:?}");
    assert_eq!(env.count("web", "running"), 1);
}

const MIGRATION: &str = r#"
services:
  migrate:
    image: busybox:latest
    command: ["sh", "-c", "sleep 1; echo migrated >> /out/order"]
    volumes:
      - ./out:/out
  app:
    image: busybox:latest
    command: ["sh", "-c", "echo app-start >> /out/order; exec sleep 3600"]
    depends_on:
      migrate:
        condition: service_completed_successfully
    volumes:
      - ./out:/out
"#;

#[test]
fn a_migration_completes_before_the_app_starts() {
    let env = Env::with_daemon("cmp-migrate", MIGRATION);
    env.ok(&["up", "-d"]);
    env.wait_for(
        "the app to start",
        std::time::Duration::from_secs(60),
        || env.out_lines("order").len() >= 2,
    );
    assert_eq!(env.out_lines("order"), ["migrated", "app-start"]);
    let migrate: Vec<_> = env
        .ps(&["-a"])
        .into_iter()
        .filter(|c| c["Service"] == "migrate")
        .collect();
    assert!(
        migrate
            .iter()
            .all(|c| c["State"] == "exited" && c["ExitCode"] == 0),
        "{migrate:?}"
    );
    assert_eq!(env.count("app", "running"), 1);
}
