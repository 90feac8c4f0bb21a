//! `berth network create|ls|inspect|rm|prune|connect|disconnect` and the single-container
//! `port` verb, daemonless over the data root like the container commands (the work is done
//! by `berth_node_agent::container`). Docker's flags, including `-f` (force/filter), which the
//! global Compose flags would claim: so `network` is parsed by its own parser first, as the
//! container commands are (see [`dispatch`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use berth_node_agent::container::{Containers, NetworkCreate};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

/// The first word of the command line that is not `--data-root` or its value.
pub(super) fn command_word(argv: &[OsString]) -> Option<&str> {
    let mut it = argv.iter().skip(1);
    loop {
        let a = it.next()?.to_str()?;
        if a == "--data-root" {
            it.next()?;
            continue;
        }
        if a.starts_with("--data-root=") {
            continue;
        }
        if a.starts_with('-') {
            return None;
        }
        return Some(a);
    }
}

/// Parses `-l K=V` style labels.
pub(super) fn labels(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Docker's prune confirmation: proceed only on `y`.
pub(super) fn confirm(warning: &str) -> bool {
    eprint!("WARNING! {warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// Runs `f` for each item, one line per failure; exit 1 if any failed.
pub(super) fn each(
    items: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for q in items {
        if let Err(e) = f(q) {
            eprintln!("berth: {}", super::one_line(&e));
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, Parser)]
#[command(name = "berth", version)]
struct NetworkCli {
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
    /// Manage networks
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create a bridge network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON
    Inspect(InspectArgs),
    /// Remove networks
    #[command(visible_alias = "remove")]
    Rm(NamesArgs),
    /// Remove every network no container uses
    Prune(PruneArgs),
    /// Connect a running container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Driver (only bridge)
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// No way out of the network: no default route, no NAT, no host access
    #[arg(long)]
    internal: bool,
    /// Give the network an IPv6 subnet too
    #[arg(long)]
    ipv6: bool,
    /// Subnet in CIDR form (one IPv4 and/or one IPv6)
    #[arg(long)]
    subnet: Vec<String>,
    /// Gateway of a subnet
    #[arg(long)]
    gateway: Vec<String>,
    /// Driver option (com.docker.network.driver.mtu=N)
    #[arg(short, long = "opt", value_name = "K=V")]
    opt: Vec<String>,
    /// Set a label (K=V)
    #[arg(long)]
    label: Vec<String>,
    name: String,
}

#[derive(Debug, Args)]
struct LsArgs {
    /// Only network ids
    #[arg(short, long)]
    quiet: bool,
    /// Full ids
    #[arg(long)]
    no_trunc: bool,
    /// `table` (default) or `json` (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
    /// Filter: name=…, label=K[=V], driver=…
    #[arg(short, long)]
    filter: Vec<String>,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// `json` (the default)
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Debug, Args)]
struct NamesArgs {
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Do not ask for confirmation
    #[arg(short, long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ConnectArgs {
    /// Another DNS name for the container on this network
    #[arg(long)]
    alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// IPv6 address
    #[arg(long)]
    ip6: Option<std::net::Ipv6Addr>,
    network: String,
    container: String,
}

#[derive(Debug, Args)]
struct DisconnectArgs {
    /// Accepted for Docker compatibility
    #[arg(short, long)]
    force: bool,
    network: String,
    container: String,
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`.
#[derive(Debug, Args)]
pub struct PortArgs {
    container: String,
    private_port: Option<String>,
}

/// Runs `berth network …` when `argv` is one; `None` otherwise.
pub fn dispatch(argv: &[OsString]) -> Option<ExitCode> {
    if command_word(argv)? != "network" {
        return None;
    }
    let cli = NetworkCli::parse_from(argv);
    Some(match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("berth: {}", super::one_line(&err));
            ExitCode::FAILURE
        }
    })
}

/// `port`: prints the container's published ports as Docker does.
pub fn port(c: &Containers, a: &PortArgs) -> anyhow::Result<ExitCode> {
    for line in c.port(&a.container, a.private_port.as_deref())? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: NetworkCli) -> anyhow::Result<ExitCode> {
    let c = super::container::open(&cli.data_root)?;
    let Top::Network { command } = cli.command;
    match command {
        NetworkCommand::Create(a) => create(&c, a),
        NetworkCommand::Ls(a) => ls(&c, &a),
        NetworkCommand::Inspect(a) => {
            if a.format.as_deref().is_some_and(|f| f != "json") {
                bail!("--format: only json is supported");
            }
            let mut out = Vec::new();
            let code = each(&a.networks, |n| {
                out.push(c.network_inspect(n)?);
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        NetworkCommand::Rm(a) => each(&a.networks, |n| {
            c.network_remove(n)?;
            println!("{n}");
            Ok(())
        }),
        NetworkCommand::Prune(a) => {
            if !a.force
                && !confirm(
                    "This will remove all custom networks not used by at least one container.",
                )
            {
                return Ok(ExitCode::SUCCESS);
            }
            let removed = c.network_prune()?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in removed {
                    println!("{n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Connect(a) => {
            c.network_connect(&a.network, &a.container, &a.alias, a.ip, a.ip6)?;
            Ok(ExitCode::SUCCESS)
        }
        NetworkCommand::Disconnect(a) => {
            let _ = a.force;
            c.network_disconnect(&a.network, &a.container)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create(c: &Containers, a: CreateArgs) -> anyhow::Result<ExitCode> {
    if a.driver != "bridge" {
        bail!(
            "driver {:?} is not supported; berth networks are bridges",
            a.driver
        );
    }
    let mut mtu = None;
    for o in &a.opt {
        match o.split_once('=') {
            Some(("com.docker.network.driver.mtu", v)) => {
                mtu = Some(v.parse().with_context(|| format!("invalid MTU {v:?}"))?);
            }
            _ => bail!("unsupported network option {o:?} (only com.docker.network.driver.mtu)"),
        }
    }
    let net = c.network_create(&NetworkCreate {
        name: a.name,
        internal: a.internal,
        ipv6: a.ipv6,
        subnets: a.subnet,
        gateways: a.gateway,
        mtu,
        labels: labels(&a.label),
    })?;
    println!("{}", net["Id"].as_str().unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// Pure: whether network `n` (inspect JSON) passes every `name=`, `label=`, `driver=` filter.
fn matches(n: &Value, filters: &[String]) -> anyhow::Result<bool> {
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad filter {f:?}: use KEY=VALUE");
        };
        let ok = match k {
            "name" => n["Name"].as_str().is_some_and(|s| s.contains(v)),
            "driver" => n["Driver"] == v,
            "id" => n["Id"].as_str().is_some_and(|s| s.starts_with(v)),
            "label" => {
                let (lk, lv) = match v.split_once('=') {
                    Some((a, b)) => (a, Some(b)),
                    None => (v, None),
                };
                n["Labels"]
                    .get(lk)
                    .is_some_and(|have| lv.is_none_or(|w| have == w))
            }
            _ => bail!("unsupported filter {k:?} (name, id, driver, label)"),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ls(c: &Containers, a: &LsArgs) -> anyhow::Result<ExitCode> {
    let mut nets = Vec::new();
    for n in c.network_list()? {
        if matches(&n, &a.filter)? {
            nets.push(n);
        }
    }
    let id = |n: &Value| {
        let full = n["Id"].as_str().unwrap_or_default().to_string();
        if a.no_trunc {
            full
        } else {
            full[..12.min(full.len())].to_string()
        }
    };
    if a.quiet {
        for n in &nets {
            println!("{}", id(n));
        }
        return Ok(ExitCode::SUCCESS);
    }
    match a.format.as_str() {
        "json" => {
            for n in &nets {
                let labels: Vec<String> = n["Labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{}",
                    json!({
                        "CreatedAt": n["Created"], "Driver": n["Driver"], "ID": id(n),
                        "IPv6": n["EnableIPv6"].to_string(), "Internal": n["Internal"].to_string(),
                        "Labels": labels.join(","), "Name": n["Name"], "Scope": n["Scope"],
                    })
                );
            }
        }
        "table" => {
            println!("{:<14}{:<24}{:<10}SCOPE", "NETWORK ID", "NAME", "DRIVER");
            for n in &nets {
                println!(
                    "{:<14}{:<24}{:<10}{}",
                    id(n),
                    n["Name"].as_str().unwrap_or_default(),
                    n["Driver"].as_str().unwrap_or_default(),
                    n["Scope"].as_str().unwrap_or_default()
                );
            }
        }
        other => bail!("--format {other:?}: use table or json"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn parser_and_filters() {
        NetworkCli::command().debug_assert();
        let cli = NetworkCli::parse_from([
            "berth",
            "network",
            "create",
            "--subnet",
            "10.9.0.0/24",
            "--label",
            "a=b",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "front",
        ]);
        let Top::Network {
            command: NetworkCommand::Create(a),
        } = cli.command
        else {
            panic!("not create");
        };
        assert_eq!((a.name.as_str(), a.subnet.len()), ("front", 1));
        let n = json!({"Name": "front", "Driver": "bridge", "Id": "abc", "Labels": {"a": "b"}});
        assert!(matches(&n, &["label=a".into(), "name=fro".into()]).unwrap());
        assert!(!matches(&n, &["label=a=c".into()]).unwrap());
        assert!(matches(&n, &["bogus=1".into()]).is_err());
        let argv: Vec<OsString> = ["berth", "--data-root", "/x", "network", "ls"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(command_word(&argv), Some("network"));
    }
}
