//! The worker: reconciles the tasks assigned to this node against the containers that run
//! here, and reports every change of their status.
//!
//! The caller (the daemon's dispatcher) hands [`Worker::apply`] the whole desired set for
//! the node; the worker works in the background — images per `pull_policy`, the project's
//! networks and volumes, containers created from the Compose service, started in dependency
//! waves, stopped in reverse waves (in parallel within a wave) — and sends a
//! [`StatusReport`] on every transition: exits, healthcheck verdicts, rejections. Tasks
//! missing from the set are stopped and removed.
//!
//! Every task has an async mutex: one operation at a time per task, and each operation
//! acts on the task's *latest* desired state, so overlapping `apply` calls converge.
//! Containers belong to their shims, not to the worker: dropping the worker (or killing
//! the daemon) leaves them running, and [`Worker::open`] adopts them again by their
//! `berth.task.id` label.
//!
//! Restart policies, `depends_on` conditions and replica counts are the controller's; the
//! worker never restarts a container on its own (see [`Assignment::restarts`]).

pub mod health;
pub mod image;
pub mod naming;
pub mod resources;
pub mod task;
pub mod translate;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_network::networks::{Networks, Options as NetworkOptions};
use tokio::sync::broadcast;

use crate::container::{self, Containers, Record, SharedNetworks, Status};

pub use image::{PullPolicy, RegistryConfig};
pub use resources::ProjectResources;
pub use task::{Assignment, Desired, Health, Observed, StatusReport};

use health::{HealthConfig, ImageHealthcheck, Verdicts};
use resources::ProjectStore;
use task::now_ms;
use translate::{Networking, Translated};

/// Stack of a container's exit-watch thread: it only connects to the shim and waits.
const EXIT_WATCH_STACK: usize = 256 * 1024;

/// Docker's default `stop_grace_period`.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Errors of the worker itself (task failures are reported, not returned).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    #[error("networks: {0}")]
    Network(#[from] berth_network::networks::NetworksError),
    #[error("project {project}: {reason}")]
    Project { project: String, reason: String },
    #[error("background task failed: {0}")]
    Join(String),
}

/// Where things are and how to reach registries.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `/var/lib/berth`: images, containers, volumes, network state, `worker/`.
    pub data_root: PathBuf,
    /// The runtime's state root (`/run/berth/runc`); the shims and the host-wide network
    /// lock live next to it.
    pub run_root: PathBuf,
    /// Where `berth-runc`, `berth-shim` and `berth-init` are.
    pub libexec_dir: PathBuf,
    /// `berth-init` when not in `libexec_dir` (it must be static to run inside images).
    pub init: Option<PathBuf>,
    pub registry: RegistryConfig,
    /// Settings of the node's networks (pool, nft table, DNS port); `None`: the data
    /// root's defaults (table `berth` for `/var/lib/berth`, `berth_<hash>` otherwise).
    pub network: Option<NetworkOptions>,
    /// Where the contents of Compose secrets and configs come from (`task_files`); without
    /// one, a task that uses any is rejected.
    pub files: Option<Arc<dyn crate::task_files::FileSource>>,
}

impl WorkerConfig {
    /// Defaults for a data root: run root `/run/berth/runc`, helpers in `libexec_dir`,
    /// credentials from the environment (`~/.berth/config.json`, then Docker's).
    pub fn new(data_root: impl Into<PathBuf>, libexec_dir: impl Into<PathBuf>) -> WorkerConfig {
        WorkerConfig {
            data_root: data_root.into(),
            run_root: PathBuf::from("/run/berth/runc"),
            libexec_dir: libexec_dir.into(),
            init: None,
            registry: RegistryConfig {
                credentials: berth_image::registry::CredentialStore::from_env().ok(),
                insecure_registries: Vec::new(),
            },
            network: None,
            files: None,
        }
    }

    fn container_config(&self) -> container::Config {
        container::Config {
            data_root: self.data_root.clone(),
            run_root: self.run_root.clone(),
            runtime: self.libexec_dir.join("berth-runc"),
            shim: self.libexec_dir.join("berth-shim"),
            init: self
                .init
                .clone()
                .unwrap_or_else(|| self.libexec_dir.join("berth-init")),
        }
    }
}

/// The node's reconciler. Cheap to clone; every clone drives the same state.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    containers: Containers,
    networks: Arc<Networks>,
    registry: RegistryConfig,
    pulls: image::Pulls,
    projects: ProjectStore,
    tx: broadcast::Sender<StatusReport>,
    tasks: Mutex<BTreeMap<String, Entry>>,
    data_root: PathBuf,
    network_lock: PathBuf,
    files: Option<Arc<dyn crate::task_files::FileSource>>,
    /// Per-task tmpfs mounts of secrets and configs, next to the runtime's root.
    files_root: PathBuf,
}

/// What the worker knows of one task.
struct Entry {
    /// The latest assignment; `None` for a task adopted from a container and not yet
    /// assigned again.
    assignment: Option<Assignment>,
    desired: Desired,
    project: String,
    service: String,
    status: StatusReport,
    lock: Arc<tokio::sync::Mutex<()>>,
    /// `restarts` when the container last started under this worker; `None`: never.
    started: Option<u32>,
    /// Increments on every start; exit waiters and health monitors carry the run they
    /// belong to and do nothing for an older one.
    run: u64,
    /// The run whose exit was reported already.
    exited_run: u64,
    health: Option<tokio::task::AbortHandle>,
    /// `(config_hash, restarts)` of a rejected assignment: not retried until it changes.
    rejected: Option<(String, u32)>,
    /// Compose keys not honoured for the current container: the message while it is fine.
    warnings: String,
    /// The container launched ahead of its start wave (see [`Containers::launch`]).
    launched: Option<container::Launched>,
    /// Found by [`Worker::open`] and not yet named by an `apply`.
    adopted: bool,
    /// The controller shut it down (`berth stop`): its container starts again in place
    /// when it is desired running, whatever way its last run ended.
    stopped: bool,
    /// The configuration hash and container the last successful prepare vouched for.
    prepared: Option<String>,
    prepared_container: Option<String>,
}

impl Entry {
    fn new(task_id: &str, project: &str, service: &str, desired: Desired) -> Entry {
        Entry {
            assignment: None,
            desired,
            project: project.to_string(),
            service: service.to_string(),
            status: StatusReport::new(task_id, Observed::Preparing),
            lock: Arc::default(),
            started: None,
            run: 0,
            exited_run: 0,
            health: None,
            rejected: None,
            warnings: String::new(),
            launched: None,
            adopted: false,
            stopped: false,
            prepared: None,
            prepared_container: None,
        }
    }
}

impl Worker {
    /// Opens the worker on `cfg.data_root`: the node's networks (restored: bridges, rules,
    /// DNS listeners), and every container labelled `berth.task.id` adopted as it is — a
    /// running one keeps running (its exit is watched again), one that exited while no
    /// worker watched is reported with its exit code. Must be called inside a
    /// multi-threaded tokio runtime (the container layer blocks on it from blocking threads).
    pub async fn open(cfg: WorkerConfig) -> Result<Worker, WorkerError> {
        let data_root = cfg.data_root.clone();
        let state_dir = data_root.join("network");
        std::fs::create_dir_all(&state_dir).map_err(|source| WorkerError::Io {
            op: "create directory",
            path: state_dir.clone(),
            source,
        })?;
        let mut nopts = cfg.network.clone().unwrap_or_else(|| {
            let mut o = NetworkOptions::new(&state_dir);
            o.table = container::scope(&data_root).table;
            o
        });
        nopts.state_dir = state_dir;
        let networks = Arc::new(Networks::open(nopts)?);
        networks.restore().await?;
        let containers =
            Containers::open(cfg.container_config())?.with_shared_networks(SharedNetworks {
                networks: networks.clone(),
                runtime: tokio::runtime::Handle::current(),
            });
        // removals a crash cut short finish before anything looks at the containers
        let sweeper = containers.clone();
        let finished = tokio::task::spawn_blocking(move || sweeper.finish_interrupted_removals())
            .await
            .unwrap_or_default();
        if !finished.is_empty() {
            tracing::info!(containers = ?finished, "finished interrupted removals");
        }
        let projects = ProjectStore::open(&data_root).map_err(|source| WorkerError::Io {
            op: "create directory",
            path: data_root.join("worker"),
            source,
        })?;
        let (tx, _) = broadcast::channel(1024);
        let network_lock = cfg
            .run_root
            .parent()
            .unwrap_or(Path::new("/run/berth"))
            .join("network.lock");
        let inner = Arc::new(Inner {
            containers,
            networks,
            registry: cfg.registry.clone(),
            pulls: image::Pulls::default(),
            projects,
            tx,
            tasks: Mutex::new(BTreeMap::new()),
            data_root,
            network_lock,
            files: cfg.files.clone(),
            files_root: cfg
                .run_root
                .parent()
                .unwrap_or(Path::new("/run/berth"))
                .join("files"),
        });
        inner.clone().adopt().await?;
        Ok(Worker { inner })
    }

    /// Sets the whole desired set of this node and returns at once; the work runs in the
    /// background. Tasks the worker knows that are not in `assignments` are removed.
    /// Calling it again with the same set changes nothing.
    pub async fn apply(&self, assignments: Vec<Assignment>) {
        let mut by_project: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let mut tasks = self.inner.tasks.lock().expect("tasks lock");
            let wanted: HashSet<String> = assignments.iter().map(|a| a.task_id.clone()).collect();
            for a in assignments {
                let e = tasks.entry(a.task_id.clone()).or_insert_with(|| {
                    let e = Entry::new(&a.task_id, &a.project, &a.service, a.desired);
                    let _ = self.inner.tx.send(e.status.clone());
                    e
                });
                e.desired = a.desired;
                if a.desired == Desired::Shutdown {
                    e.stopped = true;
                }
                e.project = a.project.clone();
                e.service = a.service.clone();
                if std::mem::take(&mut e.adopted) && e.run > 0 {
                    // adopted after it ran: whatever it does now counts as started at
                    // this value (running stays running, exited stays exited)
                    e.started = Some(a.restarts);
                }
                by_project
                    .entry(a.project.clone())
                    .or_default()
                    .push(a.task_id.clone());
                e.assignment = Some(a);
            }
            for (id, e) in tasks.iter_mut() {
                if !wanted.contains(id) {
                    e.desired = Desired::Remove;
                    by_project
                        .entry(e.project.clone())
                        .or_default()
                        .push(id.clone());
                }
            }
        }
        for (project, ids) in by_project {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.reconcile_project(&project, ids).await });
        }
    }

    /// Status changes as they happen (a receiver that lags loses the oldest; re-sync with
    /// [`Worker::observed`]).
    pub fn subscribe(&self) -> broadcast::Receiver<StatusReport> {
        self.inner.tx.subscribe()
    }

    /// The latest status of every task the worker knows.
    pub fn observed(&self) -> Vec<StatusReport> {
        self.inner
            .tasks
            .lock()
            .expect("tasks lock")
            .values()
            .map(|e| e.status.clone())
            .collect()
    }

    /// Removes the networks of `project` the worker made (and with `remove_volumes` its
    /// volumes, named and anonymous; never external ones). Call it after the project's
    /// tasks are gone; a network still used by a container is reported as an error.
    pub async fn remove_project(
        &self,
        project: &str,
        remove_volumes: bool,
    ) -> Result<(), WorkerError> {
        self.inner.remove_project(project, remove_volumes).await
    }

    /// Makes what a one-off container of `a`'s service (`berth run`) needs before it is
    /// created outside the worker: the service's networks and named volumes, exactly as
    /// for its tasks (the same names, labels and project records, so `up` finds them and
    /// `down` removes them), whether or not the project has any task. A one-off's
    /// anonymous volumes are its own, not the project's. Returns the warnings `up` would
    /// report for them.
    pub async fn prepare_one_off(&self, a: &Assignment) -> Result<Vec<String>, String> {
        let svc = a
            .service_spec()
            .ok_or_else(|| format!("service {} is not in the app", a.service))?;
        let mut t = translate::translate(a, svc)?;
        // only what making these networks and volumes has to say
        t.warnings.clear();
        t.volumes.retain(|(key, _)| key.is_some());
        self.inner.ensure_networks(a, &mut t).await?;
        self.inner.note_volumes(a, &mut t)?;
        Ok(t.warnings)
    }

    /// What the worker made for `project`, with Compose's labels.
    pub fn project_resources(&self, project: &str) -> ProjectResources {
        self.inner.projects.load(project)
    }

    /// Projects that have networks or volumes recorded.
    pub fn projects(&self) -> Vec<String> {
        self.inner.projects.projects()
    }

    /// The container layer the worker uses (logs, exec, inspect of task containers).
    pub fn containers(&self) -> &Containers {
        &self.inner.containers
    }

    /// The node's networks (with the embedded DNS that knows the containers' names).
    pub fn networks(&self) -> &Arc<Networks> {
        &self.inner.networks
    }
}

/// Runs a blocking container-layer call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, container::ContainerError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("background task failed: {e}")),
    }
}

impl Inner {
    fn report(&self, task_id: &str, f: impl FnOnce(&mut StatusReport)) {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        if let Some(e) = tasks.get_mut(task_id) {
            let before = e.status.clone();
            f(&mut e.status);
            let mut cmp = e.status.clone();
            cmp.at_ms = before.at_ms;
            if cmp != before {
                e.status.at_ms = now_ms();
                let _ = self.tx.send(e.status.clone());
            }
        }
    }

    fn with_entry<T>(&self, task_id: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        self.tasks
            .lock()
            .expect("tasks lock")
            .get_mut(task_id)
            .map(f)
    }

    async fn adopt(self: Arc<Self>) -> Result<(), WorkerError> {
        let containers = self.containers.clone();
        let records = tokio::task::spawn_blocking(
            move || -> Result<Vec<Record>, container::ContainerError> {
                let mut out = Vec::new();
                for mut r in containers.records()? {
                    if r.labels.contains_key(naming::LABEL_TASK) {
                        containers.observe(&mut r);
                        out.push(r);
                    }
                }
                Ok(out)
            },
        )
        .await
        .map_err(|e| WorkerError::Join(e.to_string()))??;
        for r in records {
            let task_id = r.labels[naming::LABEL_TASK].clone();
            let project = r
                .labels
                .get(naming::LABEL_PROJECT)
                .cloned()
                .unwrap_or_default();
            let service = r
                .labels
                .get(naming::LABEL_SERVICE)
                .cloned()
                .unwrap_or_default();
            let (state, exit, desired) = match r.state.status {
                Status::Running => (Observed::Running, None, Desired::Running),
                Status::Created => (Observed::Ready, None, Desired::Ready),
                Status::Exited => {
                    let code = r.state.exit_code;
                    let st = if code == 0 {
                        Observed::Complete
                    } else {
                        Observed::Failed
                    };
                    (st, Some(code), Desired::Running)
                }
            };
            let mut e = Entry::new(&task_id, &project, &service, desired);
            e.adopted = true;
            e.status.state = state;
            e.status.exit_code = exit;
            e.status.container_id = Some(r.id.clone());
            if exit.is_some() {
                e.status.message = if r.state.error.is_empty() {
                    "exited while the agent was not running".into()
                } else {
                    r.state.error.clone()
                };
            }
            e.run = 1;
            e.exited_run = if state == Observed::Running { 0 } else { 1 };
            if r.state.status == Status::Created {
                e.run = 0;
                e.exited_run = 0;
            }
            let running = state == Observed::Running;
            self.tasks
                .lock()
                .expect("tasks lock")
                .insert(task_id.clone(), e);
            let _ = self.tx.send(
                self.with_entry(&task_id, |e| e.status.clone())
                    .expect("entry"),
            );
            if running {
                self.clone().watch_exit(task_id, r.id.clone(), 1);
            }
        }
        Ok(())
    }

    /// Waits for the container's exit through its shim, then reports it. The wait blocks
    /// for the container's whole life, so it runs on a small thread of its own, not on the
    /// runtime's blocking pool: one waiter per container would exhaust the pool (and
    /// starve every other blocking call) on a node with many containers.
    fn watch_exit(self: Arc<Self>, task_id: String, container_id: String, run: u64) {
        let shim_dir = self.containers.shim_dir(&container_id);
        let wait = |shim_dir: PathBuf| {
            if let Ok(shim) = berth_shim::ShimHandle::connect(&shim_dir) {
                let _ = shim.wait();
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let own = std::thread::Builder::new()
            .name("exit-watch".into())
            .stack_size(EXIT_WATCH_STACK)
            .spawn({
                let shim_dir = shim_dir.clone();
                move || {
                    wait(shim_dir);
                    let _ = tx.send(());
                }
            });
        tokio::spawn(async move {
            match own {
                Ok(_) => {
                    let _ = rx.await;
                }
                Err(e) => {
                    tracing::debug!(task = %task_id, "no thread for the exit watch ({e}); using the blocking pool");
                    let _ = tokio::task::spawn_blocking(move || wait(shim_dir)).await;
                }
            }
            self.on_exit(&task_id, &container_id, run).await;
        });
    }

    async fn on_exit(self: Arc<Self>, task_id: &str, container_id: &str, run: u64) {
        let Some(lock) = self.with_entry(task_id, |e| e.lock.clone()) else {
            return;
        };
        let _g = lock.lock().await;
        let fresh = self.with_entry(task_id, |e| e.run == run && e.exited_run != run);
        if fresh != Some(true) {
            return;
        }
        let containers = self.containers.clone();
        let id = container_id.to_string();
        let record = match blocking(move || {
            let mut r = containers.resolve(&id)?;
            containers.observe(&mut r);
            Ok(r)
        })
        .await
        {
            Ok(r) => r,
            Err(message) => {
                // removed behind the worker's back (`berth container rm -f`)
                self.with_entry(task_id, |e| {
                    e.exited_run = e.run;
                    if let Some(h) = e.health.take() {
                        h.abort();
                    }
                });
                self.report(task_id, |s| {
                    s.state = Observed::Failed;
                    s.container_id = None;
                    s.health = Health::None;
                    s.message = format!("the container is gone: {message}");
                });
                return;
            }
        };
        if record.state.status == Status::Running {
            // the shim connection broke without an exit: watch again
            self.clone()
                .watch_exit(task_id.to_string(), container_id.to_string(), run);
            return;
        }
        self.finish_run(task_id, &record, None);
    }

    /// Reports the end of the current run of `task_id` from its container record.
    fn finish_run(&self, task_id: &str, record: &Record, shutdown: Option<bool>) {
        let code = record.state.exit_code;
        let desired = self.with_entry(task_id, |e| {
            e.exited_run = e.run;
            if let Some(h) = e.health.take() {
                h.abort();
            }
            e.desired
        });
        let stopped_on_request =
            shutdown.unwrap_or(matches!(desired, Some(Desired::Shutdown | Desired::Remove)));
        let oom = record.state.oom_killed;
        self.report(task_id, |s| {
            s.exit_code = Some(code);
            s.state = if stopped_on_request {
                Observed::Shutdown
            } else if code == 0 {
                Observed::Complete
            } else {
                Observed::Failed
            };
            s.message = if oom {
                format!("exited with code {code} (OOM-killed)")
            } else {
                format!("exited with code {code}")
            };
        });
    }

    /// Reconciles the tasks `ids` of one project: stops first (reverse dependency waves,
    /// parallel within a wave), then prepares everything that should exist (in parallel),
    /// then starts in dependency waves.
    async fn reconcile_project(self: Arc<Self>, project: &str, ids: Vec<String>) {
        let (graph, services) = {
            let tasks = self.tasks.lock().expect("tasks lock");
            let app = ids
                .iter()
                .filter_map(|id| tasks.get(id))
                .filter_map(|e| e.assignment.as_ref())
                .map(|a| a.app.clone())
                .next();
            let services: BTreeMap<String, (String, Desired)> = ids
                .iter()
                .filter_map(|id| {
                    tasks
                        .get(id)
                        .map(|e| (id.clone(), (e.service.clone(), e.desired)))
                })
                .collect();
            (app.and_then(|a| a.graph().ok()), services)
        };
        let waves = |stop: bool| -> Vec<Vec<String>> {
            let mut order = match &graph {
                Some(g) if stop => g.stop_waves(),
                Some(g) => g.start_waves(),
                None => Vec::new(),
            };
            // services the graph does not know (a removed service's tasks) go first when
            // stopping and last when starting
            let known: BTreeSet<String> = order.iter().flatten().cloned().collect();
            let unknown: Vec<String> = services
                .values()
                .map(|(s, _)| s.clone())
                .filter(|s| !known.contains(s))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !unknown.is_empty() {
                if stop {
                    order.insert(0, unknown);
                } else {
                    order.push(unknown);
                }
            }
            order
        };
        let of_services = |wave: &[String], pred: &dyn Fn(Desired) -> bool| -> Vec<String> {
            services
                .iter()
                .filter(|(_, (s, d))| wave.contains(s) && pred(*d))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let stopping = |d: Desired| matches!(d, Desired::Shutdown | Desired::Remove);
        for wave in waves(true) {
            self.clone()
                .run_all(of_services(&wave, &stopping), Step::Stop)
                .await;
        }
        // once stopped in order, removals and shutdown reports need no order
        let all_down: Vec<String> = services
            .iter()
            .filter(|(_, (_, d))| stopping(*d))
            .map(|(id, _)| id.clone())
            .collect();
        self.clone().run_all(all_down, Step::Reconcile).await;
        let all_up: Vec<String> = services
            .iter()
            .filter(|(_, (_, d))| !stopping(*d))
            .map(|(id, _)| id.clone())
            .collect();
        self.clone().run_all(all_up.clone(), Step::Prepare).await;
        // the slow half of every start (shim, runtime `create`, networks) for the whole
        // graph at once; the waves below only let the processes run
        self.clone().run_all(all_up, Step::Launch).await;
        for wave in waves(false) {
            self.clone()
                .run_all(of_services(&wave, &|d| !stopping(d)), Step::Reconcile)
                .await;
        }
        tracing::debug!(project, "reconciled");
    }

    async fn run_all(self: Arc<Self>, ids: Vec<String>, step: Step) {
        let mut set = tokio::task::JoinSet::new();
        for id in ids {
            let inner = self.clone();
            set.spawn(async move { inner.reconcile(&id, step).await });
        }
        while set.join_next().await.is_some() {}
    }

    /// Brings one task to its latest desired state (or, with `Step::Prepare`, only makes
    /// its container exist).
    async fn reconcile(self: Arc<Self>, task_id: &str, step: Step) {
        let Some(lock) = self.with_entry(task_id, |e| e.lock.clone()) else {
            return;
        };
        let _g = lock.lock().await;
        let Some((desired, assignment, status)) = self.with_entry(task_id, |e| {
            (e.desired, e.assignment.clone(), e.status.clone())
        }) else {
            return;
        };
        match desired {
            Desired::Remove | Desired::Shutdown if step == Step::Stop => {
                if status.container_id.is_some() {
                    self.stop_container(task_id, assignment.as_ref(), &status, true)
                        .await;
                }
            }
            Desired::Remove => {
                if step == Step::Reconcile {
                    self.remove_task(task_id, assignment.as_ref(), &status)
                        .await;
                }
            }
            Desired::Shutdown => {
                if step == Step::Reconcile {
                    self.stop_task(task_id, assignment.as_ref(), &status).await;
                }
            }
            Desired::Ready | Desired::Running => {
                let Some(a) = assignment else { return };
                let joins_service = a
                    .service_spec()
                    .and_then(|s| s.network_mode.as_deref())
                    .is_some_and(|m| m.starts_with("service:"));
                if matches!(step, Step::Prepare | Step::Launch) && joins_service {
                    // made in its wave, once the service whose namespace it joins runs
                    return;
                }
                if desired == Desired::Running {
                    // running, watched, and of this configuration: nothing to do, and no
                    // need to read the container from disk (every `apply` of a project
                    // passes over all its tasks, wave after wave)
                    let settled = self
                        .with_entry(task_id, |e| {
                            e.status.state == Observed::Running
                                && e.status.container_id.is_some()
                                && e.run > 0
                                && e.exited_run != e.run
                                && e.prepared.as_deref() == Some(a.config_hash.as_str())
                                && e.status.container_id == e.prepared_container
                        })
                        .unwrap_or(false);
                    if settled {
                        if step == Step::Reconcile {
                            if let Some(id) = status.container_id.as_deref() {
                                self.ensure_health(task_id, &a, id).await;
                            }
                        }
                        return;
                    }
                }
                let Some(container_id) = self.clone().prepare(task_id, &a).await else {
                    return;
                };
                self.with_entry(task_id, |e| {
                    e.prepared = Some(a.config_hash.clone());
                    e.prepared_container = Some(container_id.clone());
                });
                if step == Step::Prepare {
                    return;
                }
                if desired == Desired::Running {
                    self.clone()
                        .start_task(task_id, &a, &container_id, step == Step::Launch)
                        .await;
                } else if step == Step::Launch && a.launch_ahead {
                    // held for its dependencies: ready to run the moment it is released
                    self.clone()
                        .start_task(task_id, &a, &container_id, true)
                        .await;
                }
            }
        }
    }

    /// Makes the task's container exist with the assignment's configuration; returns its
    /// id, or `None` when the task was rejected.
    async fn prepare(self: Arc<Self>, task_id: &str, a: &Assignment) -> Option<String> {
        let key = (a.config_hash.clone(), a.restarts);
        let (current, rejected, started) = self.with_entry(task_id, |e| {
            (e.status.container_id.clone(), e.rejected.clone(), e.started)
        })?;
        if rejected.as_ref() == Some(&key) {
            return None;
        }
        if current.is_none() && started.is_some_and(|at| a.restarts <= at) {
            // it ran and its container is gone (replaced, or removed behind our back): a
            // new container only for a restart
            return None;
        }
        if let Some(id) = current {
            let containers = self.containers.clone();
            let q = id.clone();
            match blocking(move || containers.resolve(&q)).await {
                Ok(r) if r.labels.get(naming::LABEL_CONFIG_HASH) == Some(&a.config_hash) => {
                    return Some(id);
                }
                Ok(r) => {
                    // the configuration changed: recreate
                    let status = self.with_entry(task_id, |e| e.status.clone())?;
                    self.stop_container(task_id, Some(a), &status, true).await;
                    let _ = self.remove_container(&r.id, false).await;
                    self.report(task_id, |s| {
                        s.container_id = None;
                        s.exit_code = None;
                        s.health = Health::None;
                    });
                    self.with_entry(task_id, |e| e.started = None);
                }
                Err(_) => {
                    // removed behind our back
                    self.report(task_id, |s| s.container_id = None);
                    self.with_entry(task_id, |e| e.started = None);
                }
            }
        }
        self.report(task_id, |s| {
            s.state = Observed::Preparing;
            s.exit_code = None;
            s.message.clear();
        });
        match self.create(task_id, a).await {
            Ok((id, warnings)) => {
                for w in &warnings {
                    tracing::warn!(task = task_id, "{w}");
                }
                let warnings = warnings.join("; ");
                self.with_entry(task_id, |e| e.warnings = warnings.clone());
                self.report(task_id, |s| {
                    s.container_id = Some(id.clone());
                    s.state = Observed::Ready;
                    s.message = warnings;
                });
                Some(id)
            }
            Err(message) => {
                tracing::warn!(task = task_id, %message, "task rejected");
                self.with_entry(task_id, |e| e.rejected = Some(key));
                self.report(task_id, |s| {
                    s.state = Observed::Rejected;
                    s.message = message;
                });
                None
            }
        }
    }

    /// Image, networks, volumes, then the container (created, not started).
    async fn create(&self, task_id: &str, a: &Assignment) -> Result<(String, Vec<String>), String> {
        let svc = a
            .service_spec()
            .ok_or_else(|| format!("service {} is not in the app", a.service))?;
        let mut t = translate::translate(a, svc)?;
        self.mount_task_files(task_id, a, svc, &mut t.options.mounts)
            .await?;
        let policy = PullPolicy::parse(svc.pull_policy.as_deref())?;
        image::ensure(
            &self.containers,
            &self.registry,
            &self.pulls,
            &t.options.image,
            policy,
        )
        .await?;
        // networks first: the resolver is the first network's gateway
        self.ensure_networks(a, &mut t).await?;
        match &t.networking {
            Networking::Service(name) => {
                let target = self.running_container_of(&a.project, name).ok_or_else(|| {
                    format!("network_mode service:{name}: no running container of service {name}")
                })?;
                t.options.network_from = Some(target);
            }
            Networking::Container(name) => {
                let containers = self.containers.clone();
                let q = name.clone();
                let r = blocking(move || containers.resolve(&q))
                    .await
                    .map_err(|e| format!("network_mode container:{name}: {e}"))?;
                t.options.network_from = Some(r.id);
            }
            Networking::Networks(_) | Networking::Host | Networking::None => {}
        }
        self.note_volumes(a, &mut t)?;
        let name = naming::container_name(a);
        t.options.name = Some(name.clone());
        self.clear_stale_name(&name).await?;
        let containers = self.containers.clone();
        let opts = t.options;
        let record = blocking(move || containers.create(opts)).await?;
        tracing::debug!(task = task_id, container = %record.id, "created");
        Ok((record.id, t.warnings))
    }

    /// The project networks the translated service joins, made (or found) with Compose's
    /// names and labels and recorded with the project; the first one's gateway becomes
    /// the container's resolver.
    async fn ensure_networks(&self, a: &Assignment, t: &mut Translated) -> Result<(), String> {
        let Networking::Networks(list) = &t.networking else {
            return Ok(());
        };
        for (i, (key, att)) in list.iter().enumerate() {
            let def = a.app.networks.get(key).cloned().unwrap_or_default();
            let (net, warnings) = resources::ensure_network(
                &self.networks,
                &self.projects,
                &self.network_lock,
                &a.project,
                key,
                &att.network,
                &def,
            )
            .await?;
            t.warnings.extend(warnings);
            if i == 0 {
                t.options.resolver = Some(net.gateway_v4.to_string());
            }
        }
        Ok(())
    }

    /// Records the volumes the translated service mounts with the project (the container
    /// layer creates them when the container is made).
    fn note_volumes(&self, a: &Assignment, t: &mut Translated) -> Result<(), String> {
        for (key, name) in &t.volumes {
            let def = key.as_ref().and_then(|k| a.app.volumes.get(k));
            let w = resources::note_volume(
                &self.projects,
                &self.data_root,
                &a.project,
                key.as_deref(),
                name,
                def,
            )?;
            t.warnings.extend(w);
        }
        Ok(())
    }

    /// Secrets and configs: fetched for this task, written to its tmpfs, bind-mounted.
    async fn mount_task_files(
        &self,
        task_id: &str,
        a: &Assignment,
        svc: &berth_spec::model::Service,
        mounts: &mut Vec<container::options::MountSpec>,
    ) -> Result<(), String> {
        let wanted = crate::task_files::wanted(&a.app, svc)?;
        if wanted.is_empty() {
            return Ok(());
        }
        let source = self
            .files
            .as_ref()
            .ok_or("secrets and configs are not available on this node")?;
        let files = source.fetch(task_id, &a.project).await?;
        let (root, id) = (self.files_root.clone(), task_id.to_owned());
        let specs = tokio::task::spawn_blocking(move || {
            crate::task_files::materialize(&root, &id, &wanted, &files)
        })
        .await
        .map_err(|e| format!("background task failed: {e}"))??;
        mounts.extend(specs);
        Ok(())
    }

    /// A container holding the name this task's container needs: one of a task the worker
    /// no longer knows, or of a task of the same slot that is going or gone (the
    /// controller replaces a failed task with a new one), is stopped and removed; a
    /// container of a task that should still run keeps it, and this task is rejected.
    async fn clear_stale_name(&self, name: &str) -> Result<(), String> {
        let containers = self.containers.clone();
        let q = name.to_string();
        let Ok(r) = blocking(move || containers.resolve(&q)).await else {
            return Ok(());
        };
        if r.name != name {
            return Ok(());
        }
        let in_use = || {
            Err(format!(
                "the container name {name} is already in use by container {}",
                r.short_id()
            ))
        };
        let Some(owner) = r.labels.get(naming::LABEL_TASK).cloned() else {
            return in_use();
        };
        let holder = self.with_entry(&owner, |e| {
            let holds = e.status.container_id.as_deref() == Some(r.id.as_str());
            let going = matches!(e.desired, Desired::Shutdown | Desired::Remove)
                || e.status.state.is_terminal();
            (holds, going, e.lock.clone(), e.assignment.clone())
        });
        match holder {
            Some((true, false, ..)) => in_use(),
            Some((true, true, lock, assignment)) => {
                let _g = lock.lock().await;
                let status = self.with_entry(&owner, |e| e.status.clone());
                if let Some(status) = status.filter(|s| s.container_id.as_deref() == Some(&r.id)) {
                    self.stop_container(&owner, assignment.as_ref(), &status, true)
                        .await;
                    self.remove_container(&r.id, false).await?;
                    self.report(&owner, |s| {
                        s.container_id = None;
                        s.health = Health::None;
                        s.message = "its container was replaced by a newer task's".into();
                    });
                }
                Ok(())
            }
            _ => {
                let containers = self.containers.clone();
                let id = r.id.clone();
                blocking(move || {
                    containers.stop(&id, Duration::from_secs(1))?;
                    containers.remove(&id, true)
                })
                .await
            }
        }
    }

    fn running_container_of(&self, project: &str, service: &str) -> Option<String> {
        self.tasks
            .lock()
            .expect("tasks lock")
            .values()
            .filter(|e| e.project == project && e.service == service)
            .find(|e| e.status.state == Observed::Running)
            .and_then(|e| e.status.container_id.clone())
    }

    /// Starts the task's container if it should run and does not; with `launch_only`, only
    /// its first half ([`Containers::launch`]), kept for the start wave.
    async fn start_task(
        self: Arc<Self>,
        task_id: &str,
        a: &Assignment,
        container_id: &str,
        launch_only: bool,
    ) {
        let containers = self.containers.clone();
        let q = container_id.to_string();
        let Ok(record) = blocking(move || {
            let mut r = containers.resolve(&q)?;
            containers.observe(&mut r);
            Ok(r)
        })
        .await
        else {
            return;
        };
        let (started, run, exited_run) =
            match self.with_entry(task_id, |e| (e.started, e.run, e.exited_run)) {
                Some(x) => x,
                None => return,
            };
        if record.state.status == Status::Running {
            if run == 0 || exited_run == run {
                // running, but not watched (adopted before its assignment came)
                let run = self.with_entry(task_id, |e| {
                    e.run += 1;
                    e.started.get_or_insert(a.restarts);
                    e.run
                });
                if let Some(run) = run {
                    self.clone()
                        .watch_exit(task_id.to_string(), container_id.to_string(), run);
                }
            }
            self.ensure_health(task_id, a, container_id).await;
            return;
        }
        // a container the controller stopped starts again when it wants it running; one
        // that ended on its own only when `restarts` grew (the restart policy is the
        // controller's)
        let (shut_down, launched) = self
            .with_entry(task_id, |e| {
                (
                    e.status.state == Observed::Shutdown || e.stopped,
                    e.launched.as_ref().is_some_and(|l| l.id() == container_id),
                )
            })
            .unwrap_or_default();
        // launched ahead of its wave: the decision was made then
        let may_start = launched
            || match started {
                None => true,
                Some(at) => a.restarts > at || shut_down,
            };
        if !may_start {
            return;
        }
        if launch_only && launched {
            // an overlapping `apply` launched it already: its start wave runs it
            return;
        }
        // a task launched while held for its dependencies is not starting yet
        let held = self.with_entry(task_id, |e| e.desired == Desired::Ready) == Some(true);
        if !held {
            self.report(task_id, |s| {
                s.state = Observed::Starting;
                s.exit_code = None;
                s.health = Health::None;
            });
        }
        let containers = self.containers.clone();
        let q = container_id.to_string();
        if launch_only {
            match blocking(move || containers.launch(&q)).await {
                Ok(l) => {
                    self.with_entry(task_id, |e| e.launched = Some(l));
                    return;
                }
                Err(message) => {
                    self.with_entry(task_id, |e| e.started = Some(a.restarts));
                    self.report(task_id, |s| {
                        s.state = Observed::Failed;
                        s.message = message;
                    });
                    return;
                }
            }
        }
        let launched = self
            .with_entry(task_id, |e| e.launched.take())
            .flatten()
            .filter(|l| l.id() == container_id);
        let result = blocking(move || match launched {
            Some(l) => containers.run_launched(l, false).map(|s| s.record),
            None => containers.start(&q, false).map(|s| s.record),
        })
        .await;
        match result {
            Ok(_) => {
                let run = self
                    .with_entry(task_id, |e| {
                        e.run += 1;
                        e.started = Some(a.restarts);
                        e.stopped = false;
                        e.run
                    })
                    .unwrap_or(0);
                let warnings = self
                    .with_entry(task_id, |e| e.warnings.clone())
                    .unwrap_or_default();
                self.report(task_id, |s| {
                    s.state = Observed::Running;
                    s.message = warnings;
                });
                self.clone()
                    .watch_exit(task_id.to_string(), container_id.to_string(), run);
                self.ensure_health(task_id, a, container_id).await;
            }
            Err(message) => {
                self.with_entry(task_id, |e| e.started = Some(a.restarts));
                self.report(task_id, |s| {
                    s.state = Observed::Failed;
                    s.message = message;
                });
            }
        }
    }

    /// Starts the health monitor of the current run if the task has a healthcheck and none
    /// runs.
    async fn ensure_health(self: &Arc<Self>, task_id: &str, a: &Assignment, container_id: &str) {
        let has = self.with_entry(task_id, |e| {
            e.health.as_ref().is_some_and(|h| !h.is_finished())
        });
        if has != Some(false) {
            return;
        }
        let image_hc = self.image_healthcheck(container_id);
        let svc_hc = a.service_spec().and_then(|s| s.healthcheck.as_ref());
        let cfg = match HealthConfig::resolve(svc_hc, image_hc.as_ref()) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(message) => {
                self.report(task_id, |s| s.message = message);
                return;
            }
        };
        let run = self.with_entry(task_id, |e| e.run).unwrap_or(0);
        self.report(task_id, |s| s.health = Health::Starting);
        let inner = self.clone();
        let tid = task_id.to_string();
        let cid = container_id.to_string();
        let handle = tokio::spawn(async move { inner.monitor(tid, cid, cfg, run).await });
        self.with_entry(task_id, |e| e.health = Some(handle.abort_handle()));
    }

    fn image_healthcheck(&self, container_id: &str) -> Option<ImageHealthcheck> {
        let r = self.containers.resolve(container_id).ok()?;
        let digest = berth_image::Digest::parse(&r.image_id).ok()?;
        let bytes = self.containers.store().read_blob(&digest).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        ImageHealthcheck::from_config(&v)
    }

    async fn monitor(
        self: Arc<Self>,
        task_id: String,
        container_id: String,
        cfg: HealthConfig,
        run: u64,
    ) {
        let began = tokio::time::Instant::now();
        let mut verdicts = Verdicts::new(cfg.retries);
        loop {
            tokio::time::sleep(cfg.wait_before_probe(began.elapsed(), verdicts.health)).await;
            let current = self.with_entry(&task_id, |e| e.run == run && e.exited_run != run);
            if current != Some(true) {
                return;
            }
            let containers = self.containers.clone();
            let cid = container_id.clone();
            let args = cfg.args.clone();
            let cmd = tokio::task::spawn_blocking(move || {
                containers.exec_command(
                    &cid,
                    &container::ExecOptions {
                        args,
                        ..Default::default()
                    },
                )
            })
            .await;
            let ok = match cmd {
                Ok(Ok(cmd)) => health::probe(cmd, cfg.timeout).await,
                _ => false,
            };
            let in_start = began.elapsed() < cfg.start_period;
            if let Some(h) = verdicts.record(ok, in_start) {
                let current = self.with_entry(&task_id, |e| e.run == run && e.exited_run != run);
                if current != Some(true) {
                    return;
                }
                self.report(&task_id, |s| s.health = h);
            }
        }
    }

    /// Stops the task's container (if it runs) and reports `Shutdown`.
    async fn stop_task(&self, task_id: &str, a: Option<&Assignment>, status: &StatusReport) {
        if status.container_id.is_none() {
            if !status.state.is_terminal() {
                self.report(task_id, |s| {
                    s.state = Observed::Shutdown;
                    s.message.clear();
                });
            }
            return;
        }
        self.stop_container(task_id, a, status, true).await;
        if !matches!(
            self.with_entry(task_id, |e| e.status.state),
            Some(s) if s.is_terminal()
        ) {
            self.report(task_id, |s| s.state = Observed::Shutdown);
        }
    }

    /// The service's `stop_signal` (set on the container at create), then SIGKILL after
    /// `stop_grace_period`; reports the exit of the current run.
    async fn stop_container(
        &self,
        task_id: &str,
        a: Option<&Assignment>,
        status: &StatusReport,
        on_request: bool,
    ) {
        // a process launched ahead of its wave never ran; stopping leaves it created
        self.with_entry(task_id, |e| e.launched = None);
        let Some(id) = status.container_id.clone() else {
            return;
        };
        let grace = a
            .and_then(|a| a.stop_timeout)
            .or_else(|| {
                a.and_then(|a| a.service_spec())
                    .and_then(|s| s.stop_grace_period)
                    .map(|d| d.as_std())
            })
            .unwrap_or(DEFAULT_GRACE);
        // no new connections by name while it stops
        if let Ok(r) = self.containers.resolve(&id) {
            for ep in &r.endpoints {
                if let Err(e) = self.networks.unregister_names(&ep.network, &r.id).await {
                    tracing::debug!(container = %r.id, "dropping DNS names before the stop: {e}");
                }
            }
        }
        let containers = self.containers.clone();
        let was_running = self.with_entry(task_id, |e| e.run > 0 && e.exited_run != e.run);
        let result = blocking(move || containers.stop(&id, grace)).await;
        if let Ok(record) = result {
            if was_running == Some(true) {
                self.finish_run(task_id, &record, Some(on_request));
            }
        }
    }

    /// Removes the container, and its anonymous volumes unless `keep_volumes` (then they
    /// stay recorded with the project, for `remove_project` with volumes).
    async fn remove_container(&self, id: &str, keep_volumes: bool) -> Result<(), String> {
        let containers = self.containers.clone();
        let q = id.to_string();
        let record = blocking(move || containers.resolve(&q)).await?;
        let containers = self.containers.clone();
        let q = id.to_string();
        blocking(move || containers.remove(&q, true)).await?;
        if keep_volumes {
            return Ok(());
        }
        // anonymous volumes go with their container
        let vols = crate::volume::Volumes::open(&self.data_root).map_err(|e| e.to_string())?;
        for m in &record.mounts {
            if let Some(name) = m.name.as_deref().filter(|n| n.starts_with("anon-")) {
                let _ = vols.remove(name);
                let project = record
                    .labels
                    .get(naming::LABEL_PROJECT)
                    .cloned()
                    .unwrap_or_default();
                let _ = self.projects.update(&project, |r| {
                    r.volumes.remove(name);
                });
            }
        }
        Ok(())
    }

    async fn remove_task(&self, task_id: &str, a: Option<&Assignment>, status: &StatusReport) {
        if let Some(id) = status.container_id.clone() {
            self.stop_container(task_id, a, status, true).await;
            let keep = a.is_some_and(|a| a.keep_volumes);
            if let Err(message) = self.remove_container(&id, keep).await {
                self.report(task_id, |s| s.message = message);
            }
        }
        crate::task_files::release(&self.files_root, task_id);
        self.report(task_id, |s| {
            s.state = Observed::Removed;
            s.container_id = None;
            s.health = Health::None;
        });
        let mut tasks = self.tasks.lock().expect("tasks lock");
        if tasks
            .get(task_id)
            .is_some_and(|e| e.desired == Desired::Remove)
        {
            if let Some(e) = tasks.remove(task_id) {
                if let Some(h) = e.health {
                    h.abort();
                }
            }
        }
    }

    async fn remove_project(&self, project: &str, remove_volumes: bool) -> Result<(), WorkerError> {
        let res = self.projects.load(project);
        let mut errors = Vec::new();
        for (id, r) in &res.networks {
            if r.external {
                continue;
            }
            let lock = resources::host_lock(&self.network_lock, &self.networks)
                .await
                .map_err(|reason| WorkerError::Project {
                    project: project.into(),
                    reason,
                })?;
            match self.networks.remove_network(id).await {
                Ok(()) => {
                    let _ = self.projects.update(project, |r| {
                        r.networks.remove(id);
                    });
                }
                Err(e) => errors.push(format!("network {id}: {e}")),
            }
            drop(lock);
        }
        if remove_volumes {
            let vols = crate::volume::Volumes::open(&self.data_root).map_err(|e| {
                WorkerError::Project {
                    project: project.into(),
                    reason: e.to_string(),
                }
            })?;
            for (name, r) in &res.volumes {
                if r.external {
                    continue;
                }
                match vols.remove(name) {
                    Ok(()) | Err(crate::volume::VolumeError::NotFound(_)) => {
                        let _ = self.projects.update(project, |r| {
                            r.volumes.remove(name);
                        });
                    }
                    Err(e) => errors.push(format!("volume {name}: {e}")),
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(WorkerError::Project {
                project: project.into(),
                reason: errors.join("; "),
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Only make the container exist.
    Prepare,
    /// Make it exist and launch its process (runtime `create`, networks), not run it.
    Launch,
    /// Only stop the container (for tasks going down).
    Stop,
    /// Everything the desired state asks.
    Reconcile,
}

// The daemon shares one worker between its tasks.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Worker>();
};
