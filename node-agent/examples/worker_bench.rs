//! Times the worker alone (no daemon, no controller) on N chained services
//! (`s<i>` depends on `s<i-1>`, one network, busybox `httpd`): `apply` until every task
//! runs, then the empty set until every container is gone. Root; busybox-static; builds
//! nothing itself — run it with the runtime and the shim built:
//!
//! ```sh
//! cargo build --release -p berth-runtime -p berth-shim --bins
//! cargo build --release -p berth-node-agent --example worker_bench
//! sudo target/release/examples/worker_bench 10
//! ```
//!
//! `BERTH_LIBEXEC_DIR` points it at other `berth-runc`/`berth-shim` binaries;
//! `BENCH_TRACE=1` prints every status report with its time.
//!
//! Everything is made under a temporary data root and removed at the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_node_agent::container::{Config, Containers};
use berth_node_agent::worker::{Assignment, Desired, Observed, Worker, WorkerConfig};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let exe = std::env::current_exe().expect("exe");
    // BERTH_LIBEXEC_DIR: where berth-runc and berth-shim are (e.g. target/release)
    let bin = std::env::var_os("BERTH_LIBEXEC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            exe.parent()
                .and_then(|p| p.parent())
                .expect("target dir")
                .to_path_buf()
        });
    let root = tempfile::Builder::new()
        .prefix("berth-worker-bench-")
        .tempdir()
        .expect("tempdir");
    let store = berth_image::Store::open(root.path().join("image")).expect("store");
    berth_image::testing::import_busybox(
        &store,
        &berth_image::Reference::parse("busybox:latest").expect("ref"),
    )
    .expect("busybox image (apt-get install busybox-static)");
    // the layer is unpacked once per data root; time it apart from the worker
    let t = Instant::now();
    let target = store.lookup("busybox:latest").expect("busybox");
    let image = store.image(&target).expect("image");
    berth_image::Snapshotter::new(&store)
        .and_then(|s| s.unpack(&image))
        .expect("unpack");
    println!(
        "unpack busybox layer: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let mut yaml = String::from("services:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  s{i}:\n    image: busybox\n    command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n    stop_signal: SIGKILL\n"
        ));
        if i > 0 {
            yaml.push_str(&format!("    depends_on: [s{}]\n", i - 1));
        }
    }
    let dir = root.path().join("project");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("compose.yaml");
    std::fs::write(&file, yaml).expect("write");
    let app = Arc::new(
        berth_spec::load(&berth_spec::LoadOptions {
            files: vec![file.clone()],
            project_name: Some("bench".into()),
            working_dir: dir.clone(),
            ..Default::default()
        })
        .expect("load")
        .app,
    );
    let tasks: Vec<Assignment> = app
        .services
        .keys()
        .map(|s| Assignment {
            task_id: format!("bench-{s}"),
            project: "bench".into(),
            service: s.clone(),
            slot: Some(1),
            desired: Desired::Running,
            config_hash: "1".into(),
            restarts: 0,
            app: app.clone(),
            working_dir: dir.clone(),
            config_files: vec![file.clone()],
            stop_timeout: None,
            launch_ahead: false,
            keep_volumes: false,
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cfg = WorkerConfig::new(root.path(), &bin);
    cfg.registry.credentials = None;
    let worker = rt.block_on(Worker::open(cfg)).expect("worker");
    let wait = |what: &str, done: &dyn Fn(&Worker) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(&worker) {
            assert!(Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut rx = worker.subscribe();
    let t = Instant::now();
    rt.block_on(worker.apply(tasks));
    wait("all running", &|w| {
        let o = w.observed();
        o.len() == n && o.iter().all(|r| r.state == Observed::Running)
    });
    let up = t.elapsed();
    if std::env::var_os("BENCH_TRACE").is_some() {
        let t0 = rx.try_recv().map(|r| r.at_ms).unwrap_or(0);
        while let Ok(r) = rx.try_recv() {
            eprintln!("{:>6} ms {} {:?}", r.at_ms - t0, r.task_id, r.state);
        }
    }
    let t = Instant::now();
    rt.block_on(worker.apply(Vec::new()));
    wait("all removed", &|w| w.observed().is_empty());
    let down = t.elapsed();
    rt.block_on(worker.remove_project("bench", true)).ok();
    println!(
        "{n} chained services: up {:.0} ms, down {:.0} ms",
        up.as_secs_f64() * 1000.0,
        down.as_secs_f64() * 1000.0
    );
    drop(worker);
    rt.shutdown_background();
    let c = Containers::open(Config {
        data_root: root.path().to_path_buf(),
        run_root: PathBuf::from("/run/berth/runc"),
        runtime: bin.join("berth-runc"),
        shim: bin.join("berth-shim"),
        init: bin.join("berth-init"),
    })
    .expect("containers");
    for id in c.ids().unwrap_or_default() {
        let _ = c.remove(&id, true);
    }
    let _ = c.remove_networks();
}
