//! `berth version`: this client's version and, with `-H`, the daemon's there.

use std::process::ExitCode;

use berth_api::v1::VersionRequest;
use berth_api::v1::system_client::SystemClient;
use clap::Args;

use super::cluster::HostFlag;

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format: `text` or `json`
    #[arg(long, default_value = "text")]
    pub format: String,
    /// With -H, also ask that daemon for its version
    #[command(flatten)]
    pub host: HostFlag,
}

pub fn run(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    if !matches!(args.format.as_str(), "json" | "text") {
        anyhow::bail!("unknown --format {:?}: expected text or json", args.format);
    }
    let server = match &args.host.host {
        Some(address) => match server_version(address, &args.host) {
            Ok(reply) => Some(reply),
            Err(e) if args.format == "text" => {
                // The client's own version is still worth showing, as `docker version` does.
                println!(
                    "berth version {version} ({}/{})",
                    std::env::consts::OS,
                    std::env::consts::ARCH
                );
                return Err(e);
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    if args.format == "json" {
        let mut out = serde_json::json!({ "version": version, "os": std::env::consts::OS, "arch": std::env::consts::ARCH });
        if let Some(s) = &server {
            out["server"] = serde_json::json!({
                "version": s.version, "api_version": s.api_version, "os": s.os, "arch": s.arch,
            });
        }
        println!("{out}");
    } else {
        println!(
            "berth version {version} ({}/{})",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        if let Some(s) = &server {
            println!(
                "berthd version {} (API {}, {}/{})",
                s.version, s.api_version, s.os, s.arch
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn server_version(
    address: &str,
    host: &HostFlag,
) -> anyhow::Result<berth_api::v1::VersionResponse> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let channel = super::remote::connect(Some(address), &host.tls).await?;
        let reply = SystemClient::new(channel)
            .version(VersionRequest {})
            .await
            .map_err(|status| anyhow::anyhow!("berthd at {address}: {}", status.message()))?;
        Ok(reply.into_inner())
    })
}
