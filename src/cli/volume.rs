//! `berth volume create|ls|inspect|rm|prune`, daemonless over the data root (the work is
//! done by `berth_node_agent::container`, which knows which containers use a volume).
//! Parsed by its own parser before the main one, for Docker's `-f`, like `network`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use berth_node_agent::volume::VolumeInfo;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use super::network::{command_word, confirm, each, labels};

#[derive(Debug, Parser)]
#[command(name = "berth", version)]
struct VolumeCli {
    /// Root directory of berth's local state (image store, containers, volumes)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "BERTH_DATA_ROOT",
        default_value = "/var/lib/berth"
    )]
    data_root: PathBuf,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON
    Inspect(InspectArgs),
    /// Remove volumes
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused volumes (anonymous ones; every unused one with --all)
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Driver (only local)
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set a label (K=V)
    #[arg(long)]
    label: Vec<String>,
    /// Volume name (random when absent)
    name: Option<String>,
}

#[derive(Debug, Args)]
struct LsArgs {
    /// Only names
    #[arg(short, long)]
    quiet: bool,
    /// `table` (default) or `json` (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
    /// Filter: name=…, label=K[=V], dangling=true|false
    #[arg(short, long)]
    filter: Vec<String>,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// `json` (the default)
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// Do not complain about volumes that do not exist
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Every unused volume, not only anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
    /// Only volumes with this label: label=K[=V]
    #[arg(long)]
    filter: Vec<String>,
}

/// Runs `berth volume …` when `argv` is one; `None` otherwise.
pub fn dispatch(argv: &[OsString]) -> Option<ExitCode> {
    if command_word(argv)? != "volume" {
        return None;
    }
    let cli = VolumeCli::parse_from(argv);
    Some(match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("berth: {}", super::one_line(&err));
            ExitCode::FAILURE
        }
    })
}

/// Pure: `docker volume inspect`'s shape.
fn inspect_json(v: &VolumeInfo) -> Value {
    json!({
        "CreatedAt": v.meta.created,
        "Driver": "local",
        "Labels": v.meta.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    })
}

/// Pure: `label=K[=V]` filters as pairs.
fn label_filters(filters: &[String]) -> anyhow::Result<Vec<(String, Option<String>)>> {
    filters
        .iter()
        .map(|f| match f.strip_prefix("label=") {
            Some(l) => Ok(match l.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (l.to_string(), None),
            }),
            None => bail!("unsupported filter {f:?} (label=K[=V])"),
        })
        .collect()
}

fn run(cli: VolumeCli) -> anyhow::Result<ExitCode> {
    let c = super::container::open(&cli.data_root)?;
    let Top::Volume { command } = cli.command;
    match command {
        VolumeCommand::Create(a) => {
            if a.driver != "local" {
                bail!(
                    "driver {:?} is not supported; berth volumes are local",
                    a.driver
                );
            }
            let v = c.volume_create(a.name.as_deref(), labels(&a.label))?;
            println!("{}", v.name);
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Ls(a) => {
            let mut label_f = Vec::new();
            let (mut name_f, mut dangling) = (Vec::new(), None);
            for f in &a.filter {
                match f.split_once('=') {
                    Some(("name", v)) => name_f.push(v.to_string()),
                    Some(("dangling", v)) => dangling = Some(v == "true" || v == "1"),
                    Some(("label", _)) => label_f.push(f.clone()),
                    _ => bail!("unsupported filter {f:?} (name, label, dangling)"),
                }
            }
            let label_f = label_filters(&label_f)?;
            let mut shown = Vec::new();
            for v in c.volume_list()? {
                let labels_ok = label_f.iter().all(|(k, want)| {
                    v.meta
                        .labels
                        .get(k)
                        .is_some_and(|have| want.as_ref().is_none_or(|w| w == have))
                });
                let name_ok = name_f.iter().all(|n| v.name.contains(n.as_str()));
                let dangling_ok = match dangling {
                    Some(d) => c.volume_users(&v.name, "")?.is_empty() == d,
                    None => true,
                };
                if labels_ok && name_ok && dangling_ok {
                    shown.push(v);
                }
            }
            for v in &shown {
                if a.quiet {
                    println!("{}", v.name);
                } else if a.format == "json" {
                    let labels: Vec<String> = v
                        .meta
                        .labels
                        .iter()
                        .map(|(k, x)| format!("{k}={x}"))
                        .collect();
                    println!(
                        "{}",
                        json!({
                            "Driver": "local", "Labels": labels.join(","), "Links": "N/A",
                            "Mountpoint": v.mountpoint, "Name": v.name, "Scope": "local",
                            "Size": "N/A",
                        })
                    );
                }
            }
            if !a.quiet && a.format == "table" {
                println!("{:<10}VOLUME NAME", "DRIVER");
                for v in &shown {
                    println!("{:<10}{}", "local", v.name);
                }
            } else if !a.quiet && a.format != "json" {
                bail!("--format {:?}: use table or json", a.format);
            }
            Ok(ExitCode::SUCCESS)
        }
        VolumeCommand::Inspect(a) => {
            if a.format.as_deref().is_some_and(|f| f != "json") {
                bail!("--format: only json is supported");
            }
            let mut out = Vec::new();
            let code = each(&a.volumes, |n| {
                out.push(inspect_json(&c.volume_inspect(n)?));
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        VolumeCommand::Rm(a) => each(&a.volumes, |n| {
            c.volume_remove(n, a.force)?;
            println!("{n}");
            Ok(())
        }),
        VolumeCommand::Prune(a) => {
            let filters = label_filters(&a.filter)?;
            let what = if a.all {
                "This will remove all local volumes not used by at least one container."
            } else {
                "This will remove anonymous local volumes not used by at least one container."
            };
            if !a.force && !confirm(what) {
                return Ok(ExitCode::SUCCESS);
            }
            let removed = c.volume_prune(a.all, &filters)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in removed {
                    println!("{n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parser_and_label_filters() {
        VolumeCli::command().debug_assert();
        let cli = VolumeCli::parse_from(["berth", "volume", "rm", "-f", "a", "b"]);
        let Top::Volume {
            command: VolumeCommand::Rm(a),
        } = cli.command
        else {
            panic!("not rm");
        };
        assert!(a.force);
        assert_eq!(a.volumes, ["a", "b"]);
        assert_eq!(
            label_filters(&["label=x".into(), "label=y=z".into()]).unwrap(),
            vec![("x".into(), None), ("y".into(), Some("z".into()))]
        );
        assert!(label_filters(&["until=1h".into()]).is_err());
    }
}
