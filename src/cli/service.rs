//! `berth service …`: the deployed services as `docker service` shows them — ls, ps (each
//! task's node, desired and current state, and why it waits), inspect, scale, rollback —
//! through the local berthd's `Services` API. Services are named `<app>_<service>`, or by
//! their bare name when only one app has it.

use std::process::ExitCode;

use berth_api::v1::services_client::ServicesClient;
use berth_api::v1::{
    ServiceInspectRequest, ServiceListRequest, ServiceRollbackRequest, ServiceScaleRequest,
    ServiceTask, ServiceTasksRequest,
};
use clap::{Args, Subcommand};
use tonic::transport::Channel;

use super::cluster::HostFlag;

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub host: HostFlag,
    #[command(subcommand)]
    pub command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services
    #[command(alias = "list")]
    Ls {
        /// Only the services of this app (Compose project)
        #[arg(long)]
        app: Option<String>,
        /// table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// List the tasks of services (all services when none is named)
    Ps {
        /// Do not truncate ids and messages
        #[arg(long)]
        no_trunc: bool,
        /// table or json
        #[arg(long, default_value = "table")]
        format: String,
        services: Vec<String>,
    },
    /// Show services in detail (JSON)
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Set the replicas of services: SERVICE=REPLICAS …
    Scale {
        #[arg(required = true, value_name = "SERVICE=REPLICAS")]
        services: Vec<String>,
    },
    /// Return a service to the spec its last update replaced
    Rollback { service: String },
}

struct Client {
    rt: tokio::runtime::Runtime,
    services: ServicesClient<Channel>,
}

impl Client {
    fn open(host: &HostFlag) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel = rt.block_on(super::remote::connect(host.host.as_deref(), &host.tls))?;
        Ok(Client {
            rt,
            services: ServicesClient::new(channel),
        })
    }

    fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> anyhow::Result<T> {
        self.rt
            .block_on(fut)
            .map(tonic::Response::into_inner)
            .map_err(|status| match status.message().trim() {
                "" => anyhow::anyhow!("berthd: {:?}", status.code()),
                message => anyhow::anyhow!("{message}"),
            })
    }
}

pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    let client = Client::open(&args.host)?;
    let mut api = client.services.clone();
    match args.command {
        ServiceCommand::Ls { app, format } => {
            let services = client
                .call(api.list(ServiceListRequest {
                    app: app.unwrap_or_default(),
                }))?
                .services;
            match format.as_str() {
                "json" => {
                    let all: Vec<_> = services
                        .iter()
                        .map(|s| {
                            serde_json::json!({
                                "Name": s.name,
                                "App": s.app,
                                "Service": s.service,
                                "Mode": s.mode,
                                "Replicas": format!("{}/{}", s.running, s.desired),
                                "Running": s.running,
                                "Desired": s.desired,
                                "Image": s.image,
                                "Ports": s.ports,
                                "UpdateState": s.update_state,
                                "UpdateMessage": s.update_message,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(all));
                }
                "table" => {
                    println!(
                        "{:<28} {:<10} {:<9} {:<24} {:<20} PORTS",
                        "NAME", "MODE", "REPLICAS", "IMAGE", "UPDATE"
                    );
                    for s in &services {
                        println!(
                            "{:<28} {:<10} {:<9} {:<24} {:<20} {}",
                            s.name,
                            s.mode,
                            format!("{}/{}", s.running, s.desired),
                            s.image,
                            s.update_state,
                            s.ports.join(", ")
                        );
                    }
                }
                other => anyhow::bail!("--format {other:?}: use table or json"),
            }
        }
        ServiceCommand::Ps {
            no_trunc,
            format,
            services,
        } => {
            let mut tasks = client
                .call(api.tasks(ServiceTasksRequest { services }))?
                .tasks;
            order(&mut tasks);
            match format.as_str() {
                "json" => {
                    let all: Vec<_> = tasks.iter().map(task_json).collect();
                    println!("{}", serde_json::Value::Array(all));
                }
                "table" => print_tasks(&tasks, no_trunc),
                other => anyhow::bail!("--format {other:?}: use table or json"),
            }
        }
        ServiceCommand::Inspect { services } => {
            let docs = client
                .call(api.inspect(ServiceInspectRequest { services }))?
                .services;
            let values: Vec<serde_json::Value> = docs
                .iter()
                .map(|d| serde_json::from_str(d))
                .collect::<Result<_, _>>()?;
            println!("{}", serde_json::to_string_pretty(&values)?);
        }
        ServiceCommand::Scale { services } => {
            for pair in services {
                let Some((name, count)) = pair.split_once('=') else {
                    anyhow::bail!("{pair:?}: use SERVICE=REPLICAS");
                };
                let replicas: u32 = count
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{pair:?}: replicas must be a number"))?;
                client.call(api.scale(ServiceScaleRequest {
                    service: name.to_owned(),
                    replicas,
                }))?;
                println!("{name} scaled to {replicas}");
            }
        }
        ServiceCommand::Rollback { service } => {
            client.call(api.rollback(ServiceRollbackRequest {
                service: service.clone(),
            }))?;
            println!("{service}: rollback started");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// By service and slot, the live task of a slot first, then its earlier ones newest first
/// (as `docker service ps` lists a slot's history under it).
fn order(tasks: &mut [ServiceTask]) {
    tasks.sort_by(|a, b| {
        (&a.service, a.slot, a.slot == 0, &a.node_id)
            .cmp(&(&b.service, b.slot, b.slot == 0, &b.node_id))
            .then(b.live.cmp(&a.live))
            .then(b.created_ms.cmp(&a.created_ms))
    });
}

fn task_json(t: &ServiceTask) -> serde_json::Value {
    serde_json::json!({
        "ID": t.id,
        "Name": t.name,
        "Service": t.service,
        "Image": t.image,
        "Node": t.node,
        "NodeID": t.node_id,
        "DesiredState": t.desired_state,
        "CurrentState": t.current_state,
        "Since": t.since_ms,
        "Error": t.error,
        "Slot": t.slot,
        "SpecHash": t.spec_hash,
        "Live": t.live,
    })
}

fn print_tasks(tasks: &[ServiceTask], no_trunc: bool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    println!(
        "{:<12} {:<30} {:<20} {:<16} {:<9} {:<32} ERROR",
        "ID", "NAME", "IMAGE", "NODE", "DESIRED", "CURRENT STATE"
    );
    let mut previous: Option<(&str, u32, &str)> = None;
    for t in tasks {
        let key = (t.service.as_str(), t.slot, t.name.as_str());
        // an earlier task of the same slot is listed under the current one
        let name = if previous.is_some_and(|p| p.0 == key.0 && p.1 == key.1 && p.2 == key.2) {
            format!(" \\_ {}", t.name)
        } else {
            t.name.clone()
        };
        previous = Some(key);
        let id = if no_trunc {
            t.id.clone()
        } else {
            t.id.chars().take(12).collect()
        };
        let error = if no_trunc || t.error.chars().count() <= 60 {
            t.error.clone()
        } else {
            let cut: String = t.error.chars().take(59).collect();
            format!("{cut}…")
        };
        let current = format!("{} {}", t.current_state, ago(now, t.since_ms));
        println!(
            "{:<12} {:<30} {:<20} {:<16} {:<9} {:<32} {}",
            id, name, t.image, t.node, t.desired_state, current, error
        );
    }
}

fn ago(now: u64, then: u64) -> String {
    let secs = now.saturating_sub(then) / 1000;
    match secs {
        0..=1 => "just now".into(),
        2..=119 => format!("{secs} seconds ago"),
        120..=7199 => format!("{} minutes ago", secs / 60),
        _ => format!("{} hours ago", secs / 3600),
    }
}
