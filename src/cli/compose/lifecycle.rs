//! The verbs that change running services: `start`, `stop`, `restart`, `kill`, `pause`,
//! `unpause` (one daemon call each), `rm` (stopped containers), `scale` and `wait`.

use std::process::ExitCode;

use anyhow::bail;
use berth_api::v1;
use clap::Args;

use super::client::Session;
use super::progress::Display;
use super::render::parse_scale;
use super::{Context, project};

#[derive(Debug, Args)]
pub struct ServicesArgs {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TimeoutArgs {
    /// Seconds to wait for the stop signal before killing
    #[arg(short = 't', long = "timeout", value_name = "SECONDS")]
    pub timeout: Option<u32>,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Don't ask (berth never asks: accepted for Compose's command lines)
    #[arg(short, long)]
    pub force: bool,
    /// Stop the containers first
    #[arg(short, long)]
    pub stop: bool,
    /// Also remove anonymous volumes
    #[arg(short, long)]
    pub volumes: bool,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Don't start the services' dependencies
    #[arg(long)]
    pub no_deps: bool,
    #[arg(value_name = "SERVICE=N", required = true)]
    pub replicas: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Remove the project once the first container stopped
    #[arg(long)]
    pub down_project: bool,
    #[arg(required = true)]
    pub services: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Start,
    Stop,
    Restart,
    Kill,
    Pause,
    Unpause,
}

impl Kind {
    fn action(self) -> v1::Action {
        match self {
            Kind::Start => v1::Action::Start,
            Kind::Stop => v1::Action::Stop,
            Kind::Restart => v1::Action::Restart,
            Kind::Kill => v1::Action::Kill,
            Kind::Pause => v1::Action::Pause,
            Kind::Unpause => v1::Action::Unpause,
        }
    }

    /// The progress word once done.
    fn done(self) -> &'static str {
        match self {
            Kind::Start => "Started",
            Kind::Stop => "Stopped",
            Kind::Restart => "Restarted",
            Kind::Kill => "Killed",
            Kind::Pause => "Paused",
            Kind::Unpause => "Unpaused",
        }
    }
}

pub fn action(
    ctx: &Context,
    kind: Kind,
    services: &[String],
    timeout: Option<u32>,
    signal: &str,
) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let answer = session.call(compose.service_action(v1::ServiceActionRequest {
        project,
        action: kind.action() as i32,
        services: services.to_vec(),
        timeout_seconds: timeout,
        signal: signal.to_owned(),
        remove_volumes: false,
    }))?;
    let mut display = Display::new(ctx.progress, "Running");
    for c in &answer.containers {
        display.set("Container", c, kind.done(), true);
    }
    Ok(ExitCode::SUCCESS)
}

/// `rm`: removes the services' stopped containers (the services stay stopped until `start`
/// or `up` makes new ones); running ones are refused unless `--stop`.
pub fn rm(ctx: &Context, args: &RmArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let tasks = session
        .call(compose.ps(v1::PsRequest {
            project: project.clone(),
            services: args.services.clone(),
            all: true,
        }))?
        .tasks;
    let running: Vec<&v1::Task> = tasks
        .iter()
        .filter(|t| super::query::container_state(t) == "running")
        .collect();
    if !running.is_empty() && !args.stop {
        let names: Vec<String> = running
            .iter()
            .map(|t| super::up::container_name(&project, t))
            .collect();
        bail!(
            "containers still running: {} (stop them first, or use rm --stop)",
            names.join(", ")
        );
    }
    if args.stop && !running.is_empty() {
        session.call(compose.service_action(v1::ServiceActionRequest {
            project: project.clone(),
            action: v1::Action::Stop as i32,
            services: args.services.clone(),
            timeout_seconds: None,
            signal: String::new(),
            remove_volumes: false,
        }))?;
    }
    // the daemon removes the stopped containers (those a `stop` kept, and those that ended)
    let removed = session
        .call(compose.service_action(v1::ServiceActionRequest {
            project: project.clone(),
            action: v1::Action::Remove as i32,
            services: args.services.clone(),
            timeout_seconds: None,
            signal: String::new(),
            remove_volumes: args.volumes,
        }))?
        .containers;
    if removed.is_empty() {
        eprintln!("No stopped containers");
        return Ok(ExitCode::SUCCESS);
    }
    let mut display = Display::new(ctx.progress, "Running");
    for c in &removed {
        display.set("Container", c, "Removed", true);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn scale(ctx: &Context, args: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let replicas = parse_scale(&args.replicas)?;
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let answer = session.call(compose.scale(v1::ScaleRequest {
        project: project.clone(),
        replicas: replicas.clone().into_iter().collect(),
        no_deps: args.no_deps,
    }))?;
    let mut display = Display::new(ctx.progress, "Running");
    for s in &answer.services {
        display.set(
            "Service",
            &s.service,
            &format!("Scaling to {}", s.replicas),
            false,
        );
    }
    // converged when each service has exactly its replicas running
    loop {
        let tasks = session
            .call(compose.ps(v1::PsRequest {
                project: project.clone(),
                services: replicas.keys().cloned().collect(),
                all: true,
            }))?
            .tasks;
        let mut all = true;
        for (svc, n) in &replicas {
            let running = tasks
                .iter()
                .filter(|t| &t.service == svc && super::up::is_current(t))
                .filter(|t| t.state() == v1::TaskState::TaskRunning)
                .count() as u32;
            let current = tasks
                .iter()
                .filter(|t| &t.service == svc && super::up::is_current(t))
                .count() as u32;
            // and the containers of removed replicas are gone, not merely stopped
            let containers = tasks
                .iter()
                .filter(|t| &t.service == svc && !t.container_id.is_empty())
                .count() as u32;
            let ok = running == *n && current == *n && containers == *n;
            all &= ok;
            display.set("Service", svc, &format!("{running}/{n} running"), ok);
        }
        if all {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn wait(ctx: &Context, args: &WaitArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let answer = session.call(compose.wait(v1::WaitRequest {
        project,
        services: args.services.clone(),
        down_project: args.down_project,
    }))?;
    let mut code = 0;
    for e in &answer.exits {
        println!("{}", e.exit_code);
        if code == 0 {
            code = e.exit_code;
        }
    }
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
