//! `berth pull`, `berth push`, `berth login`, `berth logout`: flags, credential prompts and
//! progress rendering (bars on a terminal, one quiet line per blob otherwise). The protocol
//! and the store work live in `berth_image::registry`.

use std::collections::HashMap;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use berth_image::registry::client::UploadMode;
use berth_image::registry::credentials::config_key;
use berth_image::registry::digest::short;
use berth_image::registry::progress::{BlobOutcome, Event, Observer, Silent};
use berth_image::registry::pull::{PullOptions, default_platform, parse_platform, pull};
use berth_image::registry::push::{PushOptions, push};
use berth_image::registry::{
    ClientOptions, CredentialStore, Credentials, RegistryClient, TransportPolicy,
};
use berth_image::{Reference, Store};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where the image store lives under the data root.
pub fn image_store_root(data_root: &Path) -> PathBuf {
    data_root.join("image")
}

#[derive(Debug, Clone, Args)]
pub struct TransportArgs {
    /// Allow plain HTTP to this registry (`host[:port]`, repeatable); loopback registries
    /// never need it. Also read from BERTH_INSECURE_REGISTRIES (comma separated).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Platform to pull from a multi-platform image (os/arch[/variant])
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,

    /// Print only the image reference when done
    #[arg(short, long)]
    pub quiet: bool,

    /// Blobs downloaded at once
    #[arg(long, default_value_t = berth_image::registry::pull::DEFAULT_CONCURRENCY)]
    pub max_concurrent_downloads: usize,

    #[command(flatten)]
    pub transport: TransportArgs,

    /// Image reference: name[:tag][@digest]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print only the pushed digest when done
    #[arg(short, long)]
    pub quiet: bool,

    /// Upload blobs in chunks of this many MiB instead of one request each
    #[arg(long, value_name = "MIB")]
    pub chunk_size: Option<usize>,

    #[command(flatten)]
    pub transport: TransportArgs,

    /// Image reference: name[:tag]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username (prompted for on a terminal when absent)
    #[arg(short, long)]
    pub username: Option<String>,

    /// Password (visible in the process list: prefer --password-stdin). `-p` is taken by
    /// the global --project-name flag.
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,

    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,

    #[command(flatten)]
    pub transport: TransportArgs,

    /// Registry (`host[:port]`); Docker Hub when absent
    pub server: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry (`host[:port]`); Docker Hub when absent
    pub server: Option<String>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn credential_store() -> anyhow::Result<CredentialStore> {
    Ok(CredentialStore::from_env()?)
}

fn client_for(
    registry: &str,
    transport: &TransportArgs,
    credentials: Option<Credentials>,
) -> anyhow::Result<RegistryClient> {
    Ok(RegistryClient::new(
        registry,
        ClientOptions {
            policy: TransportPolicy::from_env_and(transport.insecure_registries.clone()),
            credentials,
            ..ClientOptions::default()
        },
    )?)
}

fn parse_reference(input: &str) -> anyhow::Result<Reference> {
    Reference::parse(input).with_context(|| format!("invalid reference {input:?}"))
}

pub fn pull_cmd(args: &PullArgs, data_root: &Path) -> anyhow::Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    let platform = match &args.platform {
        Some(p) => parse_platform(p)?,
        None => default_platform(),
    };
    let store = Store::open(image_store_root(data_root))?;
    let credentials = credential_store()?.get(reference.domain())?;
    let client = client_for(reference.domain(), &args.transport, credentials)?;
    let options = PullOptions {
        platform,
        concurrency: args.max_concurrent_downloads.max(1),
        ..PullOptions::default()
    };
    let observer: Box<dyn Observer> = if args.quiet {
        Box::new(Silent)
    } else if std::io::stdout().is_terminal() {
        Box::new(Bars::new("Pull complete"))
    } else {
        Box::new(Lines)
    };
    if !args.quiet {
        println!(
            "{}: Pulling from {}",
            reference.tag().unwrap_or("latest"),
            reference.repository()
        );
    }
    let report = runtime()?
        .block_on(pull(&client, &store, &reference, &options, &*observer))
        .with_context(|| format!("pull {reference}"))?;
    drop(observer);
    if !args.quiet {
        println!("Digest: {}", report.digest);
        println!(
            "Status: {} for {reference}",
            if report.downloaded == 0 {
                "Image is up to date"
            } else {
                "Downloaded newer image"
            }
        );
    }
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

pub fn push_cmd(args: &PushArgs, data_root: &Path) -> anyhow::Result<ExitCode> {
    let reference = parse_reference(&args.reference)?;
    if reference.digest().is_some() {
        bail!("cannot push {reference}: push a tag, not a digest");
    }
    let store = Store::open(image_store_root(data_root))?;
    let credentials = credential_store()?.get(reference.domain())?;
    let client = client_for(reference.domain(), &args.transport, credentials)?;
    let options = PushOptions {
        mode: match args.chunk_size {
            Some(mib) if mib > 0 => UploadMode::Chunked {
                chunk_size: mib << 20,
            },
            Some(_) => bail!("--chunk-size must be at least 1 MiB"),
            None => UploadMode::Monolithic,
        },
        ..PushOptions::default()
    };
    let observer: Arc<dyn Observer> = if args.quiet {
        Arc::new(Silent)
    } else if std::io::stdout().is_terminal() {
        Arc::new(Bars::new("Pushed"))
    } else {
        Arc::new(Lines)
    };
    if !args.quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let report = runtime()?
        .block_on(push(
            &client,
            &store,
            &reference,
            &options,
            observer.clone(),
        ))
        .with_context(|| format!("push {reference}"))?;
    drop(observer);
    let digest = report.digest.map(|d| d.to_string()).unwrap_or_default();
    if args.quiet {
        println!("{digest}");
    } else {
        if report.platform_only {
            println!(
                "note: only this platform's manifest was pushed (the others were never pulled)"
            );
        }
        println!(
            "{}: digest: {digest} (uploaded {}, mounted {}, already present {})",
            reference.tag().unwrap_or("latest"),
            report.uploaded,
            report.mounted,
            report.existing
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `host[:port]` from what a user may type: `docker.io`, `https://index.docker.io/v1/`,
/// `localhost:5000`.
fn server_name(server: Option<&str>) -> String {
    let raw = server.unwrap_or("docker.io").trim();
    let key = config_key(raw);
    if key == berth_image::registry::credentials::DOCKER_HUB_KEY {
        "docker.io".to_string()
    } else {
        key
    }
}

pub fn login_cmd(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let server = server_name(args.server.as_deref());
    let stdin = std::io::stdin();
    let username = match &args.username {
        Some(u) => u.clone(),
        None if stdin.is_terminal() && !args.password_stdin => prompt("Username: ")?,
        None => bail!("a username is required: pass -u USER"),
    };
    if username.is_empty() {
        bail!("the username is empty");
    }
    let password = if let Some(p) = &args.password {
        eprintln!("WARNING! Using --password is insecure: prefer --password-stdin.");
        p.clone()
    } else if args.password_stdin {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if stdin.is_terminal() {
        prompt_hidden("Password: ")?
    } else {
        bail!("a password is required: use --password-stdin");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let credentials = Credentials { username, password };
    let client = client_for(&server, &args.transport, Some(credentials.clone()))?;
    runtime()?
        .block_on(client.verify_login())
        .with_context(|| format!("login to {server}"))?;
    let store = credential_store()?;
    store.save(&server, &credentials)?;
    println!(
        "Login Succeeded ({server}, saved in {})",
        store.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn logout_cmd(args: &LogoutArgs) -> anyhow::Result<ExitCode> {
    let server = server_name(args.server.as_deref());
    if credential_store()?.remove(&server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(ExitCode::SUCCESS)
}

fn prompt(text: &str) -> anyhow::Result<String> {
    eprint!("{text}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a line from the terminal with echo turned off, restoring it afterwards.
fn prompt_hidden(text: &str) -> anyhow::Result<String> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: `termios` is plain data; tcgetattr fills it for a valid fd or fails.
    let mut original: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is open (it is a terminal, checked by the caller); the pointer is valid.
    if unsafe { libc::tcgetattr(fd, &mut original) } != 0 {
        return prompt(text);
    }
    let mut silent = original;
    silent.c_lflag &= !libc::ECHO;
    silent.c_lflag |= libc::ECHONL;
    // SAFETY: same fd, a termios derived from the one the kernel gave us.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &silent) };
    let answer = prompt(text);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &original) };
    answer
}

/// One quiet line per finished blob, for logs and pipes.
struct Lines;

impl Observer for Lines {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::BlobDone {
                digest, outcome, ..
            } => {
                let what = match outcome {
                    BlobOutcome::AlreadyPresent => "Already exists",
                    BlobOutcome::Downloaded => "Pull complete",
                    BlobOutcome::Uploaded => "Pushed",
                    BlobOutcome::Mounted => "Mounted from another repository",
                };
                format!("{}: {what}", short(digest))
            }
            Event::BlobStart { digest, offset, .. } if *offset > 0 => {
                format!("{}: Resuming at {} bytes", short(digest), offset)
            }
            _ => return,
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// A progress bar per blob with size and speed.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    done_text: &'static str,
    style: ProgressStyle,
}

impl Bars {
    fn new(done_text: &'static str) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10));
        let style = ProgressStyle::with_template(
            "{prefix}: {msg:<14} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Self {
            multi,
            bars: Mutex::new(HashMap::new()),
            done_text,
            style,
        }
    }

    fn bar(&self, digest: &str, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(digest.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(self.style.clone());
                bar.set_prefix(short(digest).to_string());
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            })
            .clone()
    }
}

impl Observer for Bars {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::BlobStart {
                digest,
                size,
                offset,
            } => {
                let bar = self.bar(digest, *size);
                bar.set_position(*offset);
                bar.set_message(if *offset > 0 {
                    "Resuming"
                } else {
                    "Transferring"
                });
            }
            Event::BlobProgress { digest, done, size } => {
                self.bar(digest, *size).set_position(*done);
            }
            Event::BlobRestart { digest } => {
                if let Some(bar) = self
                    .bars
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(*digest)
                {
                    bar.set_position(0);
                    bar.set_message("Restarting");
                }
            }
            Event::BlobDone {
                digest,
                size,
                outcome,
            } => {
                let bar = self.bar(digest, *size);
                let text = match outcome {
                    BlobOutcome::AlreadyPresent => "Already exists",
                    BlobOutcome::Mounted => "Mounted",
                    _ => self.done_text,
                };
                bar.set_position(*size);
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.finish_with_message(text);
            }
            Event::Resolved { .. } | Event::ManifestPushed { .. } => {}
        }
    }
}
