//! `berth secret …`: Swarm's secret workflow — create a secret from a file or stdin, list,
//! inspect (metadata only: a value is never shown), remove — through the local berthd's
//! `Secrets` API. Compose files use them as `secrets: {KEY: {external: true}}`.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context as _;
use berth_api::v1::secrets_client::SecretsClient;
use berth_api::v1::{
    SecretCreateRequest, SecretInfo, SecretInspectRequest, SecretListRequest, SecretRemoveRequest,
};
use clap::{Args, Subcommand};
use tonic::transport::Channel;

use super::cluster::HostFlag;

/// Read at most this much of a value: above the daemon's limit (512 KiB), so that the
/// daemon, which decides, sees an oversized value and says so.
const READ_LIMIT: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(flatten)]
    pub host: HostFlag,
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create a secret from a file, or from stdin with `-`
    Create {
        /// A label KEY=VALUE (repeatable)
        #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// The secret's name (letters, digits, `-`, `_`, `.`; at most 64)
        name: String,
        /// The file holding the value, or `-` for stdin
        #[arg(value_name = "FILE|-")]
        file: String,
    },
    /// List secrets
    #[command(alias = "list")]
    Ls {
        /// Only the ids
        #[arg(short, long)]
        quiet: bool,
        /// table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show secrets in detail (JSON, without their values)
    Inspect {
        #[arg(required = true, value_name = "SECRET")]
        names: Vec<String>,
    },
    /// Remove secrets (refused while a deployed app uses one)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true, value_name = "SECRET")]
        names: Vec<String>,
    },
}

fn read_value(file: &str) -> anyhow::Result<Vec<u8>> {
    let mut value = Vec::new();
    if file == "-" {
        std::io::stdin()
            .take(READ_LIMIT)
            .read_to_end(&mut value)
            .context("reading the secret from stdin")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(READ_LIMIT).read_to_end(&mut value))
            .with_context(|| format!("reading {file}"))?;
    }
    Ok(value)
}

fn labels(pairs: &[String]) -> anyhow::Result<std::collections::HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            None if !pair.is_empty() => Ok((pair.clone(), String::new())),
            _ => anyhow::bail!("--label {pair:?}: use KEY=VALUE"),
        })
        .collect()
}

fn json(s: &SecretInfo) -> serde_json::Value {
    let labels: std::collections::BTreeMap<_, _> = s.labels.iter().collect();
    serde_json::json!({
        "ID": s.id,
        "Name": s.name,
        "Labels": labels,
        "CreatedMs": s.created_ms,
        "UsedBy": s.used_by,
    })
}

pub fn run(args: SecretArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let channel = rt.block_on(super::remote::connect(
        args.host.host.as_deref(),
        &args.host.tls,
    ))?;
    let mut api = SecretsClient::<Channel>::new(channel);
    let call = |status: tonic::Status| match status.message().trim() {
        "" => anyhow::anyhow!("berthd: {:?}", status.code()),
        message => anyhow::anyhow!("{message}"),
    };
    match args.command {
        SecretCommand::Create {
            labels: l,
            name,
            file,
        } => {
            let request = SecretCreateRequest {
                labels: labels(&l)?,
                data: read_value(&file)?,
                name,
            };
            let id = rt
                .block_on(api.create_secret(request))
                .map_err(call)?
                .into_inner()
                .id;
            println!("{id}");
        }
        SecretCommand::Ls { quiet, format } => {
            let mut secrets = rt
                .block_on(api.list_secrets(SecretListRequest {}))
                .map_err(call)?
                .into_inner()
                .secrets;
            secrets.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                for s in &secrets {
                    println!("{}", s.id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            match format.as_str() {
                "json" => {
                    let all: Vec<_> = secrets.iter().map(json).collect();
                    println!("{}", serde_json::Value::Array(all));
                }
                "table" => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0);
                    println!("{:<24} {:<32} {:<20} USED BY", "ID", "NAME", "CREATED");
                    for s in &secrets {
                        println!(
                            "{:<24} {:<32} {:<20} {}",
                            s.id,
                            s.name,
                            ago(now, s.created_ms),
                            s.used_by.join(", ")
                        );
                    }
                }
                other => anyhow::bail!("--format {other:?}: use table or json"),
            }
        }
        SecretCommand::Inspect { names } => {
            let secrets = rt
                .block_on(api.inspect_secrets(SecretInspectRequest { names }))
                .map_err(call)?
                .into_inner()
                .secrets;
            let all: Vec<_> = secrets.iter().map(json).collect();
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        SecretCommand::Rm { names } => {
            // Docker's way: each one is tried, the failures reported, the exit code says.
            let mut failed = false;
            for name in names {
                match rt.block_on(api.remove_secret(SecretRemoveRequest { name: name.clone() })) {
                    Ok(_) => println!("{name}"),
                    Err(status) => {
                        failed = true;
                        super::report(&call(status));
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
