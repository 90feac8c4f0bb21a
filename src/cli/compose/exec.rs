//! `berth exec` and `berth run`. The daemon names the container (`exec`), or makes the
//! service's networks and volumes and starts its dependencies (`run`); the process itself is then run on this machine with the
//! node-local container code (`berth container exec`/`run`), so both work only where the
//! container lives — on one machine, always.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use berth_api::v1;
use berth_node_agent::container::{MountSpec, NetworkMode, RunOptions};
use berth_spec::App;
use berth_spec::model::Service;
use clap::Args;

use super::super::container::{Attach, exec_local, run_local};
use super::client::Session;
use super::{Context, project};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run the command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// No terminal (default: a terminal when stdin is one)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Environment variable (K=V)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// User (name|uid[:group|gid])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Which replica of the service (1-based)
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Environment variable (K=V, or K to take it from here)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Don't start the service's dependencies
    #[arg(long)]
    pub no_deps: bool,
    /// Container name
    #[arg(long)]
    pub name: Option<String>,
    /// User (name|uid[:group|gid])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// No terminal (default: a terminal when stdin is one)
    #[arg(short = 'T', long = "no-TTY")]
    pub no_tty: bool,
    /// Bind mount or named volume: SOURCE:DEST[:ro]
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Publish a port: [IP:]HOST:CONTAINER (long only: -p names the project)
    #[arg(long = "publish")]
    pub publish: Vec<String>,
    pub service: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn stdin_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdin())
}

pub fn exec(ctx: &Context, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let tasks = session
        .call(compose.ps(v1::PsRequest {
            project: project.clone(),
            services: vec![args.service.clone()],
            all: false,
        }))?
        .tasks;
    let task = pick(&tasks, &args.service, args.index).with_context(|| {
        format!(
            "service {:?} has no running container {}",
            args.service, args.index
        )
    })?;
    let tty = !args.no_tty && !args.detach && stdin_is_terminal();
    if args.detach {
        // nothing waits for a detached exec: it is run through a child `berth` that outlives us
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("--data-root")
            .arg(&ctx.conn.data_root)
            .args(["container", "exec"]);
        for e in &args.env {
            cmd.arg("-e").arg(e);
        }
        if let Some(u) = &args.user {
            cmd.arg("-u").arg(u);
        }
        if let Some(w) = &args.workdir {
            cmd.arg("-w").arg(w);
        }
        cmd.arg(&task.container_id).args(&args.command);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().context("starting the detached exec")?;
        return Ok(ExitCode::SUCCESS);
    }
    drop(session);
    exec_local(
        &ctx.conn.data_root,
        &task.container_id,
        args.command,
        args.env,
        args.workdir,
        args.user,
        Attach {
            detach: false,
            rm: false,
            tty,
            interactive: tty || !stdin_is_terminal(),
        },
    )
}

/// The running task of `service` in replica `index`, else its first running one.
fn pick<'a>(tasks: &'a [v1::Task], service: &str, index: u32) -> Option<&'a v1::Task> {
    let running = |t: &&v1::Task| {
        t.service == service
            && !t.container_id.is_empty()
            && t.state() == v1::TaskState::TaskRunning
    };
    tasks
        .iter()
        .filter(running)
        .find(|t| t.slot == index)
        .or_else(|| (index <= 1).then(|| tasks.iter().find(running)).flatten())
}

pub fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<ExitCode> {
    let loaded = project::load(&ctx.project)?;
    let app = &loaded.app;
    let service = app
        .services
        .get(&args.service)
        .with_context(|| format!("no such service: {}", args.service))?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let working_dir = loaded.working_dir.display().to_string();
    let config_files: Vec<String> = loaded
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    // The service's networks and named volumes, made by the daemon as `up` makes them (a
    // project that was never brought up has none yet); before the dependencies, so their
    // tasks find these networks made rather than racing to make them.
    let prepared = session.call(compose.prepare_run(v1::PrepareRunRequest {
        project: app.name.clone(),
        app_json: app.to_json(),
        working_dir: working_dir.clone(),
        config_files: config_files.clone(),
        service: args.service.clone(),
    }))?;
    for warning in &prepared.warnings {
        eprintln!("berth: warning: {warning}");
    }
    if !args.no_deps && !service.depends_on.is_empty() {
        // the dependencies come up through the daemon, as `up -d DEP…` would bring them
        let deps: Vec<String> = service.depends_on.keys().cloned().collect();
        session.call(compose.deploy(v1::DeployRequest {
            project: app.name.clone(),
            app_json: app.to_json(),
            working_dir,
            config_files,
            options: Some(v1::DeployOptions {
                services: deps.clone(),
                ..Default::default()
            }),
            files: crate::cli::app_files::collect(app)?,
        }))?;
        wait_running(&session, &app.name, &deps)?;
    }
    drop(session);
    let tty = !args.no_tty && !args.detach && stdin_is_terminal();
    let opts = one_off_options(app, &args.service, service, &args, tty)?;
    run_local(
        &ctx.conn.data_root,
        opts,
        Attach {
            detach: args.detach,
            rm: args.rm,
            tty,
            interactive: !args.detach,
        },
    )
}

/// Waits until each named service has a running (or completed) task.
fn wait_running(session: &Session, project: &str, services: &[String]) -> anyhow::Result<()> {
    let mut compose = session.compose.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let tasks = session
            .call(compose.ps(v1::PsRequest {
                project: project.to_owned(),
                services: services.to_vec(),
                all: false,
            }))?
            .tasks;
        let up = |svc: &String| {
            tasks.iter().any(|t| {
                &t.service == svc
                    && matches!(
                        t.state(),
                        v1::TaskState::TaskRunning | v1::TaskState::TaskComplete
                    )
            })
        };
        if services.iter().all(up) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the dependencies {} did not start", services.join(", "));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The options of a one-off container of `service`: its image, command, environment,
/// volumes and first network, with `run`'s overrides and Compose's one-off labels.
pub fn one_off_options(
    app: &App,
    name: &str,
    service: &Service,
    args: &RunArgs,
    tty: bool,
) -> anyhow::Result<RunOptions> {
    let image = service
        .image
        .clone()
        .unwrap_or_else(|| format!("{}-{name}", app.name));
    let mut env: Vec<String> = service
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    env.extend(
        super::render::parse_env(&args.env)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    let mut mounts = Vec::new();
    for v in &service.volumes {
        let (Some(source), Some(target)) = (&v.source, &v.target) else {
            continue;
        };
        let source = match v.kind.as_str() {
            "volume" => app
                .volumes
                .get(source)
                .and_then(|vol| vol.name.clone())
                .unwrap_or_else(|| format!("{}_{source}", app.name)),
            "bind" => source.clone(),
            _ => continue,
        };
        let ro = if v.read_only { ":ro" } else { "" };
        mounts.push(MountSpec::parse(&format!("{source}:{target}{ro}"))?);
    }
    for v in &args.volume {
        mounts.push(MountSpec::parse(v)?);
    }
    let network = match service.network_mode.as_deref() {
        Some("host") => NetworkMode::Host,
        Some("none") => NetworkMode::None,
        _ => match service.networks.keys().next() {
            Some(key) => NetworkMode::Bridge(
                app.networks
                    .get(key)
                    .and_then(|n| n.name.clone())
                    .unwrap_or_else(|| format!("{}_{key}", app.name)),
            ),
            None => NetworkMode::Default,
        },
    };
    let mut labels: BTreeMap<String, String> = service
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert("com.docker.compose.project".into(), app.name.clone());
    labels.insert("com.docker.compose.service".into(), name.to_owned());
    labels.insert("com.docker.compose.oneoff".into(), "True".into());
    let entrypoint = match &args.entrypoint {
        Some(e) if e.is_empty() => Some(Vec::new()),
        Some(e) => Some(e.split_whitespace().map(String::from).collect()),
        None => service.entrypoint.clone(),
    };
    let cmd = if args.command.is_empty() {
        service.command.clone().unwrap_or_default()
    } else {
        args.command.clone()
    };
    Ok(RunOptions {
        name: args.name.clone(),
        image,
        entrypoint,
        cmd,
        env,
        mounts,
        tmpfs: service.tmpfs.clone(),
        workdir: args.workdir.clone().or_else(|| service.working_dir.clone()),
        user: args.user.clone().or_else(|| service.user.clone()),
        hostname: service.hostname.clone(),
        cap_add: service.cap_add.clone(),
        cap_drop: service.cap_drop.clone(),
        read_only: service.read_only,
        init: service.init.unwrap_or(false),
        tty,
        stdin: !args.detach,
        labels,
        network,
        ports: args.publish.clone(),
        dns: service.dns.clone(),
        auto_remove: args.rm,
        ..Default::default()
    })
}
