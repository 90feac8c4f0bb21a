//! berthd on the real kernel (root): a real daemon on a temporary data root and socket,
//! driven through the generated gRPC client. Deploys a busybox app, survives `kill -9` and
//! SIGTERM without restarting a container or losing a task, refuses a second daemon on the
//! same data root, drops a torn raft log tail and refuses a corrupted one.
//!
//! Every test owns its data root; a drop guard removes the app, stops the daemon, and
//! force-removes any container left, even when an assertion failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_api::v1::compose_client::ComposeClient;
use berth_api::v1::system_client::SystemClient;
use berth_api::v1::{self, TaskState};
use berth_node_agent::container::Containers;
use berth_testkit::process::{self, Stdout};
use berth_testkit::{bins, root};
use tonic::transport::Channel;

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
const RUN_ROOT: &str = root::RUN_ROOT;

fn bin_dir() -> PathBuf {
    bins::dir_of(BERTHD)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One daemon's data root, socket and process; cleans everything up on drop.
struct Daemon {
    root: tempfile::TempDir,
    child: Option<process::Daemon>,
    projects: Vec<String>,
}

impl Daemon {
    fn new(with_image: bool) -> Daemon {
        bins::ensure(&bin_dir(), bins::CONTAINER);
        let root = tempfile::Builder::new()
            .prefix("berthd-test-")
            .tempdir()
            .expect("tempdir");
        if with_image {
            root::import_busybox(root.path());
        }
        Daemon {
            root,
            child: None,
            projects: Vec::new(),
        }
    }

    fn data_root(&self) -> &Path {
        self.root.path()
    }

    fn socket(&self) -> String {
        format!("unix://{}/berth.sock", self.root.path().display())
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BERTHD);
        c.arg("--data-root")
            .arg(self.data_root())
            .arg("-H")
            .arg(self.socket())
            .arg("--run-root")
            .arg(RUN_ROOT)
            .arg("--log-level")
            .arg("info")
            .stdin(Stdio::null());
        c
    }

    /// Starts berthd and waits until it answers a ping.
    fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = self.data_root().join("berthd.log");
        let mut child = process::Daemon::spawn("berthd", self.command(), &log, Stdout::Null);
        let rt = runtime();
        child.wait_ready("answer", Duration::from_secs(30), || {
            rt.block_on(async {
                let Ok(channel) = berth_api::connect(&self.socket(), &Default::default()).await
                else {
                    return false;
                };
                SystemClient::new(channel)
                    .ping(v1::PingRequest {})
                    .await
                    .is_ok()
            })
        });
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data_root().join("berthd.log")).unwrap_or_default()
    }

    fn kill9(&mut self) {
        self.child.take().expect("running").kill();
    }

    /// SIGTERM; returns the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        child
            .terminate(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("berthd ignored SIGTERM: {}", self.log()))
    }

    async fn channel(&self) -> Channel {
        berth_api::connect(&self.socket(), &Default::default())
            .await
            .expect("connect")
    }

    fn containers(&self) -> Containers {
        root::containers(self.data_root(), &bin_dir())
    }

    /// Container id → pid of every running container of the data root.
    fn running(&self) -> std::collections::BTreeMap<String, i32> {
        let containers = self.containers();
        let mut out = std::collections::BTreeMap::new();
        for mut r in containers.records().expect("records") {
            containers.observe(&mut r);
            if r.state.status == berth_node_agent::container::Status::Running {
                out.insert(r.id.clone(), r.state.pid);
            }
        }
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let rt = runtime();
            for project in self.projects.clone() {
                let _ = rt.block_on(async {
                    let channel = berth_api::connect(&self.socket(), &Default::default())
                        .await
                        .ok()?;
                    tokio::time::timeout(
                        Duration::from_secs(60),
                        ComposeClient::new(channel).remove(v1::RemoveRequest {
                            project,
                            remove_volumes: true,
                            timeout_seconds: Some(1),
                            ..Default::default()
                        }),
                    )
                    .await
                    .ok()
                });
            }
            if let Some(mut child) = self.child.take() {
                child.kill();
            }
        }
        // Whatever the daemon did not get to: kill and remove the containers themselves.
        let containers = self.containers();
        if let Ok(records) = containers.records() {
            for r in records {
                let _ = containers.remove(&r.id, true);
            }
        }
    }
}

fn app_json(replicas: u32) -> String {
    serde_json::json!({
        "name": "",
        "services": {
            "web": {
                "image": "busybox:latest",
                "command": ["sh", "-c", "echo hello from $(hostname); exec sleep 3600"],
                "network_mode": "none",
                "stop_grace_period": "1s",
                "deploy": {"replicas": replicas}
            }
        }
    })
    .to_string()
}

async fn deploy(channel: &Channel, project: &str, replicas: u32) -> v1::DeployResponse {
    ComposeClient::new(channel.clone())
        .deploy(v1::DeployRequest {
            project: project.into(),
            app_json: app_json(replicas),
            working_dir: "/nonexistent".into(),
            config_files: vec!["/nonexistent/compose.yaml".into()],
            options: None,
            files: Default::default(),
        })
        .await
        .expect("deploy")
        .into_inner()
}

async fn ps(channel: &Channel, project: &str) -> Vec<v1::Task> {
    ComposeClient::new(channel.clone())
        .ps(v1::PsRequest {
            project: project.into(),
            ..Default::default()
        })
        .await
        .expect("ps")
        .into_inner()
        .tasks
}

/// Waits until `n` tasks of the project run in containers; returns them.
async fn wait_running(
    channel: &Channel,
    project: &str,
    n: usize,
    log: impl Fn() -> String,
) -> Vec<v1::Task> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = ps(channel, project).await;
        let running: Vec<v1::Task> = tasks
            .iter()
            .filter(|t| t.state == TaskState::TaskRunning as i32 && !t.container_id.is_empty())
            .cloned()
            .collect();
        if running.len() == n && tasks.len() == n {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "tasks did not reach {n} running: {tasks:#?}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

#[test]
fn a_deployed_app_survives_kill_9_and_sigterm_of_berthd() {
    let mut daemon = Daemon::new(true);
    daemon.start();
    let project = format!("bd{}", std::process::id());
    daemon.projects.push(project.clone());
    let rt = runtime();

    let (tasks, before) = rt.block_on(async {
        let channel = daemon.channel().await;
        let response = deploy(&channel, &project, 2).await;
        assert_eq!(response.services.len(), 1);
        let tasks = wait_running(&channel, &project, 2, || daemon.log()).await;
        // Logs of both containers, tagged with their names.
        let mut stream = ComposeClient::new(channel.clone())
            .logs(v1::LogsRequest {
                project: project.clone(),
                ..Default::default()
            })
            .await
            .expect("logs")
            .into_inner();
        let mut names = std::collections::BTreeSet::new();
        while let Some(line) = stream.message().await.expect("log line") {
            assert!(
                String::from_utf8_lossy(&line.line).starts_with("hello from"),
                "{line:?}"
            );
            assert_eq!(line.service, "web");
            names.insert(line.container_name);
        }
        let expected: std::collections::BTreeSet<String> =
            tasks.iter().map(|t| t.container_name.clone()).collect();
        assert_eq!(names, expected);
        (tasks, daemon.running())
    });
    assert_eq!(before.len(), 2, "{before:?}");
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();

    // kill -9: the containers keep running under their shims.
    daemon.kill9();
    for pid in before.values() {
        assert!(pid_alive(*pid), "container process {pid} died with berthd");
    }
    daemon.start();
    rt.block_on(async {
        let channel = daemon.channel().await;
        let tasks = wait_running(&channel, &project, 2, || daemon.log()).await;
        let mut after: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        after.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(after, expected, "tasks were replaced after kill -9");
        // A change after the restart proves the controller loop ran; the two old
        // containers must be untouched by it.
        ComposeClient::new(channel.clone())
            .scale(v1::ScaleRequest {
                project: project.clone(),
                replicas: [("web".to_owned(), 3)].into(),
                no_deps: false,
            })
            .await
            .expect("scale");
        wait_running(&channel, &project, 3, || daemon.log()).await;
    });
    let now = daemon.running();
    for (id, pid) in &before {
        assert_eq!(
            now.get(id),
            Some(pid),
            "container {id} was restarted or replaced"
        );
    }

    // SIGTERM: a clean exit that leaves the containers running.
    let status = daemon.terminate();
    assert!(
        status.success(),
        "berthd exited with {status}: {}",
        daemon.log()
    );
    assert!(!daemon.data_root().join("berth.sock").exists());
    for pid in before.values() {
        assert!(
            pid_alive(*pid),
            "SIGTERM of berthd stopped container process {pid}"
        );
    }
    daemon.start();
    rt.block_on(async {
        let channel = daemon.channel().await;
        wait_running(&channel, &project, 3, || daemon.log()).await;
        let info = SystemClient::new(channel.clone())
            .info(v1::InfoRequest {})
            .await
            .expect("info")
            .into_inner();
        assert_eq!(info.apps, 1);
        assert_eq!(info.tasks_running, 3);
        // down removes the containers.
        let removed = ComposeClient::new(channel.clone())
            .remove(v1::RemoveRequest {
                project: project.clone(),
                timeout_seconds: Some(1),
                ..Default::default()
            })
            .await
            .expect("down")
            .into_inner();
        assert_eq!(removed.containers.len(), 3, "{removed:?}");
        let err = ComposeClient::new(channel.clone())
            .ps(v1::PsRequest {
                project: project.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    });
    assert!(daemon.running().is_empty());
    for pid in before.values() {
        assert!(
            !pid_alive(*pid) || is_zombie_elsewhere(*pid),
            "container process {pid} outlived down"
        );
    }
}

/// A pid reused by an unrelated process after the container's exit.
fn is_zombie_elsewhere(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|c| !c.contains("sleep"))
        .unwrap_or(true)
}

/// Runs a berthd that is expected to refuse to start; one that keeps running fails the test.
fn bounded(command: Command) -> std::process::Output {
    berth_testkit::output_within(command, 30)
}

fn wal(daemon: &Daemon) -> PathBuf {
    daemon.data_root().join("raft/raft.wal")
}

#[test]
fn the_raft_log_drops_a_torn_tail_and_refuses_corruption() {
    let mut daemon = Daemon::new(false);
    daemon.start();
    let rt = runtime();
    rt.block_on(async {
        let channel = daemon.channel().await;
        // Zero replicas: state only, no container.
        deploy(&channel, "kept", 0).await;
    });

    // A second daemon on the same data root is refused, and says why.
    let second = bounded(daemon.command());
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another berthd"), "{stderr}");

    daemon.kill9();
    // A torn write: a record header promising more bytes than follow.
    let good_len = std::fs::metadata(wal(&daemon)).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(wal(&daemon))
            .unwrap();
        f.write_all(&[0xff, 0x00, 0x00, 0x00, 0x12, 0x34]).unwrap();
    }
    daemon.start();
    assert!(daemon.log().contains("torn"), "{}", daemon.log());
    let apps = rt.block_on(async {
        let channel = daemon.channel().await;
        ComposeClient::new(channel)
            .list_apps(v1::ListAppsRequest { all: true })
            .await
            .expect("ls")
            .into_inner()
            .apps
    });
    assert_eq!(
        apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["kept"]
    );
    daemon.kill9();
    assert!(std::fs::metadata(wal(&daemon)).unwrap().len() >= good_len);

    // Corruption inside acknowledged records: refused, with the file and offset, untouched.
    let mut bytes = std::fs::read(wal(&daemon)).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(wal(&daemon), &bytes).unwrap();
    let refused = bounded(daemon.command());
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("raft.wal"), "{stderr}");
    assert_eq!(
        std::fs::read(wal(&daemon)).unwrap(),
        bytes,
        "the corrupt log was modified"
    );
}
