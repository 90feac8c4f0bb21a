//! The single-container commands under `berth container`: `run`, `ps`, `logs`, `stop`,
//! `kill`, `rm`, `start`, `exec`, `inspect`, `stats`, `top`, `wait`, over the node-local
//! container layer (`berth_node_agent::container`), without a daemon. They take Docker's
//! flags, including `-p` (publish), `-f` (follow/force) and `--env-file`, which the global
//! Compose flags would otherwise claim; so they are parsed by their own parser before the
//! main one (see [`dispatch`]). The top-level verbs of the same names are Compose's.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_node_agent::container::{
    Config, ConsoleSocket, ContainerError, Containers, ExecOptions, LogOptions, MountSpec,
    NetworkMode, RunOptions, Status, options::parse_bytes,
};
use clap::{Args, Parser, Subcommand};

/// The word that introduces the container commands: `berth [--data-root DIR] container …`.
pub const GROUP: &str = "container";

#[derive(Debug, Parser)]
#[command(name = "berth container", bin_name = "berth container", version)]
struct ContainerCli {
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
    command: ContainerCommand,
}

#[derive(Debug, Subcommand)]
enum ContainerCommand {
    /// Create and start a container from an image
    Run(Box<RunArgs>),
    /// List containers
    #[command(visible_alias = "ls")]
    Ps(PsArgs),
    /// Show a container's output
    Logs(LogsArgs),
    /// Stop running containers (stop signal, then SIGKILL after the timeout)
    Stop(StopArgs),
    /// Send a signal to running containers
    Kill(KillArgs),
    /// Remove containers
    Rm(RmArgs),
    /// Start stopped containers
    Start(NamesArgs),
    /// Run a command in a running container
    Exec(ExecArgs),
    /// Show containers' configuration and state as JSON
    Inspect(NamesArgs),
    /// Show containers' resource use
    Stats(StatsArgs),
    /// Show a container's processes
    Top(TopArgs),
    /// Wait for containers to exit and print their exit codes
    Wait(NamesArgs),
    /// List a container's published ports
    Port(super::network::PortArgs),
}

/// Placeholder for the main parser's help: the real arguments are parsed by [`dispatch`].
#[derive(Debug, Args)]
pub struct Passthrough {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub args: Vec<OsString>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Keep stdin open and forward it
    #[arg(short, long)]
    interactive: bool,
    /// Give the container a terminal
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable (K=V, or K to take it from here)
    #[arg(short, long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Bind mount or named volume: SOURCE:DEST[:ro], or DEST for an anonymous volume
    #[arg(short, long = "volume", value_name = "SRC:DEST[:ro]")]
    volume: Vec<String>,
    /// Mount: type=bind|volume,source=…,target=…[,readonly][,bind-propagation=…]
    #[arg(long, value_name = "SPEC")]
    mount: Vec<String>,
    /// Mount the volumes of another container: CONTAINER[:ro|rw]
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    volumes_from: Vec<String>,
    /// Publish a port: [IP:]HOST:CONTAINER[/udp]
    #[arg(short, long = "publish", value_name = "[IP:]HOST:CTR")]
    publish: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (name|uid[:group|gid])
    #[arg(short, long)]
    user: Option<String>,
    /// Container name
    #[arg(long)]
    name: Option<String>,
    /// Container hostname
    #[arg(long)]
    hostname: Option<String>,
    /// Network: the default bridge, a network name, host or none
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// DNS server
    #[arg(long)]
    dns: Vec<String>,
    /// Extra /etc/hosts entry (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Mount a tmpfs: /path[:options]
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Memory limit (e.g. 32m, 1g)
    #[arg(short, long)]
    memory: Option<String>,
    /// CPUs (e.g. 1.5)
    #[arg(long)]
    cpus: Option<f64>,
    /// Maximum number of processes
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Add a capability
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Mount the root filesystem read-only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Run berth-init as PID 1 (reaps zombies, forwards signals)
    #[arg(long)]
    init: bool,
    /// Override the image's entrypoint
    #[arg(long)]
    entrypoint: Option<String>,
    /// Set a label (K=V)
    #[arg(short, long)]
    label: Vec<String>,
    image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct PsArgs {
    /// Show all containers, not only running ones
    #[arg(short, long)]
    all: bool,
    /// Only ids
    #[arg(short, long)]
    quiet: bool,
    /// Output format: table or json
    #[arg(long)]
    format: Option<String>,
}

#[derive(Debug, Args)]
struct LogsArgs {
    /// Follow new output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines from the end (or "all")
    #[arg(short = 'n', long)]
    tail: Option<String>,
    /// Prefix each line with its timestamp
    #[arg(short, long)]
    timestamps: bool,
    /// Only lines since this RFC 3339 time
    #[arg(long)]
    since: Option<String>,
    container: String,
}

#[derive(Debug, Args)]
struct StopArgs {
    /// Seconds to wait before SIGKILL
    #[arg(short, long, default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
struct KillArgs {
    /// Signal to send
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    force: bool,
    /// Remove the container's anonymous volumes too
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// Keep stdin open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal
    #[arg(short, long)]
    tty: bool,
    /// User (name|uid[:group|gid])
    #[arg(short, long)]
    user: Option<String>,
    /// Environment variable (K=V)
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory
    #[arg(short, long)]
    workdir: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Print one sample and exit
    #[arg(long = "no-stream")]
    no_stream: bool,
    containers: Vec<String>,
}

#[derive(Debug, Args)]
struct TopArgs {
    container: String,
}

/// If argv is `berth [--data-root DIR] container …`, parses and runs the container command
/// and returns its exit code.
pub fn dispatch(argv: &[OsString]) -> Option<ExitCode> {
    let mut i = 1;
    let group = loop {
        let a = argv.get(i)?.to_str()?;
        if a == "--data-root" {
            i += 2;
            continue;
        }
        if a.starts_with("--data-root=") {
            i += 1;
            continue;
        }
        if a.starts_with('-') {
            return None;
        }
        break i;
    };
    if argv[group] != GROUP {
        return None;
    }
    // the container parser sees `berth [--data-root DIR] <verb> …`
    let mut inner: Vec<OsString> = argv[..group].to_vec();
    inner.extend_from_slice(&argv[group + 1..]);
    let cli = ContainerCli::parse_from(inner);
    let is_run = matches!(cli.command, ContainerCommand::Run(_));
    Some(match run_command(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("berth: {}", super::one_line(&err));
            // Docker's codes: `run` says whose fault it was (125/126/127); others fail with 1
            let code = if is_run {
                err.downcast_ref::<ContainerError>()
                    .map_or(125, ContainerError::exit_code)
            } else {
                1
            };
            ExitCode::from(code as u8)
        }
    })
}

/// Finds `berth-runc`, `berth-shim` and `berth-init`: `BERTH_LIBEXEC_DIR`, else the
/// directory of this executable (or its parent, for test binaries in `deps/`).
/// `BERTH_INIT` names a (static) `berth-init` elsewhere.
fn libexec() -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
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
    let find = |name: &str| -> anyhow::Result<PathBuf> {
        dirs.iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "{name} not found next to berth (in {}); build the workspace (`cargo build --workspace`) or set BERTH_LIBEXEC_DIR",
                    dirs[0].display()
                )
            })
    };
    let (runtime, shim) = (find("berth-runc")?, find("berth-shim")?);
    let init = match std::env::var_os("BERTH_INIT") {
        Some(p) => PathBuf::from(p),
        None => find("berth-init")?,
    };
    Ok((runtime, shim, init))
}

pub(super) fn open(data_root: &std::path::Path) -> anyhow::Result<Containers> {
    let (runtime, shim, init) = libexec()?;
    let run_root = std::env::var_os("BERTH_RUN_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/berth/runc"));
    Ok(Containers::open(Config {
        data_root: data_root.to_path_buf(),
        run_root,
        runtime,
        shim,
        init,
    })?)
}

fn run_command(cli: ContainerCli) -> anyhow::Result<ExitCode> {
    let c = open(&cli.data_root)?;
    match cli.command {
        ContainerCommand::Run(a) => run(&c, *a),
        ContainerCommand::Ps(a) => ps(&c, &a),
        ContainerCommand::Logs(a) => logs(&c, &a),
        ContainerCommand::Stop(a) => each(&a.containers, |q| {
            c.stop(q, Duration::from_secs(a.time))?;
            println!("{q}");
            Ok(())
        }),
        ContainerCommand::Kill(a) => {
            let sig = berth_node_agent::container::parse_signal(&a.signal)?;
            each(&a.containers, |q| {
                c.kill(q, sig)?;
                println!("{q}");
                Ok(())
            })
        }
        ContainerCommand::Rm(a) => each(&a.containers, |q| {
            c.remove_with_volumes(q, a.force, a.volumes)?;
            println!("{q}");
            Ok(())
        }),
        ContainerCommand::Start(a) => each(&a.containers, |q| {
            c.start(q, false)?;
            println!("{q}");
            Ok(())
        }),
        ContainerCommand::Exec(a) => exec(&c, a),
        ContainerCommand::Inspect(a) => {
            let mut out = Vec::new();
            let code = each(&a.containers, |q| {
                out.push(c.inspect(q)?);
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        ContainerCommand::Stats(a) => stats(&c, &a),
        ContainerCommand::Top(a) => {
            let procs = c.top(&a.container)?;
            println!("{:<8} {:<8} {:<6} CMD", "PID", "PPID", "UID");
            for p in procs {
                println!("{:<8} {:<8} {:<6} {}", p.pid, p.ppid, p.uid, p.command);
            }
            Ok(ExitCode::SUCCESS)
        }
        ContainerCommand::Port(a) => super::network::port(&c, &a),
        ContainerCommand::Wait(a) => each(&a.containers, |q| {
            let (_, code) = c.wait(q)?;
            println!("{code}");
            Ok(())
        }),
    }
}

/// Runs `f` for each container, reporting failures one line each; exit 1 if any failed.
fn each(
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

fn run_options(a: &RunArgs) -> anyhow::Result<RunOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading env file {}", f.display()))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.push(line.to_string());
        }
    }
    env.extend(a.env.iter().cloned());
    let env = env
        .into_iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e)
            } else {
                std::env::var(&e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(RunOptions {
        name: a.name.clone(),
        image: a.image.clone(),
        entrypoint: a.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        }),
        cmd: a.command.clone(),
        env,
        mounts: a
            .volume
            .iter()
            .map(|v| MountSpec::parse(v))
            .chain(a.mount.iter().map(|m| MountSpec::parse_mount(m)))
            .collect::<Result<_, _>>()?,
        volumes_from: a.volumes_from.clone(),
        tmpfs: a.tmpfs.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        memory: a.memory.as_deref().map(parse_bytes).transpose()?,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        read_only: a.read_only,
        init: a.init,
        tty: a.tty,
        stdin: a.interactive,
        labels,
        network: a
            .network
            .as_deref()
            .map(NetworkMode::parse)
            .unwrap_or_default(),
        ports: a.publish.clone(),
        dns: a.dns.clone(),
        add_host: a.add_host.clone(),
        auto_remove: a.rm,
        // the Compose-only options (devices, sysctls, ulimits, …) keep their defaults
        ..Default::default()
    })
}

fn run(c: &Containers, a: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = run_options(&a)?;
    run_with(c, opts, a.detach, a.rm, a.tty, a.interactive)
}

/// How a one-off container is attached: detached, removed on exit, with a terminal, with
/// stdin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attach {
    pub detach: bool,
    pub rm: bool,
    pub tty: bool,
    pub interactive: bool,
}

/// Creates and runs a container on this node as `berth container run` does (used by the
/// Compose `run`, which builds the options from a service).
pub fn run_local(
    data_root: &std::path::Path,
    opts: RunOptions,
    how: Attach,
) -> anyhow::Result<ExitCode> {
    let c = open(data_root)?;
    run_with(&c, opts, how.detach, how.rm, how.tty, how.interactive)
}

/// Runs a command in a container of this node as `berth container exec` does (used by the
/// Compose `exec` once the daemon named the container).
pub fn exec_local(
    data_root: &std::path::Path,
    container: &str,
    command: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    how: Attach,
) -> anyhow::Result<ExitCode> {
    let c = open(data_root)?;
    exec(
        &c,
        ExecArgs {
            interactive: how.interactive,
            tty: how.tty,
            user,
            env,
            workdir,
            container: container.to_owned(),
            command,
        },
    )
}

fn run_with(
    c: &Containers,
    opts: RunOptions,
    detach: bool,
    rm: bool,
    tty: bool,
    interactive: bool,
) -> anyhow::Result<ExitCode> {
    let record = c.create(opts)?;
    let id = record.id.clone();
    if detach {
        if let Err(e) = c.start(&id, false) {
            if rm {
                let _ = c.remove(&id, true);
            }
            return Err(e.into());
        }
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let started = match c.start(&id, true) {
        Ok(s) => s,
        Err(e) => {
            if rm {
                let _ = c.remove(&id, true);
            }
            return Err(e.into());
        }
    };
    let shim = started.shim.clone();
    let mut attach = started.attach.context("attach stream missing")?;
    // with a terminal on both sides, ours goes raw (the container's pty does the line
    // discipline) and follows our window size
    let _raw = if tty { RawTerminal::enter() } else { None };
    if tty {
        resize(&shim);
    }
    forward_signals(shim.clone(), tty);
    if interactive {
        // stdin goes through a second attach connection, so this one only reads
        if let Ok(mut input) = shim.attach(true, true) {
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut stdin = std::io::stdin().lock();
                loop {
                    match std::io::Read::read(&mut stdin, &mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = input.close_stdin();
                            break;
                        }
                        Ok(n) => {
                            if input.write_stdin(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    }
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    while let Some((stream, data)) = attach.next_chunk()? {
        match stream {
            berth_shim::log::Stream::Stdout => {
                let mut o = stdout.lock();
                let _ = o.write_all(&data);
                let _ = o.flush();
            }
            berth_shim::log::Stream::Stderr => {
                let mut e = stderr.lock();
                let _ = e.write_all(&data);
            }
        }
    }
    let (_, code) = c.wait(&id)?;
    if rm {
        c.remove(&id, true)?;
    }
    Ok(ExitCode::from((code & 0xff) as u8))
}

/// Our terminal in raw mode until dropped; `None` when stdin is not a terminal.
struct RawTerminal(libc::termios);

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        // SAFETY: termios calls on fd 0 with a zeroed struct the kernel fills in.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Some(RawTerminal(saved))
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter` on the same descriptor.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}

/// Gives the container's pty our window size.
fn resize(shim: &berth_shim::ShimHandle) {
    // SAFETY: TIOCGWINSZ fills a zeroed winsize; failure (not a terminal) is checked.
    let ws = unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0).then_some(ws)
    };
    if let Some(ws) = ws.filter(|w| w.ws_row > 0) {
        let _ = shim.resize(ws.ws_row, ws.ws_col);
    }
}

/// Forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT to the container while `run` is attached, and
/// with a terminal turns SIGWINCH into a resize.
fn forward_signals(shim: berth_shim::ShimHandle, tty: bool) {
    // SAFETY: building a signal set in a zeroed local; the mask applies to this thread and
    // is inherited by the forwarding thread spawned afterwards (and by the attach loop).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        if tty {
            libc::sigaddset(&mut set, libc::SIGWINCH);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let set_copy = set;
        std::thread::spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: waiting on a valid, initialized set with the signals blocked.
                if libc::sigwait(&set_copy, &mut sig) == 0 {
                    if sig == libc::SIGWINCH {
                        resize(&shim);
                    } else {
                        let _ = shim.kill(sig, false);
                    }
                }
            }
        });
    }
}

fn ps(c: &Containers, a: &PsArgs) -> anyhow::Result<ExitCode> {
    let list = c.list(a.all)?;
    if a.quiet {
        for r in &list {
            println!("{}", r.short_id());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.format.as_deref() == Some("json") {
        for r in &list {
            let v = serde_json::json!({
                "ID": r.short_id(), "Names": r.name, "Image": r.config.image,
                "Command": r.args.join(" "), "CreatedAt": r.created,
                "State": r.state.status.as_str(), "Status": status_text(r),
                "Ports": r.config.ports.join(", "), "Labels": r.labels,
            });
            println!("{v}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(f) = &a.format {
        if f != "table" {
            bail!("unknown --format {f:?}: use table or json");
        }
    }
    println!(
        "{:<14}{:<22}{:<24}{:<22}{:<26}NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    );
    for r in &list {
        let mut cmd = format!("\"{}\"", r.args.join(" "));
        if cmd.len() > 22 {
            cmd.truncate(20);
            cmd.push_str("…\"");
        }
        println!(
            "{:<14}{:<22}{:<24}{:<22}{:<26}{}",
            r.short_id(),
            r.config.image,
            cmd,
            ago(&r.created).map_or_else(|| r.created.clone(), |a| format!("{a} ago")),
            status_text(r),
            r.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status_text(r: &berth_node_agent::container::Record) -> String {
    match r.state.status {
        Status::Running => format!("Up {}", ago(&r.state.started_at).unwrap_or_default()),
        Status::Created => "Created".into(),
        Status::Exited => match ago(&r.state.finished_at) {
            Some(t) => format!("Exited ({}) {t} ago", r.state.exit_code),
            None => format!("Exited ({})", r.state.exit_code),
        },
    }
}

/// How long ago an RFC 3339 UTC time was, as Docker words it (`5 seconds`, `3 minutes`).
fn ago(time: &str) -> Option<String> {
    let then = epoch_seconds(time)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(human_duration((now - then).max(0)))
}

fn human_duration(secs: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match secs {
        s if s < 60 => plural(s, "second"),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 86_400 => plural(s / 3600, "hour"),
        s => plural(s / 86_400, "day"),
    }
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS…Z` (the fraction is ignored).
fn epoch_seconds(t: &str) -> Option<i64> {
    let num = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    // days from civil (proleptic Gregorian), Howard Hinnant's algorithm
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

fn logs(c: &Containers, a: &LogsArgs) -> anyhow::Result<ExitCode> {
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(
            n.parse()
                .with_context(|| format!("--tail {n}: not a number"))?,
        ),
    };
    let opts = LogOptions {
        follow: a.follow,
        tail,
        since: a.since.as_deref().map(since_time).transpose()?,
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    c.logs(&a.container, &opts, |r| {
        let line = if a.timestamps {
            format!("{} {}", r.time, r.log)
        } else {
            r.log.clone()
        };
        let ok = match r.stream {
            berth_shim::log::Stream::Stdout => {
                let mut o = stdout.lock();
                o.write_all(line.as_bytes()).and_then(|_| o.flush())
            }
            berth_shim::log::Stream::Stderr => stderr.lock().write_all(line.as_bytes()),
        };
        ok.is_ok()
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `--since`: an RFC 3339 time as is, or a duration before now (`90s`, `10m`, `2h`).
fn since_time(s: &str) -> anyhow::Result<String> {
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        _ => return Ok(s.to_string()),
    };
    let Ok(n) = s[..s.len() - 1].parse::<u64>() else {
        return Ok(s.to_string());
    };
    let t = std::time::SystemTime::now()
        .checked_sub(Duration::from_secs(n * unit))
        .context("--since is before the epoch")?;
    Ok(berth_shim::time::format_rfc3339(t))
}

fn exec(c: &Containers, a: ExecArgs) -> anyhow::Result<ExitCode> {
    // with -t the runtime hands us the pty master over a console socket and we proxy it
    let console = if a.tty {
        let parent = c
            .config()
            .run_root
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Some(ConsoleSocket::bind(&parent)?)
    } else {
        None
    };
    let mut cmd = c.exec_command(
        &a.container,
        &ExecOptions {
            args: a.command,
            env: a.env,
            workdir: a.workdir,
            user: a.user,
            tty: a.tty,
            console_socket: console.as_ref().map(ConsoleSocket::path),
        },
    )?;
    if !a.interactive {
        cmd.stdin(std::process::Stdio::null());
    }
    let mut child = cmd.spawn().context("running the runtime's exec")?;
    if let Some(console) = &console {
        let master = console.receive(|| matches!(child.try_wait(), Ok(None)));
        match master {
            Ok(master) => proxy_pty(master, a.interactive),
            Err(e) => {
                let status = child.wait()?;
                if status.success() {
                    return Err(e.into());
                }
            }
        }
    }
    let status = child.wait().context("running the runtime's exec")?;
    let code = status
        .code()
        .or_else(|| std::os::unix::process::ExitStatusExt::signal(&status).map(|s| 128 + s))
        .unwrap_or(1);
    Ok(ExitCode::from((code & 0xff) as u8))
}

/// Copies the pty's output to stdout until the process closes it (and, with `input`, our
/// stdin to the pty), with our terminal raw and the pty at our window size.
fn proxy_pty(master: std::os::fd::OwnedFd, input: bool) {
    use std::io::Read;
    let _raw = RawTerminal::enter();
    // SAFETY: TIOCGWINSZ on our stdout and TIOCSWINSZ on the master we own; zeroed winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&master),
                libc::TIOCSWINSZ,
                &ws,
            );
        }
    }
    let mut out = std::fs::File::from(master);
    if input {
        if let Ok(mut to_pty) = out.try_clone() {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_pty);
            });
        }
    }
    let mut buf = [0u8; 8192];
    let stdout = std::io::stdout();
    // EIO once the last process holding the slave end is gone
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut o = stdout.lock();
        let _ = o.write_all(&buf[..n]);
        let _ = o.flush();
    }
}

fn stats(c: &Containers, a: &StatsArgs) -> anyhow::Result<ExitCode> {
    let targets: Vec<String> = if a.containers.is_empty() {
        c.list(false)?.into_iter().map(|r| r.id).collect()
    } else {
        a.containers.clone()
    };
    loop {
        println!(
            "{:<14}{:<22}{:>14}{:>14}{:>12}{:>8}",
            "CONTAINER ID", "NAME", "MEM USAGE", "MEM LIMIT", "CPU TIME", "PIDS"
        );
        for q in &targets {
            match c.stats(q) {
                Ok(s) => println!(
                    "{:<14}{:<22}{:>14}{:>14}{:>12}{:>8}",
                    s.record.short_id(),
                    s.record.name,
                    human(s.cgroup.memory.usage_bytes),
                    s.cgroup.memory.limit_bytes.map_or("-".into(), human),
                    format!("{:.2}s", s.cgroup.cpu.usage_ns as f64 / 1e9),
                    s.cgroup.pids.current
                ),
                Err(e) => eprintln!("berth: {q}: {e}"),
            }
        }
        if a.no_stream {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn human(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn times_render_like_docker() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            epoch_seconds("2026-11-22T10:54:41.74Z"),
            Some(1_795_344_881)
        );
        assert_eq!(epoch_seconds("garbage"), None);
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(125), "2 minutes");
        assert_eq!(human_duration(7200), "2 hours");
    }

    #[test]
    fn command_line_definition_is_consistent() {
        ContainerCli::command().debug_assert();
    }

    #[test]
    fn docker_flags_parse() {
        let cli = ContainerCli::parse_from([
            "berth",
            "run",
            "-d",
            "--rm",
            "-p",
            "127.0.0.1:8080:80",
            "-e",
            "A=1",
            "-v",
            "/h:/c:ro",
            "--memory",
            "32m",
            "busybox",
            "sh",
            "-c",
            "exit 3",
        ]);
        let ContainerCommand::Run(a) = cli.command else {
            panic!("not run")
        };
        let o = run_options(&a).unwrap();
        assert_eq!(o.ports, ["127.0.0.1:8080:80"]);
        assert_eq!(o.memory, Some(32 << 20));
        assert_eq!(o.cmd, ["sh", "-c", "exit 3"]);
        assert!(o.auto_remove && o.mounts[0].read_only);
        let argv: Vec<OsString> = ["berth", "--data-root", "/x", "image", "ls"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(dispatch(&argv).is_none());
    }
}
