//! `berth version`.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format: `text` or `json`
    #[arg(long, default_value = "text")]
    pub format: String,
}

pub fn run(args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let version = env!("CARGO_PKG_VERSION");
    match args.format.as_str() {
        "json" => println!(
            "{}",
            serde_json::json!({ "version": version, "os": std::env::consts::OS, "arch": std::env::consts::ARCH })
        ),
        "text" => println!(
            "berth version {version} ({}/{})",
            std::env::consts::OS,
            std::env::consts::ARCH
        ),
        other => anyhow::bail!("unknown --format {other:?}: expected text or json"),
    }
    Ok(ExitCode::SUCCESS)
}
