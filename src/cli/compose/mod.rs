//! The Compose verbs at the top of the command line: `up`, `down`, `ps`, `logs`, `exec`,
//! `run`, `start`, `stop`, `restart`, `kill`, `pause`, `unpause`, `rm`, `scale`, `top`,
//! `port`, `images`, `events`, `ls`, `wait`. They talk to `berthd` over its gRPC API
//! (`-H/--host`, `BERTH_HOST`), starting it when none answers and the user is root.
//!
//! Like `docker compose`, the project flags (`-f`, `-p`, `--project-directory`,
//! `--env-file`, `--profile`) come before the verb, which frees `-f` and `-p` for the verbs'
//! own meanings (`logs -f`, `rm -f`); so these verbs have their own parser, tried before the
//! main one (see [`dispatch`]). Rendering lives in [`render`] and [`progress`] (pure); this
//! module and the verb modules only move data between the daemon and the terminal.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod client;
mod daemon_start;
mod down;
mod exec;
mod lifecycle;
mod logs;
mod progress;
mod project;
mod query;
mod render;
mod up;

use super::ProjectFlags;

/// The verbs [`dispatch`] takes over.
const VERBS: [&str; 20] = [
    "up", "down", "ps", "logs", "exec", "run", "start", "stop", "restart", "kill", "pause",
    "unpause", "rm", "scale", "top", "port", "images", "events", "ls", "wait",
];

/// Flags of the main parser that take a value, to skip while looking for the verb.
const VALUED: [&str; 14] = [
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--project-directory",
    "--env-file",
    "--profile",
    "--data-root",
    "-H",
    "--host",
    "--progress",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
];

#[derive(Debug, Parser)]
#[command(name = "berth", bin_name = "berth", version)]
pub struct ComposeCli {
    /// Compose configuration file (repeatable; later files override earlier ones)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name", env = "COMPOSE_PROJECT_NAME")]
    project_name: Option<String>,
    /// Alternate working directory (default: the directory of the first Compose file)
    #[arg(long, value_name = "DIR")]
    project_directory: Option<PathBuf>,
    /// Alternate environment file (repeatable)
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Profile to enable (repeatable)
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    #[command(flatten)]
    pub conn: Connection,
    /// Progress output: auto, tty, plain or quiet
    #[arg(long, global = true, value_enum, default_value = "auto")]
    progress: progress::Mode,
    #[command(subcommand)]
    verb: Verb,
}

/// How to reach the daemon, and the data root a started daemon gets.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Daemon address: unix:///path or tcp://host:port
    #[arg(
        short = 'H',
        long = "host",
        global = true,
        env = "BERTH_HOST",
        value_name = "ADDR"
    )]
    pub host: Option<String>,
    /// Root directory of berth's local state (for a daemon started by this command)
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "BERTH_DATA_ROOT",
        default_value = "/var/lib/berth"
    )]
    pub data_root: PathBuf,
    #[command(flatten)]
    pub tls: crate::cli::remote::TlsFlags,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Create and start the project's containers (converging a running project)
    Up(up::UpArgs),
    /// Stop and remove the project's containers and networks
    Down(down::DownArgs),
    /// List the project's containers
    Ps(query::PsArgs),
    /// Show the output of the project's containers
    Logs(logs::LogsArgs),
    /// Run a command in a running service container
    Exec(exec::ExecArgs),
    /// Run a one-off command in a new container of a service
    Run(exec::RunArgs),
    /// Start services' stopped containers
    Start(lifecycle::ServicesArgs),
    /// Stop services' containers
    Stop(lifecycle::TimeoutArgs),
    /// Restart services' containers
    Restart(lifecycle::TimeoutArgs),
    /// Send a signal to services' containers
    Kill(lifecycle::KillArgs),
    /// Pause services' containers
    Pause(lifecycle::ServicesArgs),
    /// Unpause services' containers
    Unpause(lifecycle::ServicesArgs),
    /// Remove services' stopped containers
    Rm(lifecycle::RmArgs),
    /// Set the number of containers of services (SERVICE=N…)
    Scale(lifecycle::ScaleArgs),
    /// Show the processes of the project's containers
    Top(query::ServicesOnly),
    /// Print the public address of a service's published port
    Port(query::PortArgs),
    /// List the images the project's containers use
    Images(query::ImagesArgs),
    /// Stream the project's container and task events
    Events(logs::EventsArgs),
    /// List the deployed projects
    Ls(query::LsArgs),
    /// Wait for services' containers to stop and print their exit codes
    Wait(lifecycle::WaitArgs),
}

/// Entries for the main parser's help; the real arguments are parsed by [`dispatch`].
#[derive(Debug, Subcommand)]
pub enum Placeholder {
    /// Create and start the project's containers (converging a running project)
    Up(Passthrough),
    /// Stop and remove the project's containers and networks
    Down(Passthrough),
    /// List the project's containers
    Ps(Passthrough),
    /// Show the output of the project's containers
    Logs(Passthrough),
    /// Run a command in a running service container
    Exec(Passthrough),
    /// Run a one-off command in a new container of a service
    Run(Passthrough),
    /// Start services' stopped containers
    Start(Passthrough),
    /// Stop services' containers
    Stop(Passthrough),
    /// Restart services' containers
    Restart(Passthrough),
    /// Send a signal to services' containers
    Kill(Passthrough),
    /// Pause services' containers
    Pause(Passthrough),
    /// Unpause services' containers
    Unpause(Passthrough),
    /// Remove services' stopped containers
    Rm(Passthrough),
    /// Set the number of containers of services (SERVICE=N…)
    Scale(Passthrough),
    /// Show the processes of the project's containers
    Top(Passthrough),
    /// Print the public address of a service's published port
    Port(Passthrough),
    /// Stream the project's container and task events
    Events(Passthrough),
    /// List the deployed projects
    Ls(Passthrough),
    /// Wait for services' containers to stop and print their exit codes
    Wait(Passthrough),
}

#[derive(Debug, Args)]
pub struct Passthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<OsString>,
}

/// What every verb gets: the project flags, the connection and the progress mode.
pub struct Context {
    pub project: ProjectFlags,
    pub conn: Connection,
    pub progress: progress::Mode,
}

/// If argv names a Compose verb (after any project flags), parses and runs it and returns
/// its exit code.
pub fn dispatch(argv: &[OsString]) -> Option<ExitCode> {
    let (verb, project_given) = find_verb(argv)?;
    if !VERBS.contains(&verb.as_str()) {
        return None;
    }
    // `berth images` without a project is the image store's list (`image ls`); with one
    // (flags, or a Compose file here) it is Compose's.
    if verb == "images" && !project_given && !project::file_here() {
        return None;
    }
    let cli = ComposeCli::parse_from(argv);
    let ctx = Context {
        project: ProjectFlags {
            files: cli.files,
            project_name: cli.project_name,
            project_directory: cli.project_directory,
            env_files: cli.env_files,
            profiles: cli.profiles,
        },
        conn: cli.conn,
        progress: cli.progress,
    };
    Some(match run(&ctx, cli.verb) {
        Ok(code) => code,
        Err(err) => {
            super::report(&err);
            ExitCode::from(1)
        }
    })
}

/// The first word that is not a flag or a flag's value, and whether a project flag came
/// before it.
fn find_verb(argv: &[OsString]) -> Option<(String, bool)> {
    let mut project_given = false;
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        let a = a.to_str()?;
        if VALUED.contains(&a) {
            project_given |= !matches!(a, "--data-root" | "-H" | "--host" | "--progress");
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            project_given |= [
                "--file=",
                "--project-name=",
                "--project-directory=",
                "--env-file=",
            ]
            .iter()
            .any(|p| a.starts_with(p));
            i += 1;
            continue;
        }
        return Some((a.to_owned(), project_given));
    }
    None
}

fn run(ctx: &Context, verb: Verb) -> anyhow::Result<ExitCode> {
    match verb {
        Verb::Up(a) => up::run(ctx, a),
        Verb::Down(a) => down::run(ctx, &a),
        Verb::Ps(a) => query::ps(ctx, &a),
        Verb::Logs(a) => logs::logs(ctx, &a),
        Verb::Exec(a) => exec::exec(ctx, a),
        Verb::Run(a) => exec::run(ctx, a),
        Verb::Start(a) => lifecycle::action(ctx, lifecycle::Kind::Start, &a.services, None, ""),
        Verb::Stop(a) => lifecycle::action(ctx, lifecycle::Kind::Stop, &a.services, a.timeout, ""),
        Verb::Restart(a) => {
            lifecycle::action(ctx, lifecycle::Kind::Restart, &a.services, a.timeout, "")
        }
        Verb::Kill(a) => {
            lifecycle::action(ctx, lifecycle::Kind::Kill, &a.services, None, &a.signal)
        }
        Verb::Pause(a) => lifecycle::action(ctx, lifecycle::Kind::Pause, &a.services, None, ""),
        Verb::Unpause(a) => lifecycle::action(ctx, lifecycle::Kind::Unpause, &a.services, None, ""),
        Verb::Rm(a) => lifecycle::rm(ctx, &a),
        Verb::Scale(a) => lifecycle::scale(ctx, &a),
        Verb::Top(a) => query::top(ctx, &a),
        Verb::Port(a) => query::port(ctx, &a),
        Verb::Images(a) => query::images(ctx, &a),
        Verb::Events(a) => logs::events(ctx, &a),
        Verb::Ls(a) => query::ls(ctx, &a),
        Verb::Wait(a) => lifecycle::wait(ctx, &a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_verb_is_found_after_project_flags() {
        let a = argv(&["berth", "-f", "x.yaml", "-p", "demo", "logs", "-f"]);
        assert_eq!(find_verb(&a), Some(("logs".into(), true)));
        let a = argv(&[
            "berth",
            "--data-root",
            "/tmp/r",
            "-H",
            "unix:///s",
            "--progress",
            "plain",
            "ps",
        ]);
        assert_eq!(find_verb(&a), Some(("ps".into(), false)));
        let a = argv(&["berth", "--project-name=demo", "images"]);
        assert_eq!(find_verb(&a), Some(("images".into(), true)));
        assert_eq!(find_verb(&argv(&["berth", "--version"])), None);
    }

    #[test]
    fn the_parser_gives_verbs_their_own_short_flags() {
        let cli = ComposeCli::try_parse_from(argv(&[
            "berth", "-f", "a.yaml", "-p", "demo", "logs", "-f", "--tail", "5", "web",
        ]))
        .expect("parse");
        assert_eq!(cli.files, [PathBuf::from("a.yaml")]);
        assert_eq!(cli.project_name.as_deref(), Some("demo"));
        match cli.verb {
            Verb::Logs(l) => {
                assert!(l.follow);
                assert_eq!(l.tail.as_deref(), Some("5"));
                assert_eq!(l.services, ["web"]);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = ComposeCli::try_parse_from(argv(&[
            "berth",
            "up",
            "-d",
            "--scale",
            "web=3",
            "--wait",
            "-H",
            "unix:///tmp/b.sock",
        ]))
        .expect("parse");
        assert_eq!(cli.conn.host.as_deref(), Some("unix:///tmp/b.sock"));
        assert!(matches!(cli.verb, Verb::Up(ref u) if u.detach && u.wait && u.scale == ["web=3"]));
    }

    #[test]
    fn verbs_and_the_main_parser_agree() {
        use clap::CommandFactory;
        // every verb has a help entry in the main parser, except `images`, whose main entry
        // is the image store's alias
        let sub: Vec<String> = Placeholder::augment_subcommands(clap::Command::new("x"))
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        for verb in VERBS {
            assert!(verb == "images" || sub.iter().any(|s| s == verb), "{verb}");
        }
        ComposeCli::command().debug_assert();
    }
}
