//! The worker on the real kernel (root): Compose apps applied as tasks become real
//! containers (busybox from Debian's `busybox-static`), on real bridges with the embedded
//! DNS. Each test has its own data root (so its own nft table), its own project name, its
//! own tokio runtime, and a drop guard that removes every container, network and table it
//! made even when the test fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_node_agent::container::{Containers, ExecOptions};
use berth_node_agent::worker::{
    Assignment, Desired, Health, Observed, StatusReport, Worker, WorkerConfig,
};
use berth_testkit::{IpForward, bins, free_port, root};

/// Where cargo put this test binary's sibling binaries (`target/<profile>`).
fn bin_dir() -> PathBuf {
    bins::from_test_exe()
}

struct Env {
    root: tempfile::TempDir,
    project: String,
    rt: Option<tokio::runtime::Runtime>,
    _forward: IpForward,
}

impl Env {
    fn new(project: &str) -> Env {
        bins::ensure(&bin_dir(), bins::CONTAINER);
        let root = root::busybox_root("berth-worker-test-");
        Env {
            root,
            project: project.to_string(),
            rt: Some(runtime()),
            _forward: IpForward::hold(),
        }
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime")
    }

    fn config(&self) -> WorkerConfig {
        let mut cfg = WorkerConfig::new(self.root.path(), bin_dir());
        cfg.registry.credentials = None;
        cfg
    }

    fn open(&self) -> Worker {
        self.rt()
            .block_on(Worker::open(self.config()))
            .expect("open worker")
    }

    /// Drops the runtime the way a killed agent loses its tasks, and starts a fresh one.
    fn restart_runtime(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        self.rt = Some(runtime());
    }

    fn containers(&self) -> Containers {
        root::containers(self.root.path(), &bin_dir())
    }

    /// Loads `yaml` as project `self.project` and makes one task per service (slot 1).
    fn assignments(&self, yaml: &str, desired: Desired) -> Vec<Assignment> {
        let dir = self.root.path().join("project");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("compose.yaml");
        std::fs::write(&file, yaml).unwrap();
        let loaded = berth_spec::load(&berth_spec::LoadOptions {
            files: vec![file.clone()],
            project_name: Some(self.project.clone()),
            working_dir: dir.clone(),
            ..Default::default()
        })
        .expect("load compose file");
        let app = Arc::new(loaded.app);
        app.services
            .keys()
            .map(|s| Assignment {
                task_id: format!("{}-{s}-task", self.project),
                project: self.project.clone(),
                service: s.clone(),
                slot: Some(1),
                desired,
                config_hash: "h1".into(),
                restarts: 0,
                app: app.clone(),
                working_dir: dir.clone(),
                config_files: vec![file.clone()],
                stop_timeout: None,
                launch_ahead: false,
                keep_volumes: false,
            })
            .collect()
    }

    fn task(&self, service: &str) -> String {
        format!("{}-{service}-task", self.project)
    }

    /// Runs `args` in container `id` through the runtime; (exit code, stdout).
    fn exec(&self, id: &str, args: &[&str]) -> (i32, String) {
        let mut cmd = self
            .containers()
            .exec_command(
                id,
                &ExecOptions {
                    args: args.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
            )
            .expect("exec command");
        let out = cmd.output().expect("exec");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        root::clean(self.root.path(), &bin_dir());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Polls the worker's view until `cond` holds for task `task`; the report that matched.
fn wait_status(
    worker: &Worker,
    task: &str,
    what: &str,
    secs: u64,
    cond: impl Fn(&StatusReport) -> bool,
) -> StatusReport {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let all = worker.observed();
        if let Some(r) = all.iter().find(|r| r.task_id == task && cond(r)) {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {task} to be {what}; last seen: {:?}",
            all.iter().find(|r| r.task_id == task)
        );
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// `GET /` on 127.0.0.1:`port`; the whole response, if any.
fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn running(worker: &Worker, env: &Env, service: &str) -> StatusReport {
    wait_status(worker, &env.task(service), "running", 60, |r| {
        r.state == Observed::Running
    })
}

#[test]
fn apply_runs_an_app_with_compose_names_labels_networks_and_dns() {
    let env = Env::new("wkapp");
    let worker = env.open();
    let yaml = r#"
services:
  db:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo db-answer > /www/index.html && exec httpd -f -p 8080 -h /www"]
    networks:
      back:
        aliases: [database]
    volumes: [data:/data, /scratch]
  front:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo front-answer > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:PORT:80"]
  web:
    image: busybox
    command: ["sleep", "1000"]
    depends_on: [db]
    networks:
      default: {}
      back:
        priority: 10
    labels:
      tier: front
networks:
  back:
    internal: true
volumes:
  data: {}
"#;
    let port = free_port();
    let yaml = &yaml.replace("PORT", &port.to_string());
    let tasks = env.assignments(yaml, Desired::Running);
    env.rt().block_on(worker.apply(tasks));
    let db = running(&worker, &env, "db");
    running(&worker, &env, "front");
    let web = running(&worker, &env, "web");
    let c = env.containers();
    let db_rec = c.resolve(db.container_id.as_deref().unwrap()).unwrap();
    let web_rec = c.resolve(web.container_id.as_deref().unwrap()).unwrap();
    assert_eq!(db_rec.name, "wkapp-db-1");
    assert_eq!(web_rec.name, "wkapp-web-1");
    let l = &web_rec.labels;
    assert_eq!(l["com.docker.compose.project"], "wkapp");
    assert_eq!(l["com.docker.compose.service"], "web");
    assert_eq!(l["com.docker.compose.container-number"], "1");
    assert_eq!(l["com.docker.compose.oneoff"], "False");
    assert_eq!(l["com.docker.compose.config-hash"], "h1");
    assert_eq!(l["berth.task.id"], env.task("web"));
    assert_eq!(l["berth.app"], "wkapp");
    assert_eq!(l["tier"], "front");
    assert!(l["com.docker.compose.project.config_files"].ends_with("compose.yaml"));
    let nets: Vec<&str> = web_rec
        .endpoints
        .iter()
        .map(|e| e.network.as_str())
        .collect();
    // highest priority first: `back` carries the resolver (the embedded DNS answers per
    // network, for the network a query arrives on)
    assert_eq!(nets, ["wkapp_back", "wkapp_default"]);
    assert_eq!(db_rec.endpoints.len(), 1);
    assert_eq!(db_rec.endpoints[0].network, "wkapp_back");

    // the project's resources carry Compose's labels
    let res = worker.project_resources("wkapp");
    assert_eq!(
        res.networks["wkapp_back"].labels["com.docker.compose.network"],
        "back"
    );
    assert_eq!(
        res.networks["wkapp_default"].labels["com.docker.compose.project"],
        "wkapp"
    );
    assert_eq!(
        res.volumes["wkapp_data"].labels["com.docker.compose.volume"],
        "data"
    );
    assert!(
        db_rec
            .mounts
            .iter()
            .any(|m| m.name.as_deref() == Some("wkapp_data"))
    );
    let anon = db_rec
        .mounts
        .iter()
        .find(|m| m.destination == "/scratch")
        .and_then(|m| m.name.clone())
        .expect("anonymous volume");
    assert!(env.root.path().join("volumes").join(&anon).is_dir());

    // web finds db by service name and by alias through the embedded DNS, and reaches it
    for name in ["db", "database"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("http://{name}:8080/");
            let (code, out) = env.exec(
                &web_rec.id,
                &["timeout", "3", "wget", "-q", "-O", "-", &url],
            );
            if code == 0 {
                assert_eq!(out.trim(), "db-answer");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "web cannot reach {name}: exit {code}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // the published port answers on the host
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(port) {
            Some(body) if body.contains("front-answer") => break,
            other => assert!(Instant::now() < deadline, "published port: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // applying the same set again changes nothing
    let tasks = env.assignments(yaml, Desired::Running);
    env.rt().block_on(worker.apply(tasks));
    std::thread::sleep(Duration::from_millis(300));
    let again = running(&worker, &env, "web");
    assert_eq!(again.container_id, web.container_id);

    // removal takes containers and anonymous volumes; down -v takes networks and volumes
    let tasks = env.assignments(yaml, Desired::Remove);
    let mut rx = worker.subscribe();
    env.rt().block_on(worker.apply(tasks));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !worker.observed().is_empty() {
        assert!(
            Instant::now() < deadline,
            "tasks not forgotten: {:?}",
            worker.observed()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut removed = Vec::new();
    while let Ok(r) = rx.try_recv() {
        if r.state == Observed::Removed {
            assert!(r.container_id.is_none());
            removed.push(r.task_id);
        }
    }
    removed.sort();
    assert_eq!(
        removed,
        [env.task("db"), env.task("front"), env.task("web")]
    );
    assert!(c.ids().unwrap().is_empty());
    assert!(!env.root.path().join("volumes").join(&anon).exists());
    assert!(env.root.path().join("volumes/wkapp_data").is_dir());
    env.rt()
        .block_on(worker.remove_project("wkapp", true))
        .expect("remove project");
    assert!(worker.networks().network("wkapp_back").is_none());
    assert!(!env.root.path().join("volumes/wkapp_data").exists());
    assert!(worker.projects().is_empty());
}

#[test]
fn exit_codes_are_reported_as_complete_or_failed() {
    let env = Env::new("wkexit");
    let worker = env.open();
    let yaml = r#"
services:
  good:
    image: busybox
    command: ["true"]
  bad:
    image: busybox
    command: ["sh", "-c", "sleep 0.2; exit 3"]
"#;
    let mut rx = worker.subscribe();
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    let good = wait_status(&worker, &env.task("good"), "complete", 60, |r| {
        r.state == Observed::Complete
    });
    assert_eq!(good.exit_code, Some(0));
    let bad = wait_status(&worker, &env.task("bad"), "failed", 60, |r| {
        r.state == Observed::Failed
    });
    assert_eq!(bad.exit_code, Some(3));
    // the reports went out in order: preparing, ready, starting, running, failed
    let mut seen = Vec::new();
    while let Ok(r) = rx.try_recv() {
        if r.task_id == env.task("bad") && seen.last() != Some(&r.state) {
            seen.push(r.state);
        }
    }
    assert_eq!(
        seen,
        [
            Observed::Preparing,
            Observed::Ready,
            Observed::Starting,
            Observed::Running,
            Observed::Failed
        ]
    );
    // an exited task is not started again at the same `restarts`…
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        wait_status(&worker, &env.task("bad"), "failed", 5, |_| true).state,
        Observed::Failed
    );
    // …but is when the controller bumps it
    let mut tasks = env.assignments(yaml, Desired::Running);
    for t in &mut tasks {
        t.restarts = 1;
    }
    let mut rx = worker.subscribe();
    env.rt().block_on(worker.apply(tasks));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut restarted = false;
    while !restarted {
        assert!(Instant::now() < deadline, "bad was not restarted");
        if let Ok(r) = rx.try_recv() {
            restarted = r.task_id == env.task("bad") && r.state == Observed::Running;
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let bad2 = wait_status(&worker, &env.task("bad"), "failed", 60, |r| {
        r.state == Observed::Failed
    });
    assert_eq!(bad2.container_id, bad.container_id, "restarted in place");
}

#[test]
fn healthcheck_reports_starting_healthy_unhealthy() {
    let env = Env::new("wkhealth");
    let worker = env.open();
    let yaml = r#"
services:
  app:
    image: busybox
    command: ["sh", "-c", "touch /tmp/ok; sleep 2; rm /tmp/ok; sleep 1000"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ok"]
      interval: 300ms
      timeout: 2s
      retries: 2
"#;
    let mut rx = worker.subscribe();
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut healths = Vec::new();
    while healths.last() != Some(&Health::Unhealthy) {
        assert!(Instant::now() < deadline, "health went {healths:?}");
        match rx.try_recv() {
            Ok(r) if r.task_id == env.task("app") => {
                if healths.last() != Some(&r.health) && r.health != Health::None {
                    healths.push(r.health);
                }
            }
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    assert_eq!(
        healths,
        [Health::Starting, Health::Healthy, Health::Unhealthy]
    );
    let st = worker
        .observed()
        .into_iter()
        .find(|r| r.task_id == env.task("app"))
        .unwrap();
    assert_eq!(
        st.state,
        Observed::Running,
        "unhealthy is not stopped by the agent"
    );
}

#[test]
fn shutdown_honours_stop_signal_and_grace_period() {
    let env = Env::new("wkstop");
    let worker = env.open();
    let yaml = r#"
services:
  polite:
    image: busybox
    command: ["sh", "-c", "trap 'exit 7' USR1; while true; do sleep 0.1; done"]
    stop_signal: SIGUSR1
  stubborn:
    image: busybox
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
    stop_grace_period: 1s
"#;
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    running(&worker, &env, "polite");
    running(&worker, &env, "stubborn");
    // let the shells install their traps
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Shutdown)));
    let polite = wait_status(&worker, &env.task("polite"), "shut down", 30, |r| {
        r.state == Observed::Shutdown
    });
    assert_eq!(
        polite.exit_code,
        Some(7),
        "stop_signal USR1 reached the trap"
    );
    let stubborn = wait_status(&worker, &env.task("stubborn"), "shut down", 30, |r| {
        r.state == Observed::Shutdown
    });
    assert_eq!(
        stubborn.exit_code,
        Some(137),
        "killed after the grace period"
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "grace period of 1s, took {took:?}"
    );
    // the containers stay, and start again in place when wanted running
    assert_eq!(env.containers().ids().unwrap().len(), 2);
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    let again = running(&worker, &env, "polite");
    assert_eq!(again.container_id, polite.container_id);
    assert_eq!(again.exit_code, None);
}

#[test]
fn an_init_that_cannot_receive_the_stop_signal_is_killed_without_waiting() {
    let env = Env::new("wkdeaf");
    let worker = env.open();
    // busybox sleep as PID 1 has no SIGTERM handler: the kernel drops the signal, so the
    // 30 s grace period could only be waited out, never used
    let yaml = r#"
services:
  deaf:
    image: busybox
    network_mode: none
    command: ["sleep", "3600"]
    stop_grace_period: 30s
"#;
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    running(&worker, &env, "deaf");
    let t0 = Instant::now();
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Shutdown)));
    let deaf = wait_status(&worker, &env.task("deaf"), "shut down", 30, |r| {
        r.state == Observed::Shutdown
    });
    assert_eq!(deaf.exit_code, Some(137));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} for nothing"
    );
}

#[test]
fn down_stops_in_reverse_dependency_waves() {
    let env = Env::new("wkwaves");
    let worker = env.open();
    let shared = env.root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let svc = |name: &str, dep: Option<&str>| {
        let mut s = format!(
            "  {name}:\n    image: busybox\n    network_mode: none\n    volumes: [\"{}:/shared\"]\n    command: [\"sh\", \"-c\", \"echo start-{name} >> /shared/order; trap 'sleep 0.3; echo stop-{name} >> /shared/order; exit 0' TERM; while true; do sleep 0.1; done\"]\n",
            shared.display()
        );
        if let Some(d) = dep {
            s.push_str(&format!("    depends_on: [{d}]\n"));
        }
        s
    };
    let yaml = format!(
        "services:\n{}{}{}{}",
        svc("base", None),
        svc("mid", Some("base")),
        svc("top", Some("mid")),
        svc("side", Some("base"))
    );
    let mut rx = worker.subscribe();
    env.rt()
        .block_on(worker.apply(env.assignments(&yaml, Desired::Running)));
    for s in ["base", "mid", "top", "side"] {
        running(&worker, &env, s);
    }
    // every shell has written its start line and installed its trap
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(shared.join("order"))
        .unwrap_or_default()
        .lines()
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "not all started");
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(200));
    env.rt().block_on(worker.apply(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !worker.observed().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not all removed: {:?}",
            worker.observed()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let order = std::fs::read_to_string(shared.join("order")).unwrap();
    let lines: Vec<&str> = order.lines().collect();
    let pos = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("{l} missing in {lines:?}"))
    };
    // started in waves: base before mid and side, mid before top ("started" as Compose
    // means it: the process runs, not that it has written its first line yet)
    let mut started = Vec::new();
    while let Ok(r) = rx.try_recv() {
        if r.state == Observed::Running {
            started.push(
                r.task_id
                    .trim_start_matches("wkwaves-")
                    .replace("-task", ""),
            );
        }
    }
    let at = |s: &str| started.iter().position(|x| x == s).unwrap();
    assert!(
        at("base") < at("mid") && at("base") < at("side"),
        "{started:?}"
    );
    assert!(at("mid") < at("top"), "{started:?}");
    assert!(pos("start-base") < pos("stop-base"));
    // stopped in reverse waves: top and side first, then mid, then base
    assert!(pos("stop-top") < pos("stop-mid"), "{lines:?}");
    assert!(pos("stop-mid") < pos("stop-base"), "{lines:?}");
    assert!(pos("stop-side") < pos("stop-base"), "{lines:?}");
    assert!(env.containers().ids().unwrap().is_empty());
}

#[test]
fn reopen_adopts_running_containers_without_restarting_them() {
    let mut env = Env::new("wkadopt");
    let yaml = r#"
services:
  long:
    image: busybox
    command: ["sleep", "1000"]
  short:
    image: busybox
    command: ["sh", "-c", "sleep 1; exit 5"]
"#;
    let (long_id, pid) = {
        let worker = env.open();
        env.rt()
            .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
        let long = running(&worker, &env, "long");
        running(&worker, &env, "short");
        let id = long.container_id.unwrap();
        let pid = env.containers().resolve(&id).unwrap().state.pid;
        (id, pid)
    };
    // the agent dies; `short` exits while nobody watches
    env.restart_runtime();
    let deadline = Instant::now() + Duration::from_secs(20);
    let c = env.containers();
    let short_id = c
        .records()
        .unwrap()
        .into_iter()
        .find(|r| r.name == "wkadopt-short-1")
        .unwrap()
        .id;
    loop {
        let exited = Path::new("/run/berth/shims")
            .join(&short_id)
            .join("exit.json")
            .exists();
        if exited {
            break;
        }
        assert!(Instant::now() < deadline, "short did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let worker = env.open();
    let long = wait_status(&worker, &env.task("long"), "adopted", 5, |r| {
        r.state == Observed::Running
    });
    assert_eq!(long.container_id.as_deref(), Some(long_id.as_str()));
    let short = wait_status(&worker, &env.task("short"), "failed", 5, |r| {
        r.state == Observed::Failed
    });
    assert_eq!(short.exit_code, Some(5));
    // the same assignments again: nothing restarts
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    std::thread::sleep(Duration::from_millis(500));
    let rec = env.containers().resolve(&long_id).unwrap();
    assert_eq!(
        rec.state.pid, pid,
        "the adopted container was not restarted"
    );
    assert_eq!(
        wait_status(&worker, &env.task("short"), "failed", 5, |_| true).state,
        Observed::Failed
    );
    // and its exit is still watched
    let c = env.containers();
    c.kill(&long_id, libc::SIGKILL).unwrap();
    let long = wait_status(&worker, &env.task("long"), "failed", 30, |r| {
        r.state == Observed::Failed
    });
    assert_eq!(long.exit_code, Some(137));
}

#[test]
fn missing_image_and_unreachable_registry_is_rejected() {
    let env = Env::new("wkreject");
    let worker = env.open();
    // nothing listens on port 1 of loopback: the registry cannot be reached
    let yaml = r#"
services:
  ghost:
    image: 127.0.0.1:1/nothing/here:1.0
  local:
    image: busybox
    pull_policy: never
    command: ["sleep", "1000"]
  unbuilt:
    image: not-built-here
    pull_policy: build
"#;
    let t0 = Instant::now();
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Ready)));
    let ghost = wait_status(&worker, &env.task("ghost"), "rejected", 120, |r| {
        r.state == Observed::Rejected
    });
    assert!(
        ghost.message.contains("127.0.0.1:1/nothing/here:1.0")
            && ghost.message.contains("could not be pulled"),
        "{}",
        ghost.message
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    let unbuilt = wait_status(&worker, &env.task("unbuilt"), "rejected", 30, |r| {
        r.state == Observed::Rejected
    });
    assert!(
        unbuilt.message.contains("build it first"),
        "{}",
        unbuilt.message
    );
    // Ready: created, not started
    let local = wait_status(&worker, &env.task("local"), "ready", 30, |r| {
        r.state == Observed::Ready
    });
    let rec = env
        .containers()
        .resolve(local.container_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(rec.state.status.as_str(), "created");
    // then Running starts it
    let tasks: Vec<Assignment> = env
        .assignments(yaml, Desired::Running)
        .into_iter()
        .collect();
    env.rt().block_on(worker.apply(tasks));
    let st = running(&worker, &env, "local");
    assert_eq!(st.container_id, local.container_id);
}

#[test]
fn compose_options_reach_the_container_and_unsupported_keys_warn() {
    let env = Env::new("wkopts");
    let worker = env.open();
    let yaml = r#"
services:
  opts:
    image: busybox
    command: ["sleep", "1000"]
    user: nobody
    working_dir: /tmp
    hostname: opthost
    domainname: example.org
    environment:
      GREETING: hello
    extra_hosts: ["gateway.test=10.1.2.3"]
    dns_search: [corp.test]
    tmpfs: [/scratch]
    read_only: true
    shm_size: 8m
    ulimits:
      nofile: {soft: 123, hard: 456}
    sysctls:
      net.ipv4.ip_unprivileged_port_start: "80"
    cap_add: [NET_ADMIN]
    cpu_shares: 512
    security_opt: ["label=disable"]
    networks:
      fixed:
        ipv4_address: 10.239.SUBNET.42
  sidecar:
    image: busybox
    network_mode: service:opts
    command: ["sleep", "1000"]
networks:
  fixed:
    driver_opts:
      com.docker.network.driver.mtu: "1400"
    ipam:
      config:
        - subnet: 10.239.SUBNET.0/24
"#;
    // a /24 of its own (10.239/16 is left to this test): per process, so parallel runs of
    // the suite on one host do not collide
    let subnet = (std::process::id() % 250 + 1).to_string();
    let yaml = &yaml.replace("SUBNET", &subnet);
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    let opts = running(&worker, &env, "opts");
    let sidecar = running(&worker, &env, "sidecar");
    assert!(opts.message.contains("cpu_shares"), "{}", opts.message);
    assert!(opts.message.contains("label=disable"), "{}", opts.message);
    let id = opts.container_id.as_deref().unwrap();
    let sh = |script: &str| {
        let (code, out) = env.exec(id, &["sh", "-c", script]);
        assert_eq!(code, 0, "{script}");
        out.trim().to_string()
    };
    assert!(sh("grep ^Uid: /proc/1/status").contains("65534"));
    assert_eq!(sh("readlink /proc/1/cwd"), "/tmp");
    assert_eq!(sh("hostname"), "opthost");
    assert_eq!(sh("cat /proc/sys/kernel/domainname"), "example.org");
    assert!(sh("tr '\\0' '\\n' < /proc/1/environ").contains("GREETING=hello"));
    assert!(sh("cat /etc/hosts").contains("10.1.2.3\tgateway.test"));
    let resolv = sh("cat /etc/resolv.conf");
    assert!(resolv.contains("search corp.test"), "{resolv}");
    let rec = env.containers().resolve(id).unwrap();
    assert!(
        resolv.contains(&format!("nameserver {}", rec.endpoints[0].gateway)),
        "the embedded DNS: {resolv}"
    );
    // the static address on the network made with the model's subnet and MTU
    assert_eq!(rec.endpoints[0].network, "wkopts_fixed");
    assert_eq!(rec.endpoints[0].ip, format!("10.239.{subnet}.42"));
    assert!(sh("ip -4 addr show eth0").contains(&format!("10.239.{subnet}.42/24")));
    assert_eq!(sh("cat /sys/class/net/eth0/mtu"), "1400");
    assert!(sh("grep 'Max open files' /proc/1/limits").contains("123                  456"));
    assert_eq!(
        sh("cat /proc/sys/net/ipv4/ip_unprivileged_port_start"),
        "80"
    );
    assert!(sh("df -k /dev/shm | tail -1").contains("8192"));
    assert!(sh("grep ' /scratch ' /proc/mounts").starts_with("tmpfs"));
    let (code, _) = env.exec(id, &["touch", "/rootfile"]);
    assert_ne!(code, 0, "read_only root");
    // network_mode service:opts shares the namespace
    let side = sidecar.container_id.as_deref().unwrap();
    let ns_of = |cid: &str| env.exec(cid, &["readlink", "/proc/1/ns/net"]).1;
    assert_eq!(ns_of(side), ns_of(id));
}

#[test]
fn a_replacement_task_takes_over_the_name_of_its_slot() {
    let env = Env::new("wkslot");
    let worker = env.open();
    let yaml = r#"
services:
  job:
    image: busybox
    command: ["sh", "-c", "sleep 0.2; exit 4"]
"#;
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    let first = wait_status(&worker, &env.task("job"), "failed", 60, |r| {
        r.state == Observed::Failed
    });
    // the controller replaces the failed task with a new one for the same slot, keeping
    // the old one (still desired running) in the set
    let old = env.assignments(yaml, Desired::Running);
    let mut new = old.clone();
    new[0].task_id = format!("{}-job-task-2", env.project);
    new[0].desired = Desired::Running;
    let both: Vec<Assignment> = old.into_iter().chain(new).collect();
    env.rt().block_on(worker.apply(both));
    let second = wait_status(&worker, "wkslot-job-task-2", "failed again", 60, |r| {
        r.state == Observed::Failed
    });
    assert_ne!(second.container_id, first.container_id);
    let rec = env
        .containers()
        .resolve(second.container_id.as_deref().unwrap())
        .unwrap();
    assert_eq!(rec.name, "wkslot-job-1");
    assert_eq!(rec.labels["berth.task.id"], "wkslot-job-task-2");
    let old = wait_status(&worker, &env.task("job"), "without container", 10, |r| {
        r.container_id.is_none()
    });
    assert_eq!(old.state, Observed::Failed);
    assert!(
        env.containers()
            .resolve(first.container_id.as_deref().unwrap())
            .is_err()
    );
}

#[test]
fn a_task_held_for_its_dependencies_is_launched_ahead_without_running() {
    let env = Env::new("wkahead");
    let worker = env.open();
    let yaml = r#"
services:
  held:
    image: busybox
    network_mode: none
    command: ["sleep", "3600"]
"#;
    let mut reports = worker.subscribe();
    let mut held = env.assignments(yaml, Desired::Ready);
    held[0].launch_ahead = true;
    env.rt().block_on(worker.apply(held));
    let ready = wait_status(&worker, &env.task("held"), "prepared", 60, |r| {
        r.state == Observed::Ready
    });
    let id = ready.container_id.expect("container id");
    // launched: its shim answers, while the program itself has not started
    let shim_dir = worker.containers().shim_dir(&id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while berth_shim::ShimHandle::connect(&shim_dir).is_err() {
        assert!(Instant::now() < deadline, "never launched ahead");
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut record = worker.containers().resolve(&id).expect("record");
    worker.containers().observe(&mut record);
    assert_ne!(
        record.state.status,
        berth_node_agent::container::Status::Running,
        "a held task runs"
    );
    while let Ok(r) = reports.try_recv() {
        assert_ne!(
            r.state,
            Observed::Starting,
            "a held task was reported starting"
        );
    }
    // released: the same container runs
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Running)));
    let run = running(&worker, &env, "held");
    assert_eq!(run.container_id.as_deref(), Some(id.as_str()));
    // removed, the worker forgets the task
    env.rt()
        .block_on(worker.apply(env.assignments(yaml, Desired::Remove)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !worker.observed().is_empty() {
        assert!(Instant::now() < deadline, "never removed");
        std::thread::sleep(Duration::from_millis(30));
    }
}
