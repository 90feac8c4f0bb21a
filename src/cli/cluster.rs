//! `berth cluster …`: init, join-token, join, leave — calls to the local berthd's `Cluster`
//! service. Joining and leaving restart the daemon into its new group; the commands wait
//! until it answers from there.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_api::v1::cluster_client::ClusterClient;
use berth_api::v1::{
    InitRequest, JoinRequest, JoinTokenRequest, LeaveRequest, NodeInfo, NodeListRequest,
};
use clap::{Args, Subcommand};
use tonic::transport::Channel;

/// Where berthd answers (shared by `cluster` and `node`).
#[derive(Debug, Clone, Args)]
pub struct HostFlag {
    /// Daemon address: unix:///path or tcp://host:port
    #[arg(short = 'H', long = "host", env = "BERTH_HOST", value_name = "ADDRESS")]
    pub host: Option<String>,
    #[command(flatten)]
    pub tls: super::remote::TlsFlags,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub host: HostFlag,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make this node the first manager of a new cluster
    Init {
        /// Address other nodes reach this one on: IP[:PORT] (port 4245 by default)
        #[arg(
            long,
            value_name = "IP[:PORT]",
            required_unless_present = "force_new_cluster",
            default_value = ""
        )]
        advertise_addr: String,
        /// On a manager of a cluster that lost its quorum: re-form a one-manager cluster from
        /// this node's state; the other managers are dropped (they must join again)
        #[arg(long)]
        force_new_cluster: bool,
        /// Lifetime of node certificates (e.g. 2160h, 30m; at least 3m); every node renews
        /// its own once a third of it is left
        #[arg(long, value_name = "DURATION", default_value = "2160h")]
        cert_expiry: String,
    },
    /// Print (or rotate) the token that joins a worker or a manager
    JoinToken {
        /// worker or manager
        role: String,
        /// Replace the role's secret: tokens given out before stop working
        #[arg(long)]
        rotate: bool,
        /// Print the token only
        #[arg(short, long)]
        quiet: bool,
    },
    /// Join this node to a cluster through one of its managers
    Join {
        /// The join token (from `berth cluster join-token`)
        #[arg(long)]
        token: String,
        /// Address this node is reached on: IP[:PORT] (port 4245 by default)
        #[arg(long, value_name = "IP[:PORT]")]
        advertise_addr: String,
        /// A manager's address: IP[:PORT]
        remote: String,
    },
    /// On a manager: write a client certificate of the cluster CA (ca.pem, cert.pem,
    /// key.pem) for reaching berthd on -H tcp:// from elsewhere
    ClientCert {
        /// Directory to write into (created; use it as BERTH_CERT_PATH)
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
        /// Who the certificate is for (its common name)
        #[arg(long, default_value = "client")]
        name: String,
        /// Lifetime (e.g. 720h); the cluster's node certificate lifetime by default
        #[arg(long, value_name = "DURATION")]
        expiry: Option<String>,
    },
    /// Leave the cluster; this node goes back to running alone
    Leave {
        /// Leave even as a manager (long only: `-f` names Compose files)
        #[arg(long)]
        force: bool,
    },
}

pub struct Client {
    pub rt: tokio::runtime::Runtime,
    pub cluster: ClusterClient<Channel>,
}

impl Client {
    pub fn open(host: &HostFlag) -> anyhow::Result<Client> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel = rt.block_on(super::remote::connect(host.host.as_deref(), &host.tls))?;
        Ok(Client {
            rt,
            cluster: ClusterClient::new(channel),
        })
    }

    pub fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> anyhow::Result<T> {
        self.rt
            .block_on(fut)
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }

    pub fn nodes(&mut self) -> anyhow::Result<Vec<NodeInfo>> {
        let mut cluster = self.cluster.clone();
        Ok(self.call(cluster.node_list(NodeListRequest {}))?.nodes)
    }
}

/// Waits until a fresh connection to the restarted daemon sees `ready` hold.
fn wait_restarted(
    host: &HostFlag,
    what: &str,
    ready: impl Fn(&mut Client) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    // The daemon restarts a moment after it answered.
    std::thread::sleep(Duration::from_millis(500));
    loop {
        if let Ok(mut client) = Client::open(host) {
            if ready(&mut client) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!("berthd did not come back {what} within 60 s (see its log)");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    let client = Client::open(&args.host)?;
    let mut cluster = client.cluster.clone();
    match args.command {
        ClusterCommand::Init {
            advertise_addr,
            cert_expiry,
            force_new_cluster,
        } => {
            let lifetime = berth_spec::model::units::parse_duration(&cert_expiry)
                .map_err(|e| anyhow::anyhow!("--cert-expiry {cert_expiry:?}: {e}"))?;
            let answer = client.call(cluster.init(InitRequest {
                advertise_addr,
                cert_expiry_secs: lifetime.as_secs(),
                force_new_cluster,
            }))?;
            wait_restarted(&args.host, "as a manager", |c| {
                let mut cluster = c.cluster.clone();
                c.call(cluster.join_token(JoinTokenRequest {
                    role: "worker".into(),
                    rotate: false,
                }))
                .is_ok_and(|t| !t.manager_addr.is_empty())
            })?;
            if force_new_cluster {
                println!(
                    "Cluster re-formed: node {} on {} is its only manager; the other managers were removed.",
                    answer.node_id, answer.advertise_addr
                );
            } else {
                println!(
                    "Cluster initialized: node {} is now a manager on {}.",
                    answer.node_id, answer.advertise_addr
                );
            }
            println!();
            println!("To add a worker, run on it:");
            println!(
                "    berth cluster join --token {} --advertise-addr <its-ip> {}",
                answer.worker_token, answer.advertise_addr
            );
            println!();
            println!("To add a manager: berth cluster join-token manager");
        }
        ClusterCommand::JoinToken {
            role,
            rotate,
            quiet,
        } => {
            let answer = client.call(cluster.join_token(JoinTokenRequest {
                role: role.clone(),
                rotate,
            }))?;
            if quiet {
                println!("{}", answer.token);
            } else {
                if rotate {
                    println!(
                        "The {role} join token was rotated; earlier {role} tokens no longer work."
                    );
                }
                println!("To add a {role} to this cluster, run on it:");
                println!();
                println!(
                    "    berth cluster join --token {} --advertise-addr <its-ip> {}",
                    answer.token, answer.manager_addr
                );
            }
        }
        ClusterCommand::Join {
            token,
            advertise_addr,
            remote,
        } => {
            let answer = client
                .call(cluster.join(JoinRequest {
                    token,
                    remote_addr: remote.clone(),
                    advertise_addr,
                }))
                .with_context(|| format!("joining the cluster of {remote}"))?;
            wait_restarted(&args.host, "in the cluster", |c| {
                c.nodes().is_ok_and(|nodes| {
                    nodes
                        .iter()
                        .any(|n| n.is_self && n.raft_id != 0 && n.status == "ready")
                })
            })?;
            println!(
                "This node ({}) joined the cluster as a {}.",
                answer.node_id, answer.role
            );
        }
        ClusterCommand::ClientCert { out, name, expiry } => {
            let lifetime_secs = match expiry {
                Some(text) => berth_spec::model::units::parse_duration(&text)
                    .map_err(|e| anyhow::anyhow!("--expiry {text:?}: {e}"))?
                    .as_secs(),
                None => 0,
            };
            let answer = client.call(cluster.client_cert(berth_api::v1::ClientCertRequest {
                name,
                lifetime_secs,
            }))?;
            super::remote::write_cert_dir(&out, &answer)?;
            println!(
                "Wrote ca.pem, cert.pem and key.pem to {}: use them with `berth -H tcp://<manager>:<port> --tlscacert … --tlscert … --tlskey …` or BERTH_CERT_PATH={}",
                out.display(),
                out.display()
            );
        }
        ClusterCommand::Leave { force } => {
            client.call(cluster.leave(LeaveRequest { force }))?;
            wait_restarted(&args.host, "alone", |c| {
                c.nodes()
                    .is_ok_and(|nodes| nodes.iter().all(|n| n.raft_id == 0))
            })?;
            println!("This node left the cluster.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A daemon's refusal as one line: its message, else the status code.
fn status_error(status: tonic::Status) -> anyhow::Error {
    let message = status.message().trim();
    if message.is_empty() {
        anyhow::anyhow!("berthd: {:?}", status.code())
    } else {
        anyhow::anyhow!("{message}")
    }
}
