//! `berth node …`: list, inspect and change the nodes of the cluster through the local
//! berthd's `Cluster` service (writes go to the Raft leader from there).

use std::collections::HashMap;
use std::process::ExitCode;

use berth_api::v1::{NodeInfo, NodeRemoveRequest, NodeUpdateRequest};
use clap::{Args, Subcommand};

use super::cluster::{Client, HostFlag};

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub host: HostFlag,
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the nodes
    #[command(alias = "list")]
    Ls {
        /// table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show nodes in detail (JSON)
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's availability or labels
    Update {
        /// active, pause or drain
        #[arg(long)]
        availability: Option<String>,
        /// Add or replace a label (KEY=VALUE), repeatable
        #[arg(long = "label-add", value_name = "KEY=VALUE")]
        label_add: Vec<String>,
        /// Remove a label, repeatable
        #[arg(long = "label-rm", value_name = "KEY")]
        label_rm: Vec<String>,
        node: String,
    },
    /// Make workers managers (Raft voters)
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the cluster
    Rm {
        /// Remove a node that still looks ready (long only: `-f` names Compose files)
        #[arg(long)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

fn json(node: &NodeInfo) -> serde_json::Value {
    serde_json::json!({
        "ID": node.id,
        "Hostname": node.hostname,
        "Role": node.role,
        "Availability": node.availability,
        "Status": node.status,
        "Address": node.address,
        "RaftID": node.raft_id,
        "ManagerStatus": node.manager_status,
        "Labels": node.labels,
        "Platform": node.platform,
        "NanoCPUs": node.nano_cpus,
        "MemoryBytes": node.memory,
        "Tasks": node.tasks,
        "Self": node.is_self,
    })
}

pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let mut client = Client::open(&args.host)?;
    let mut cluster = client.cluster.clone();
    let update = |id: &str, role: &str| NodeUpdateRequest {
        id: id.to_owned(),
        role: role.to_owned(),
        ..Default::default()
    };
    match args.command {
        NodeCommand::Ls { format } => {
            let nodes = client.nodes()?;
            match format.as_str() {
                "json" => {
                    let all: Vec<_> = nodes.iter().map(json).collect();
                    println!("{}", serde_json::Value::Array(all));
                }
                "table" => {
                    println!(
                        "{:<26} {:<16} {:<8} {:<13} {:<8} {:<14} {:>5}",
                        "ID",
                        "HOSTNAME",
                        "STATUS",
                        "AVAILABILITY",
                        "ROLE",
                        "MANAGER STATUS",
                        "TASKS"
                    );
                    for n in &nodes {
                        let id = if n.is_self {
                            format!("{} *", n.id)
                        } else {
                            n.id.clone()
                        };
                        println!(
                            "{:<26} {:<16} {:<8} {:<13} {:<8} {:<14} {:>5}",
                            id,
                            n.hostname,
                            n.status,
                            n.availability,
                            n.role,
                            n.manager_status,
                            n.tasks
                        );
                    }
                }
                other => anyhow::bail!("--format {other:?}: use table or json"),
            }
        }
        NodeCommand::Inspect { nodes } => {
            let all = client.nodes()?;
            let mut out = Vec::new();
            for name in &nodes {
                let found: Vec<&NodeInfo> = all
                    .iter()
                    .filter(|n| {
                        n.id == *name || n.id.starts_with(name.as_str()) || n.hostname == *name
                    })
                    .collect();
                match found[..] {
                    [one] => out.push(json(one)),
                    [] => anyhow::bail!("no node {name:?}"),
                    _ => anyhow::bail!("{name:?} names several nodes; use the node id"),
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            let mut labels = HashMap::new();
            for label in label_add {
                let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
                if k.is_empty() {
                    anyhow::bail!("--label-add {label:?}: use KEY=VALUE");
                }
                labels.insert(k.to_owned(), v.to_owned());
            }
            client.call(cluster.node_update(NodeUpdateRequest {
                id: node.clone(),
                availability: availability.unwrap_or_default(),
                label_add: labels,
                label_rm,
                role: String::new(),
            }))?;
            println!("{node}");
        }
        NodeCommand::Promote { nodes } => {
            for node in nodes {
                client.call(cluster.node_update(update(&node, "manager")))?;
                println!("Node {node} promoted to a manager.");
            }
        }
        NodeCommand::Demote { nodes } => {
            for node in nodes {
                client.call(cluster.node_update(update(&node, "worker")))?;
                println!("Node {node} demoted to a worker.");
            }
        }
        NodeCommand::Rm { force, nodes } => {
            for node in nodes {
                client.call(cluster.node_remove(NodeRemoveRequest {
                    id: node.clone(),
                    force,
                }))?;
                println!("{node}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
