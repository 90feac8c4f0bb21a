//! `berth up`: load the project, deploy it to the daemon (which converges it by each
//! service's configuration hash), then follow its tasks until they run (`-d`), are healthy
//! (`--wait`), or — attached — stream their output until Ctrl-C (which stops the app) or, with
//! `--abort-on-container-exit`, until the first container stops.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use berth_api::v1::{self, DeployOptions, DeployRequest, PsRequest, TaskState};
use clap::Args;

use super::client::Session;
use super::progress::Display;
use super::render::{LogPrefixer, parse_scale};
use super::{Context, logs, project};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Detached: start the containers and return
    #[arg(short, long)]
    pub detach: bool,
    /// Wait until services are running and healthy (implies -d)
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait with --wait (default: no limit)
    #[arg(long, value_name = "SECONDS")]
    pub wait_timeout: Option<u64>,
    /// Number of containers of a service (SERVICE=N, repeatable)
    #[arg(long, value_name = "SERVICE=N")]
    pub scale: Vec<String>,
    /// Recreate containers even if their configuration did not change
    #[arg(long, conflicts_with = "no_recreate")]
    pub force_recreate: bool,
    /// Keep existing containers even if their configuration changed
    #[arg(long)]
    pub no_recreate: bool,
    /// Remove containers of services no longer in the Compose file
    #[arg(long)]
    pub remove_orphans: bool,
    /// Do not start the named services' dependencies
    #[arg(long)]
    pub no_deps: bool,
    /// Pull images: always, missing, never (default: each service's pull_policy)
    #[arg(long, value_parser = ["always", "missing", "never", "build"])]
    pub pull: Option<String>,
    /// Create the containers without starting them
    #[arg(long)]
    pub no_start: bool,
    /// Build the images of services with a `build:` section before starting
    #[arg(long, conflicts_with = "no_build")]
    pub build: bool,
    /// Never build: a service whose image is missing fails instead
    #[arg(long)]
    pub no_build: bool,
    /// Stop every container when any container stops (attached mode)
    #[arg(long, conflicts_with = "detach")]
    pub abort_on_container_exit: bool,
    /// Return this service's exit code (implies --abort-on-container-exit)
    #[arg(long, value_name = "SERVICE", conflicts_with = "detach")]
    pub exit_code_from: Option<String>,
    /// Seconds to wait for containers to stop (recreated ones, and all on Ctrl-C or an exit)
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<u32>,
    /// Only these services (and their dependencies)
    pub services: Vec<String>,
}

pub fn run(ctx: &Context, args: UpArgs) -> anyhow::Result<ExitCode> {
    let mut loaded = project::load(&ctx.project)?;
    build_images(ctx, &mut loaded.app, &args)?;
    let app = &loaded.app;
    let scale = parse_scale(&args.scale)?;
    for name in args
        .services
        .iter()
        .chain(scale.keys())
        .chain(args.exit_code_from.iter())
    {
        if !app.services.contains_key(name) {
            bail!("no such service: {name}");
        }
    }
    let session = Session::open(&ctx.conn)?;
    let mut display = Display::new(ctx.progress, "Running");
    for name in app.networks.keys() {
        display.set(
            "Network",
            &format!("{}_{name}", app.name),
            "Creating",
            false,
        );
    }
    for name in app.volumes.keys() {
        display.set("Volume", &format!("{}_{name}", app.name), "Creating", false);
    }
    let request = DeployRequest {
        project: app.name.clone(),
        app_json: app.to_json(),
        working_dir: loaded.working_dir.display().to_string(),
        config_files: loaded
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        options: Some(DeployOptions {
            services: args.services.clone(),
            scale: scale.into_iter().collect(),
            force_recreate: args.force_recreate,
            no_recreate: args.no_recreate,
            remove_orphans: args.remove_orphans,
            no_deps: args.no_deps,
            no_start: args.no_start,
            pull: args.pull.clone().unwrap_or_default(),
            timeout_seconds: args.timeout,
        }),
        files: crate::cli::app_files::collect(app)?,
    };
    let mut compose = session.compose.clone();
    let deployed = session
        .call(compose.deploy(request))
        .with_context(|| format!("deploying {}", app.name))?;
    for name in app.networks.keys() {
        display.set("Network", &format!("{}_{name}", app.name), "Created", true);
    }
    for name in app.volumes.keys() {
        display.set("Volume", &format!("{}_{name}", app.name), "Created", true);
    }
    if args.remove_orphans {
        for orphan in &deployed.orphans {
            display.set("Service", orphan, "Removed (orphan)", true);
        }
    } else if !deployed.orphans.is_empty() {
        let tasks = session
            .call(compose.ps(PsRequest {
                project: app.name.clone(),
                services: deployed.orphans.clone(),
                all: true,
            }))?
            .tasks;
        orphan_warning(&app.name, &tasks);
    }
    // replicas and configuration hash per service: until the orchestrator has replaced a
    // changed service's tasks, the old ones still run and must not count
    let expected: BTreeMap<String, (u32, String)> = deployed
        .services
        .iter()
        .filter(|s| s.change() != v1::service_change::Change::Removed)
        .map(|s| (s.service.clone(), (s.replicas, s.config_hash.clone())))
        .collect();
    let goal = if args.no_start {
        Goal::Created
    } else if args.wait {
        Goal::Healthy
    } else {
        Goal::Started
    };
    let deadline = args
        .wait_timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let restarting: BTreeSet<String> = app
        .services
        .iter()
        .filter(|(_, s)| restarts(s))
        .map(|(name, _)| name.clone())
        .collect();
    converge(
        &session,
        &app.name,
        &expected,
        &restarting,
        goal,
        deadline,
        &mut display,
    )?;
    if args.detach || args.wait || args.no_start {
        return Ok(ExitCode::SUCCESS);
    }
    attach(&session, &app.name, &args)
}

/// Compose's warning about containers of services the file no longer has.
pub fn orphan_warning(project: &str, tasks: &[v1::Task]) {
    let mut names: Vec<String> = tasks
        .iter()
        .filter(|t| !t.container_name.is_empty())
        .map(|t| container_name(project, t))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return;
    }
    eprintln!(
        "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed \
         this service in your compose file, you can run this command with the \
         --remove-orphans flag to clean it up.",
        names.join(" ")
    );
}

/// What `up` waits for before it returns (detached) or attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Created,
    Started,
    Healthy,
}

/// A task's line on the progress board, and whether it reached the goal. A failure is an
/// error unless a restart policy will replace the task.
pub fn task_progress(task: &v1::Task, goal: Goal) -> (String, bool) {
    let state = task.state();
    let health = task.health();
    match state {
        TaskState::TaskRunning => match (goal, health) {
            (Goal::Healthy, v1::Health::Starting) => ("Waiting (health)".into(), false),
            (Goal::Healthy, v1::Health::Unhealthy) => ("Unhealthy".into(), false),
            (Goal::Healthy, v1::Health::Healthy) => ("Healthy".into(), true),
            _ => ("Started".into(), true),
        },
        TaskState::TaskComplete => (format!("Exited ({})", task.exit_code.unwrap_or(0)), true),
        TaskState::TaskFailed | TaskState::TaskRejected => {
            let text = if task.message.is_empty() {
                format!("Exited ({})", task.exit_code.unwrap_or(-1))
            } else {
                format!("Error: {}", task.message)
            };
            // `up -d` is done with a container once it was started, whatever came after
            let started = task.started_at.is_some() || task.exit_code.is_some();
            (
                text,
                goal == Goal::Created || (goal == Goal::Started && started),
            )
        }
        TaskState::TaskNew | TaskState::TaskPending | TaskState::TaskAssigned
            if !task.message.is_empty() =>
        {
            // held (by depends_on or --no-start): created once its container exists
            (
                format!("Waiting ({})", task.message),
                goal == Goal::Created && !task.container_id.is_empty(),
            )
        }
        // held before its start (`--no-start`) once its container exists
        TaskState::TaskPreparing if goal == Goal::Created && task.container_status == "created" => {
            ("Created".into(), true)
        }
        TaskState::TaskPreparing => ("Creating".into(), false),
        TaskState::TaskStarting => ("Starting".into(), goal == Goal::Created),
        _ if goal == Goal::Created && !task.container_id.is_empty() => ("Created".into(), true),
        _ => ("Waiting".into(), false),
    }
}

/// A task that counts now: desired to run (or held until its dependencies are ready).
pub fn is_current(task: &v1::Task) -> bool {
    matches!(
        task.desired(),
        v1::DesiredState::DesiredRunning | v1::DesiredState::DesiredReady
    )
}

/// The container name a task shows under.
pub fn container_name(project: &str, task: &v1::Task) -> String {
    if task.container_name.is_empty() {
        format!("{project}-{}-{}", task.service, task.slot)
    } else {
        task.container_name.clone()
    }
}

/// Whether a failed container of this service is replaced (`restart` other than `no`, or a
/// `deploy.restart_policy` whose condition is not `none`).
pub fn restarts(service: &berth_spec::model::Service) -> bool {
    let by_restart = service
        .restart
        .as_deref()
        .is_some_and(|r| !r.is_empty() && r != "no");
    let by_deploy = service
        .deploy
        .as_ref()
        .and_then(|d| d.restart_policy.as_ref())
        .is_some_and(|p| p.condition.as_deref() != Some("none"));
    by_restart || by_deploy
}

/// The first of `services` whose rolling update gave up (paused, or rolled back to its
/// previous configuration), as one line with the orchestrator's reason.
fn update_given_up(
    session: &Session,
    project: &str,
    services: &[&str],
) -> anyhow::Result<Option<String>> {
    let listed = session
        .call(session.services.clone().list(v1::ServiceListRequest {
            app: project.to_owned(),
        }))?
        .services;
    Ok(listed
        .iter()
        .filter(|s| services.contains(&s.service.as_str()))
        .find_map(|s| {
            let what = match s.update_state.as_str() {
                "paused" => "its update is paused",
                "rollback_completed" => "its update was rolled back to the previous configuration",
                "rollback_paused" => "its update's rollback is paused",
                _ => return None,
            };
            let why = if s.update_message.is_empty() {
                String::new()
            } else {
                format!(": {}", s.update_message)
            };
            Some(format!(
                "service {} did not reach its new configuration, {what}{why}",
                s.service
            ))
        }))
}

/// Polls the app's tasks until each expected service has its replicas, of the deployed
/// configuration, at the goal. A failed task of a service that is not restarted ends the
/// wait at once.
fn converge(
    session: &Session,
    project: &str,
    expected: &BTreeMap<String, (u32, String)>,
    restarting: &BTreeSet<String>,
    goal: Goal,
    deadline: Option<Instant>,
    display: &mut Display,
) -> anyhow::Result<()> {
    let mut compose = session.compose.clone();
    let mut polls = 0u32;
    loop {
        let tasks = session
            .call(compose.ps(PsRequest {
                project: project.to_owned(),
                services: expected.keys().cloned().collect(),
                all: false,
            }))?
            .tasks;
        let mut done: BTreeMap<&str, u32> = BTreeMap::new();
        let mut failed = Vec::new();
        let mut dead: BTreeSet<&str> = BTreeSet::new();
        for task in tasks.iter().filter(|t| is_current(t)) {
            let (text, ok) = task_progress(task, goal);
            let name = container_name(project, task);
            if matches!(
                task.state(),
                TaskState::TaskFailed | TaskState::TaskRejected
            ) {
                failed.push(format!("{name}: {text}"));
                if !restarting.contains(&task.service) {
                    dead.insert(task.service.as_str());
                }
            }
            display.set("Container", &name, &text, ok);
            let deployed = expected
                .get(&task.service)
                .is_none_or(|(_, hash)| hash.is_empty() || *hash == task.config_hash);
            if ok && deployed {
                *done.entry(task.service.as_str()).or_default() += 1;
            }
        }
        // a failure ends the wait when it can no longer be reached: `--wait` needs every
        // service up; otherwise only a dependent waiting on a dead service is stuck
        let stuck = tasks.iter().filter(|t| is_current(t)).any(|t| {
            dead.iter()
                .any(|svc| t.message.contains(&format!("for {svc} ")))
        });
        if goal != Goal::Created && !dead.is_empty() && (goal == Goal::Healthy || stuck) {
            bail!("{project} did not start: {}", failed.join("; "));
        }
        let behind: Vec<&str> = expected
            .iter()
            .filter(|(svc, (n, _))| done.get(svc.as_str()).copied().unwrap_or(0) < *n)
            .map(|(svc, _)| svc.as_str())
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        // an update that paused or rolled back never brings the new configuration: say so
        // instead of waiting for it (asked only once the fast path is over)
        polls += 1;
        if polls % 25 == 0 {
            if let Some(reason) = update_given_up(session, project, &behind)? {
                bail!("{project}: {reason}");
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let detail = if failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", failed.join("; "))
            };
            bail!("{project} did not reach the goal in time{detail}");
        }
        // short: the answer is read from the daemon's memory, and every poll interval
        // is time added to `up`
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Attached mode: stream the app's output until Ctrl-C (stop the app, exit 130), the first
/// container stops (`--abort-on-container-exit`), or every container has stopped.
fn attach(session: &Session, project: &str, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let abort = args.abort_on_container_exit || args.exit_code_from.is_some();
    let mut compose = session.compose.clone();
    let request = v1::LogsRequest {
        project: project.to_owned(),
        services: args.services.clone(),
        follow: true,
        tail: None,
        since: None,
        until: None,
        timestamps: false,
    };
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let outcome: anyhow::Result<Ending> = session.rt.block_on(async {
        let mut stream = compose
            .logs(request)
            .await
            .map_err(super::client::status_error)?
            .into_inner();
        let mut prefixer = LogPrefixer::new([], color);
        let mut poll = tokio::time::interval(Duration::from_millis(250));
        let mut ps_client = compose.clone();
        // One listener for the whole stream: a signal that arrives while a branch below is
        // awaiting (the `ps` poll) stays pending on it instead of being missed.
        let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("listening for Ctrl-C")?;
        loop {
            tokio::select! {
                _ = interrupt.recv() => return Ok(Ending::Interrupted),
                line = stream.message() => match line {
                    Ok(Some(line)) => logs::print_line(&mut prefixer, &line, false, true),
                    Ok(None) => return Ok(Ending::AllExited),
                    Err(status) => return Err(super::client::status_error(status)),
                },
                _ = poll.tick() => {
                    let tasks = ps_client
                        .ps(PsRequest { project: project.to_owned(), services: args.services.clone(), all: false })
                        .await
                        .map_err(super::client::status_error)?
                        .into_inner()
                        .tasks;
                    if let Some(end) = ending(&tasks, abort, args.exit_code_from.as_deref()) {
                        return Ok(end);
                    }
                }
            }
        }
    });
    let _ = std::io::stdout().flush();
    let ending = outcome?;
    let code = match ending {
        Ending::Interrupted => {
            eprintln!("Gracefully stopping... (the app's containers are stopped)");
            130
        }
        Ending::Aborted(code) => {
            eprintln!("Aborting on container exit...");
            code
        }
        Ending::AllExited => return Ok(ExitCode::SUCCESS),
    };
    let mut compose = session.compose.clone();
    session.call(compose.service_action(v1::ServiceActionRequest {
        project: project.to_owned(),
        action: v1::Action::Stop as i32,
        services: Vec::new(),
        timeout_seconds: args.timeout,
        signal: String::new(),
        remove_volumes: false,
    }))?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Interrupted,
    Aborted(i32),
    AllExited,
}

/// Whether attached mode is over: with `abort`, at the first stopped container (its exit
/// code, or `exit_code_from`'s); without, once every container of the app has stopped and
/// none is to be restarted.
fn ending(tasks: &[v1::Task], abort: bool, exit_code_from: Option<&str>) -> Option<Ending> {
    let stopped = |t: &&v1::Task| {
        matches!(
            t.state(),
            TaskState::TaskComplete | TaskState::TaskFailed | TaskState::TaskShutdown
        )
    };
    if abort {
        let first = tasks.iter().filter(stopped).min_by_key(|t| t.updated_at)?;
        let code = match exit_code_from {
            Some(svc) => tasks
                .iter()
                .filter(|t| t.service == svc)
                .filter(stopped)
                .find_map(|t| t.exit_code)
                .unwrap_or(first.exit_code.unwrap_or(0)),
            None => first.exit_code.unwrap_or(0),
        };
        return Some(Ending::Aborted(code));
    }
    let live = tasks
        .iter()
        .any(|t| is_current(t) && t.desired() == v1::DesiredState::DesiredRunning && !stopped(&t));
    (!tasks.is_empty() && !live).then_some(Ending::AllExited)
}

/// Builds, on this machine's store, the images of the selected services that have a
/// `build:` section: all of them with `--build`, those with `pull_policy: build`, and those
/// whose image is missing — as Compose does; none with `--no-build`.
fn build_images(ctx: &Context, app: &mut berth_spec::App, args: &UpArgs) -> anyhow::Result<()> {
    if !args.no_build {
        build_missing(ctx, app, args)?;
    }
    stamp_image_ids(ctx, app)
}

/// Labels each built service with the id of the image it runs (`com.docker.compose.image`,
/// as Compose does), so a rebuilt image changes the service's configuration hash and `up`
/// recreates its containers, while an unchanged image leaves them alone.
fn stamp_image_ids(ctx: &Context, app: &mut berth_spec::App) -> anyhow::Result<()> {
    let store = berth_image::Store::open(ctx.conn.data_root.join("image")).with_context(|| {
        format!(
            "opening the image store under {}",
            ctx.conn.data_root.display()
        )
    })?;
    for name in berth_build::compose::buildable(app) {
        let image = berth_build::compose::image_name(app, &name);
        if let Ok(id) = store.lookup(&image) {
            if let Some(service) = app.services.get_mut(&name) {
                service
                    .labels
                    .insert("com.docker.compose.image".into(), id.to_string());
            }
        }
    }
    Ok(())
}

fn build_missing(ctx: &Context, app: &berth_spec::App, args: &UpArgs) -> anyhow::Result<()> {
    let selected = |name: &String| args.services.is_empty() || args.services.contains(name);
    let store = berth_image::Store::open(ctx.conn.data_root.join("image")).with_context(|| {
        format!(
            "opening the image store under {}",
            ctx.conn.data_root.display()
        )
    })?;
    let wanted: Vec<String> = berth_build::compose::buildable(app)
        .into_iter()
        .filter(selected)
        .filter(|name| {
            let always = app.services[name].pull_policy.as_deref() == Some("build");
            let missing = store
                .lookup(&berth_build::compose::image_name(app, name))
                .is_err();
            args.build || always || missing
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let daemon = crate::cli::DaemonFlags {
        data_root: ctx.conn.data_root.clone(),
    };
    let quiet = ctx.progress == super::progress::Mode::Quiet;
    let env = crate::cli::build::build_env(&daemon, quiet)?;
    let built = berth_build::compose::build_services(
        &env,
        app,
        &wanted,
        &berth_build::compose::ComposeBuildOptions::default(),
    )?;
    for image in built {
        if !quiet {
            eprintln!("Built {} ({})", image.image, image.service);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(service: &str, state: TaskState, health: v1::Health, exit: Option<i32>) -> v1::Task {
        v1::Task {
            service: service.into(),
            slot: 1,
            state: state as i32,
            health: health as i32,
            desired: v1::DesiredState::DesiredRunning as i32,
            exit_code: exit,
            ..Default::default()
        }
    }

    #[test]
    fn healthy_goal_waits_for_the_health_check() {
        let t = task("api", TaskState::TaskRunning, v1::Health::Starting, None);
        assert_eq!(task_progress(&t, Goal::Started), ("Started".into(), true));
        assert_eq!(
            task_progress(&t, Goal::Healthy),
            ("Waiting (health)".into(), false)
        );
        let t = task("api", TaskState::TaskRunning, v1::Health::Healthy, None);
        assert_eq!(task_progress(&t, Goal::Healthy), ("Healthy".into(), true));
        let t = task("api", TaskState::TaskRunning, v1::Health::None, None);
        assert_eq!(task_progress(&t, Goal::Healthy), ("Started".into(), true));
    }

    #[test]
    fn a_completed_one_shot_counts_and_a_failure_says_why() {
        let t = task(
            "migrate",
            TaskState::TaskComplete,
            v1::Health::None,
            Some(0),
        );
        assert_eq!(
            task_progress(&t, Goal::Started),
            ("Exited (0)".into(), true)
        );
        // a container that ran and exited is done for `up -d`, not for `--wait`
        let t = task("web", TaskState::TaskFailed, v1::Health::None, Some(2));
        assert_eq!(
            task_progress(&t, Goal::Started),
            ("Exited (2)".into(), true)
        );
        assert!(!task_progress(&t, Goal::Healthy).1);
        let mut t = task("web", TaskState::TaskFailed, v1::Health::None, None);
        t.message = "image not found".into();
        assert_eq!(
            task_progress(&t, Goal::Started),
            ("Error: image not found".into(), false)
        );
        let mut w = task("web", TaskState::TaskNew, v1::Health::None, None);
        w.message = "waiting for api to be healthy".into();
        assert_eq!(
            task_progress(&w, Goal::Started).0,
            "Waiting (waiting for api to be healthy)"
        );
    }

    #[test]
    fn names_fall_back_to_compose_naming() {
        let t = task("web", TaskState::TaskNew, v1::Health::None, None);
        assert_eq!(container_name("app", &t), "app-web-1");
    }

    #[test]
    fn abort_takes_the_first_exit_or_the_named_services_code() {
        let mut a = task("a", TaskState::TaskComplete, v1::Health::None, Some(3));
        a.updated_at = 10;
        let mut b = task("b", TaskState::TaskFailed, v1::Health::None, Some(7));
        b.updated_at = 20;
        let c = task("c", TaskState::TaskRunning, v1::Health::None, None);
        let tasks = [a, b, c];
        assert_eq!(ending(&tasks, true, None), Some(Ending::Aborted(3)));
        assert_eq!(ending(&tasks, true, Some("b")), Some(Ending::Aborted(7)));
        assert_eq!(ending(&tasks, false, None), None);
        let all_done = [task(
            "a",
            TaskState::TaskComplete,
            v1::Health::None,
            Some(0),
        )];
        assert_eq!(ending(&all_done, false, None), Some(Ending::AllExited));
        assert_eq!(ending(&tasks[2..], true, None), None);
    }
}
