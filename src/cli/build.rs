//! `berth build [SERVICE…]` (the Compose project's `build:` sections), `berth image build`
//! (one Dockerfile, `docker build` style) and `berth builder prune`. The builds run in this
//! process on the data root's store with `berth-runc` (crate `berth-build`); this module
//! only turns flags into options and prints progress.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use berth_build::compose::{ComposeBuildOptions, build_services};
use berth_build::{BuildNetwork, BuildOptions, DockerfileSource, Env, Progress};
use clap::Args;

use super::{DaemonFlags, ProjectFlags};

/// `berth build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Services to build (default: every service with a `build:` section)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull the base images
    #[arg(long)]
    pub pull: bool,
    /// Print only the image ids
    #[arg(short, long)]
    pub quiet: bool,
}

/// `berth image build`.
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// The build context directory
    #[arg(value_name = "PATH")]
    pub context: PathBuf,
    /// Name (and tag) of the image; repeatable
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Build this stage and stop
    #[arg(long)]
    pub target: Option<String>,
    /// Add a label to the image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull the base images
    #[arg(long)]
    pub pull: bool,
    /// Network of RUN steps: default (the host's) or none
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,
}

/// `berth builder …`.
#[derive(Debug, Args)]
pub struct BuilderArgs {
    #[command(subcommand)]
    pub command: BuilderCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache (and the content only it used)
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (accepted for Docker compatibility; never asks)
    #[arg(long)]
    pub force: bool,
}

/// Prints `#N [stage i/n] INSTRUCTION` per step (` CACHED` when taken from the cache) and
/// the output of `RUN`s, indented.
struct Printer {
    quiet: bool,
    counter: Mutex<usize>,
}

impl Progress for Printer {
    fn step(&self, stage: &str, index: usize, total: usize, text: &str, cached: bool) {
        if self.quiet {
            return;
        }
        let mut n = self.counter.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let mark = if cached { " CACHED" } else { "" };
        let first = text.lines().next().unwrap_or("");
        eprintln!("#{n} [{stage} {index}/{total}] {first}{mark}");
    }

    fn output(&self, stage: &str, line: &str) {
        if !self.quiet {
            eprintln!("  {stage} | {line}");
        }
    }

    fn warning(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// Finds `berth-runc` next to this executable (or its parent, for test binaries in `deps/`)
/// or in `BERTH_LIBEXEC_DIR`.
fn runtime() -> anyhow::Result<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("BERTH_LIBEXEC_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => {
            let exe = std::env::current_exe().context("locating the berth executable")?;
            let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
            vec![
                dir.clone(),
                dir.parent().map(PathBuf::from).unwrap_or_default(),
            ]
        }
    };
    dirs.iter()
        .map(|d| d.join("berth-runc"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "berth-runc not found next to berth (in {}); build the workspace (`cargo build --workspace`) or set BERTH_LIBEXEC_DIR",
                dirs[0].display()
            )
        })
}

/// What every build of this process shares: the data root, `berth-runc`, the run root of
/// build containers (`/run/berth/build`, or beside `BERTH_RUN_ROOT`), a progress printer
/// on stderr and pulls through `berth pull`. `berth up --build` builds with
/// `berth_build::build_services(&build_env(daemon, quiet)?, &app, &services, &opts)`.
pub(crate) fn build_env(daemon: &DaemonFlags, quiet: bool) -> anyhow::Result<Env> {
    let run_root = std::env::var_os("BERTH_RUN_ROOT")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/run/berth"))
        .join("build");
    let data_root = daemon.data_root.clone();
    let exe = std::env::current_exe().context("locating the berth executable")?;
    let pull_root = data_root.clone();
    // Base images come through `berth pull`, with its credentials and transport rules.
    let pull = move |image: &str| -> Result<(), String> {
        let out = std::process::Command::new(&exe)
            .arg("--data-root")
            .arg(&pull_root)
            .args(["pull", "-q", image])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err
                .trim()
                .trim_start_matches("berth: ")
                .lines()
                .last()
                .unwrap_or("pull failed")
                .to_owned())
        }
    };
    Ok(Env {
        data_root,
        runtime: runtime()?,
        run_root,
        progress: Arc::new(Printer {
            quiet,
            counter: Mutex::new(0),
        }),
        pull: Some(Arc::new(pull)),
    })
}

/// `KEY=VALUE`, or `KEY` taken from this process's environment (skipped when unset).
fn parse_pairs(
    items: &[String],
    what: &str,
    from_env: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None if from_env && !item.is_empty() => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            _ => anyhow::bail!("invalid {what} {item:?}: use KEY=VALUE"),
        }
    }
    Ok(out)
}

pub fn build_cmd(
    project: &ProjectFlags,
    daemon: &DaemonFlags,
    args: &BuildArgs,
) -> anyhow::Result<ExitCode> {
    let mut options = berth_spec::LoadOptions::from_process();
    options.files = project.files.clone();
    options.project_name = project.project_name.clone();
    options.project_directory = project.project_directory.clone();
    options.env_files = project.env_files.clone();
    options.profiles = project.profiles.clone();
    options.services = args.services.clone();
    let loaded = berth_spec::load(&options)?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let over = ComposeBuildOptions {
        no_cache: args.no_cache,
        pull: args.pull,
        build_args: parse_pairs(&args.build_args, "--build-arg", true)?,
    };
    let env = build_env(daemon, args.quiet)?;
    let built = build_services(&env, &loaded.app, &args.services, &over)?;
    if built.is_empty() && !args.quiet {
        eprintln!("no service has a build section");
    }
    let mut stdout = std::io::stdout().lock();
    for b in built {
        if args.quiet {
            writeln!(stdout, "{}", b.id)?;
        } else {
            writeln!(
                stdout,
                "Built {} ({}): {} steps run, {} cached",
                b.image,
                &b.id.hex()[..12],
                b.executed,
                b.cached
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `-f FILE` is the global flag (the Compose file elsewhere): here it names the Dockerfile,
/// as in `docker build -f`.
pub fn image_build_cmd(
    project: &ProjectFlags,
    daemon: &DaemonFlags,
    args: &ImageBuildArgs,
) -> anyhow::Result<ExitCode> {
    let context = std::path::absolute(&args.context)
        .with_context(|| format!("build context {}", args.context.display()))?;
    let mut opts = BuildOptions::new(&context);
    if project.files.len() > 1 {
        anyhow::bail!("give one Dockerfile with -f");
    }
    if let Some(file) = project.files.first() {
        opts.dockerfile = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            DockerfileSource::Inline(text)
        } else {
            // Relative to the current directory, as in `docker build -f`.
            DockerfileSource::Path(std::path::absolute(file)?)
        };
    }
    opts.build_args = parse_pairs(&args.build_args, "--build-arg", true)?;
    opts.labels = parse_pairs(&args.labels, "--label", false)?;
    opts.target = args.target.clone();
    opts.tags = args.tags.clone();
    opts.no_cache = args.no_cache;
    opts.pull = args.pull;
    opts.network = BuildNetwork::parse(&args.network)
        .with_context(|| format!("--network {}: use default, host or none", args.network))?;
    let env = build_env(daemon, args.quiet)?;
    let built = berth_build::build(&env, &opts)?;
    if args.quiet {
        println!("{}", built.id);
    } else {
        println!(
            "Built {} ({} steps run, {} cached){}",
            built.id,
            built.executed,
            built.cached,
            if args.tags.is_empty() {
                String::new()
            } else {
                format!(" as {}", args.tags.join(", "))
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn builder_cmd(daemon: &DaemonFlags, args: &BuilderArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        BuilderCommand::Prune(_) => {
            let cache = berth_build::cache::Cache::open(&daemon.data_root)?;
            let removed = cache.prune()?;
            let store = berth_image::Store::open(daemon.data_root.join("image"))?;
            let freed = store
                .try_gc(&berth_image::GcOptions::default())?
                .map(|r| r.bytes_freed)
                .unwrap_or(0);
            println!("Deleted {removed} build cache records; total reclaimed space: {freed} bytes");
            Ok(ExitCode::SUCCESS)
        }
    }
}
