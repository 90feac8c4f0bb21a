//! The read-only verbs: `ps`, `top`, `port`, `images`, `ls`. Each asks the daemon once and
//! renders the answer with [`super::render`].

use std::process::ExitCode;

use anyhow::bail;
use berth_api::v1;
use clap::Args;

use super::client::Session;
use super::render::{PsRow, ps_json, ps_table, status_text};
use super::up::{container_name, is_current};
use super::{Context, project};

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also stopped containers
    #[arg(short, long)]
    pub all: bool,
    /// Only container names
    #[arg(short, long)]
    pub quiet: bool,
    /// Only service names
    #[arg(long)]
    pub services: bool,
    /// Only containers in this state (running, exited, created, paused, restarting)
    #[arg(long)]
    pub status: Vec<String>,
    /// Output format: table or json
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServicesOnly {
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// tcp or udp
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// Which replica (1-based)
    #[arg(long, default_value_t = 1)]
    pub index: u32,
    pub service: String,
    pub private_port: u32,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Also projects with nothing running
    #[arg(short, long)]
    pub all: bool,
    /// Only project names
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

/// A task's container state in Docker's words.
pub fn container_state(t: &v1::Task) -> &'static str {
    match t.container_status.as_str() {
        "running" => "running",
        "paused" => "paused",
        "exited" => "exited",
        "created" => "created",
        "restarting" => "restarting",
        _ => match t.state() {
            v1::TaskState::TaskRunning => "running",
            v1::TaskState::TaskComplete
            | v1::TaskState::TaskFailed
            | v1::TaskState::TaskShutdown => "exited",
            _ => "created",
        },
    }
}

fn health_word(t: &v1::Task) -> &'static str {
    match t.health() {
        v1::Health::None => "",
        v1::Health::Starting => "starting",
        v1::Health::Healthy => "healthy",
        v1::Health::Unhealthy => "unhealthy",
    }
}

/// `127.0.0.1:8080->80/tcp, 9000/tcp`
pub fn ports_text(ports: &[v1::PortBinding]) -> String {
    ports
        .iter()
        .map(|p| {
            if p.host_port == 0 {
                format!("{}/{}", p.container_port, p.protocol)
            } else {
                let ip = if p.host_ip.is_empty() {
                    "0.0.0.0"
                } else {
                    &p.host_ip
                };
                format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `ps` rows of tasks, current ones first by service and slot, stopped ones only with
/// `all`, and only those in `status` when given.
pub fn rows(
    project: &str,
    tasks: &[v1::Task],
    all: bool,
    status: &[String],
    now_ms: u64,
) -> Vec<PsRow> {
    let mut tasks: Vec<&v1::Task> = tasks
        .iter()
        .filter(|t| !t.container_id.is_empty() || is_current(t))
        .collect();
    tasks.sort_by(|a, b| {
        (&a.service, a.slot, a.created_at).cmp(&(&b.service, b.slot, b.created_at))
    });
    tasks
        .into_iter()
        .filter_map(|t| {
            let state = container_state(t);
            if !all && state != "running" && status.is_empty() {
                return None;
            }
            if !status.is_empty() && !status.iter().any(|s| s == state) {
                return None;
            }
            let since = if state == "running" {
                t.started_at.unwrap_or(t.created_at)
            } else {
                t.updated_at
            };
            let age = now_ms.saturating_sub(since) / 1000;
            Some(PsRow {
                id: t.container_id.clone(),
                name: container_name(project, t),
                image: t.image.clone(),
                command: t.command.clone(),
                service: t.service.clone(),
                project: t.project.clone(),
                state: state.to_owned(),
                health: health_word(t).to_owned(),
                exit_code: t.exit_code.unwrap_or(0),
                status: status_text(state, age, t.exit_code.unwrap_or(0), health_word(t)),
                ports: ports_text(&t.ports),
            })
        })
        .collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn ps(ctx: &Context, args: &PsArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let tasks = match session.rt.block_on(compose.ps(v1::PsRequest {
        project: project.clone(),
        services: args.service_names.clone(),
        all: args.all,
    })) {
        Ok(answer) => answer.into_inner().tasks,
        // a project that is not deployed has no containers
        Err(status) if status.code() == tonic::Code::NotFound => Vec::new(),
        Err(status) => return Err(super::client::status_error(status)),
    };
    let rows = rows(&project, &tasks, args.all, &args.status, now_ms());
    if args.services {
        let mut names: Vec<&str> = rows.iter().map(|r| r.service.as_str()).collect();
        names.dedup();
        for n in names {
            println!("{n}");
        }
    } else if args.quiet {
        for r in &rows {
            println!("{}", r.name);
        }
    } else if args.format == "json" {
        println!("{}", ps_json(&rows));
    } else {
        print!("{}", ps_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn top(ctx: &Context, args: &ServicesOnly) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let answer = session.call(compose.top(v1::TopRequest {
        project,
        services: args.services.clone(),
    }))?;
    let mut first = true;
    for c in &answer.containers {
        if !first {
            println!();
        }
        first = false;
        println!("{}", c.container_name);
        let mut table = vec![c.titles.clone()];
        table.extend(c.processes.iter().map(|p| p.fields.clone()));
        print!("{}", columns(&table));
    }
    Ok(ExitCode::SUCCESS)
}

/// Left-aligned columns separated by three spaces.
pub fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0; n];
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(&format!("{c:<w$}   ", w = width[i]));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn port(ctx: &Context, args: &PortArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let answer = session.call(compose.port(v1::PortRequest {
        project,
        service: args.service.clone(),
        private_port: args.private_port,
        protocol: args.protocol.clone(),
        index: args.index,
    }))?;
    let Some(b) = answer.bindings.first() else {
        bail!(
            "no port {}/{} published by {}",
            args.private_port,
            args.protocol,
            args.service
        );
    };
    let ip = if b.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        &b.host_ip
    };
    println!("{ip}:{}", b.host_port);
    Ok(ExitCode::SUCCESS)
}

pub fn images(ctx: &Context, args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let project = project::name(&ctx.project)?;
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let answer = session.call(compose.images(v1::ImagesRequest {
        project,
        services: args.services.clone(),
    }))?;
    let short = |id: &str| {
        id.trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>()
    };
    if args.quiet {
        let mut ids: Vec<String> = answer.images.iter().map(|i| short(&i.image_id)).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            println!("{id}");
        }
    } else if args.format == "json" {
        let list: Vec<_> = answer
            .images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "ContainerName": i.container_name,
                    "Service": i.service,
                    "Repository": i.reference,
                    "ID": i.image_id,
                    "Size": i.size,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let mut table = vec![
            ["CONTAINER", "REPOSITORY", "IMAGE ID", "SIZE"]
                .map(String::from)
                .to_vec(),
        ];
        for i in &answer.images {
            table.push(vec![
                i.container_name.clone(),
                i.reference.clone(),
                short(&i.image_id),
                size_text(i.size),
            ]);
        }
        print!("{}", columns(&table));
    }
    Ok(ExitCode::SUCCESS)
}

/// Docker's sizes: `1.2MB`, `830kB`, `12B`.
pub fn size_text(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.3}GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.3}MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1}kB", b / 1e3)
    } else {
        format!("{bytes}B")
    }
}

pub fn ls(ctx: &Context, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&ctx.conn)?;
    let mut compose = session.compose.clone();
    let answer = session.call(compose.list_apps(v1::ListAppsRequest { all: args.all }))?;
    if args.quiet {
        for a in &answer.apps {
            println!("{}", a.name);
        }
    } else if args.format == "json" {
        let list: Vec<_> = answer
            .apps
            .iter()
            .map(|a| {
                serde_json::json!({
                    "Name": a.name,
                    "Status": a.status,
                    "ConfigFiles": a.config_files.join(","),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let mut table = vec![
            ["NAME", "STATUS", "CONFIG FILES"]
                .map(String::from)
                .to_vec(),
        ];
        for a in &answer.apps {
            table.push(vec![
                a.name.clone(),
                a.status.clone(),
                a.config_files.join(","),
            ]);
        }
        print!("{}", columns(&table));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(service: &str, slot: u32, status: &str) -> v1::Task {
        v1::Task {
            project: "app".into(),
            service: service.into(),
            slot,
            container_id: "c".into(),
            container_status: status.into(),
            desired: v1::DesiredState::DesiredRunning as i32,
            created_at: 1_000,
            started_at: Some(2_000),
            updated_at: 3_000,
            exit_code: (status == "exited").then_some(1),
            ..Default::default()
        }
    }

    #[test]
    fn rows_filter_by_state_and_sort_by_service_and_slot() {
        let tasks = [
            task("web", 2, "running"),
            task("db", 1, "exited"),
            task("web", 1, "running"),
        ];
        let names = |rows: Vec<PsRow>| rows.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(
            names(rows("app", &tasks, false, &[], 10_000)),
            ["app-web-1", "app-web-2"]
        );
        assert_eq!(
            names(rows("app", &tasks, true, &[], 10_000)),
            ["app-db-1", "app-web-1", "app-web-2"]
        );
        let exited = rows("app", &tasks, false, &["exited".into()], 10_000);
        assert_eq!(names(exited.clone()), ["app-db-1"]);
        assert_eq!(exited[0].status, "Exited (1) 7 seconds ago");
        let running = rows("app", &tasks, false, &[], 10_000);
        assert_eq!(running[0].status, "Up 8 seconds");
    }

    #[test]
    fn ports_read_like_docker() {
        let p = [
            v1::PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
            },
            v1::PortBinding {
                host_ip: String::new(),
                host_port: 0,
                container_port: 53,
                protocol: "udp".into(),
            },
        ];
        assert_eq!(ports_text(&p), "127.0.0.1:8080->80/tcp, 53/udp");
    }

    #[test]
    fn columns_and_sizes() {
        let t = columns(&[
            vec!["UID".into(), "PID".into(), "CMD".into()],
            vec!["0".into(), "12345".into(), "httpd -f".into()],
        ]);
        assert_eq!(t, "UID   PID     CMD\n0     12345   httpd -f\n");
        assert_eq!(size_text(1_234_567), "1.235MB");
        assert_eq!(size_text(999), "999B");
    }
}
