//! Command-line surface: the global flags every command shares, and dispatch to one module
//! per command family. Errors reach the user as one line on stderr and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod app_files;
mod build;
mod cluster;
mod compose;
mod config;
mod container;
mod image;
mod network;
mod node;
mod registry;
mod remote;
mod secret;
mod service;
mod version;
mod volume;

/// Declarative multi-container orchestrator: Compose files from one machine to a cluster.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    disable_version_flag = false,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub project: ProjectFlags,

    #[command(flatten)]
    pub daemon: DaemonFlags,

    #[command(subcommand)]
    pub command: Command,
}

/// The Compose project flags, accepted before or after any subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct ProjectFlags {
    /// Compose configuration file (repeatable; later files override earlier ones)
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Project name
    #[arg(
        short = 'p',
        long = "project-name",
        global = true,
        env = "COMPOSE_PROJECT_NAME"
    )]
    pub project_name: Option<String>,

    /// Alternate working directory (default: the directory of the first Compose file)
    #[arg(long, global = true, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,

    /// Alternate environment file (repeatable)
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_files: Vec<PathBuf>,

    /// Profile to enable (repeatable)
    #[arg(long = "profile", global = true, value_name = "NAME")]
    pub profiles: Vec<String>,
}

/// Where node-local state lives, accepted before or after any subcommand.
#[derive(Debug, Clone, Args)]
pub struct DaemonFlags {
    /// Root directory of berth's local state (image store, containers, volumes)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "BERTH_DATA_ROOT",
        default_value = "/var/lib/berth"
    )]
    pub data_root: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, resolve and print the Compose project in canonical form
    Config(config::ConfigArgs),
    /// Download an image from a registry into the local store
    Pull(registry::PullArgs),
    /// Upload a local image to its registry
    Push(registry::PushArgs),
    /// Save credentials for a registry after checking them against it
    Login(registry::LoginArgs),
    /// Remove saved credentials for a registry
    Logout(registry::LogoutArgs),
    /// Show the berth version information
    Version(version::VersionArgs),
    /// Build the images of the project's services that have a `build:` section
    Build(build::BuildArgs),
    /// Manage the build cache
    Builder(build::BuilderArgs),
    /// Manage images
    Image(image::ImageArgs),
    /// List images (alias of `image ls`; with a Compose project, the images its containers use)
    Images(image::LsArgs),
    /// Load images from an archive (alias of `image load`)
    Load(image::LoadArgs),
    /// Save images to an archive (alias of `image save`)
    Save(image::SaveArgs),
    /// Create an image from a root filesystem tar (alias of `image import`)
    Import(image::ImportArgs),
    /// Give an image another name (alias of `image tag`)
    Tag(image::TagArgs),
    /// Remove images (alias of `image rm`)
    Rmi(image::RmArgs),
    #[command(flatten)]
    Compose(compose::Placeholder),
    /// Single containers without Compose: run, ps, logs, stop, kill, rm, start, exec, …
    Container(container::Passthrough),
    /// Manage networks
    Network(container::Passthrough),
    /// Manage volumes
    Volume(container::Passthrough),
    /// Manage the cluster: init, join-token, join, leave
    Cluster(cluster::ClusterArgs),
    /// Manage the cluster's nodes: ls, inspect, update, promote, demote, rm
    Node(node::NodeArgs),
    /// Manage services across the cluster: ls, ps, inspect, scale, rollback
    Service(service::ServiceArgs),
    /// Manage secrets stored in the cluster: create, ls, inspect, rm
    Secret(secret::SecretArgs),
}

pub fn main() -> ExitCode {
    // `berth container …` takes Docker's `-p`/`-f`/`--env-file`, which the global Compose
    // flags would claim: it is parsed by its own parser first.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = container::dispatch(&argv) {
        return code;
    }
    if let Some(code) = network::dispatch(&argv).or_else(|| volume::dispatch(&argv)) {
        return code;
    }
    // the Compose verbs take their project flags before the verb only, which frees `-f`
    // and `-p` for their own meanings (`logs -f`, `rm -f`)
    if let Some(code) = compose::dispatch(&argv) {
        return code;
    }
    let cli = Cli::parse_from(remote::hoist_connection_flags(argv));
    let result = match cli.command {
        Command::Config(args) => config::run(&cli.project, &args),
        Command::Version(args) => version::run(&args),
        Command::Build(args) => build::build_cmd(&cli.project, &cli.daemon, &args),
        Command::Builder(args) => build::builder_cmd(&cli.daemon, &args),
        Command::Image(image::ImageArgs {
            command: image::ImageCommand::Build(args),
        }) => build::image_build_cmd(&cli.project, &cli.daemon, &args),
        Command::Image(args) => image::run(&cli.daemon, args),
        Command::Images(args) => image::run_alias(&cli.daemon, image::ImageCommand::Ls(args)),
        Command::Load(args) => image::run_alias(&cli.daemon, image::ImageCommand::Load(args)),
        Command::Save(args) => image::run_alias(&cli.daemon, image::ImageCommand::Save(args)),
        Command::Import(args) => image::run_alias(&cli.daemon, image::ImageCommand::Import(args)),
        Command::Tag(args) => image::run_alias(&cli.daemon, image::ImageCommand::Tag(args)),
        Command::Rmi(args) => image::run_alias(&cli.daemon, image::ImageCommand::Rm(args)),
        Command::Pull(args) => registry::pull_cmd(&args, &cli.daemon.data_root),
        Command::Push(args) => registry::push_cmd(&args, &cli.daemon.data_root),
        Command::Login(args) => registry::login_cmd(&args),
        Command::Logout(args) => registry::logout_cmd(&args),
        Command::Cluster(args) => cluster::run(args),
        Command::Node(args) => node::run(args),
        Command::Service(args) => service::run(args),
        Command::Secret(args) => secret::run(args),
        Command::Network(_) | Command::Volume(_) => Err(anyhow::anyhow!(
            "network and volume commands take only --data-root before the command name"
        )),
        // reached only when `dispatch` did not recognise the command line (options other
        // than --data-root before `container`); report it rather than guess
        Command::Compose(_) => Err(anyhow::anyhow!(
            "the Compose verbs take -f/-p/--project-directory/--env-file/--profile before the verb: berth [-f FILE] [-p NAME] VERB …"
        )),
        Command::Container(_) => Err(anyhow::anyhow!(
            "only --data-root may come before `container`: berth [--data-root DIR] container COMMAND …"
        )),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            ExitCode::from(1)
        }
    }
}

/// Prints an error for the user: its one line and, when the loader placed it in a Compose
/// file, the lines of that file with carets under the place (every verb that loads a
/// project reports its errors this way).
pub fn report(err: &anyhow::Error) {
    eprintln!("berth: {}", one_line(err));
    if let Some(excerpt) = config::excerpt_for(err) {
        eprint!("{excerpt}");
    }
}

/// Renders an error and its causes as one line: `outer: inner: root cause`.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last().is_none_or(|prev| !prev.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
