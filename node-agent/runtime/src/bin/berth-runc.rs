//! berth-runc: an OCI runtime with runc's command line, for berth's shim and for dockerd
//! (`dockerd --add-runtime berth=/path/to/berth-runc`).
//!
//! Single-threaded on purpose (no async runtime): it forks into namespaces.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use berth_runtime::ops;
use berth_runtime::state;
use berth_runtime::{CreateOptions, ExecOptions, memfd, tty};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "berth-runc",
    version,
    about = "berth's OCI runtime (runc-compatible)"
)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/berth-runc")]
    root: PathBuf,
    /// Log file (errors and, with --debug, details).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Accepted for compatibility; cgroups are managed through cgroupfs.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
struct CreateArgs {
    /// Bundle directory (holds config.json).
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (as for a rootfs on ramfs).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted for compatibility; no session keyring is created.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Accepted for compatibility; only 0 is supported.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print the state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to the init, or every process with --all.
    Kill {
        id: String,
        signal: Option<String>,
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Delete a container (its cgroup and state).
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create and start, then wait (unless --detach) and delete.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Run a process in a running container.
    Exec {
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        #[arg(long, short = 't')]
        tty: bool,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        #[arg(long, short = 'e')]
        env: Vec<String>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(long, short = 'u')]
        user: Option<String>,
        /// Accepted for compatibility.
        #[arg(long = "preserve-fds", default_value_t = 0)]
        preserve_fds: u32,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write a default config.json.
    Spec {
        #[arg(long)]
        rootless: bool,
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
    /// List the container's processes.
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
        /// Accepted for compatibility (ps options); ignored.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Print what this runtime supports (OCI features JSON).
    Features,
    /// Change a container's resources (`linux.resources` JSON from a file, or `-` for stdin).
    Update {
        #[arg(long, short = 'r')]
        resources: PathBuf,
        id: String,
    },
}

/// The log file, written the way dockerd/containerd read it.
struct Logger {
    file: Option<std::fs::File>,
    json: bool,
    debug: bool,
}

impl Logger {
    fn open(cli: &Cli) -> Logger {
        let file = cli.log.as_ref().and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Logger {
            file,
            json: cli.log_format == LogFormat::Json,
            debug: cli.debug,
        }
    }

    fn log(&mut self, level: &str, msg: &str) {
        if level == "debug" && !self.debug {
            return;
        }
        let time = state::now_rfc3339();
        let Some(f) = self.file.as_mut() else {
            if level != "error" && self.debug {
                eprintln!("berth-runc: {level}: {msg}");
            }
            return;
        };
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}")
        };
        let _ = writeln!(f, "{line}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let enters_container = matches!(cli.cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec { .. });
    if enters_container && !memfd::is_sealed() {
        let e = memfd::reexec();
        // Running unsealed would reopen CVE-2019-5736: refuse.
        eprintln!("berth-runc: {e}");
        let mut log = Logger::open(&cli);
        log.log("error", &e.to_string());
        return ExitCode::from(1);
    }
    // SAFETY: removing our own guard variable before anything else reads the environment.
    unsafe { std::env::remove_var(memfd::GUARD_ENV) };
    let mut log = Logger::open(&cli);
    if cli.systemd_cgroup {
        log.log("warning", "--systemd-cgroup: systemd cgroup paths are honoured, but cgroups are managed with the cgroupfs driver");
    }
    log.log("debug", &format!("{:?}", cli.cmd));
    match run(&cli, &mut log) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = format!("{e:#}");
            log.log("error", &msg);
            eprintln!("berth-runc: {msg}");
            ExitCode::from(1)
        }
    }
}

fn create_opts(cli: &Cli, a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        root: cli.root.clone(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        systemd_cgroup: cli.systemd_cgroup,
        no_pivot: a.no_pivot,
    }
}

fn run(cli: &Cli, log: &mut Logger) -> Result<u8> {
    let root = &cli.root;
    match &cli.cmd {
        Cmd::Create(a) => {
            if a.preserve_fds > 0 {
                bail!("--preserve-fds is not supported");
            }
            let saved = berth_runtime::create(&create_opts(cli, a))?;
            log.log("debug", &format!("created {} pid {}", saved.id, saved.pid));
            Ok(0)
        }
        Cmd::Start { id } => {
            ops::start(root, id)?;
            Ok(0)
        }
        Cmd::State { id } => {
            let s = ops::state(root, id)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(0)
        }
        Cmd::Kill { id, signal, all } => {
            let sig = ops::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            ops::kill_container(root, id, sig, *all)?;
            Ok(0)
        }
        Cmd::Delete { force, id } => {
            ops::delete(root, id, *force)?;
            Ok(0)
        }
        Cmd::Run { create, detach } => {
            let waiter = if *detach {
                None
            } else {
                Some(Waiter::install()?)
            };
            // An interactive terminal without a console socket: be the console ourselves.
            let wants_tty = berth_runtime::spec::load(&create.bundle)
                .ok()
                .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
                .unwrap_or(false);
            let console = if wants_tty && !*detach && create.console_socket.is_none() {
                Some(tty::ConsoleSocket::bind(root)?)
            } else {
                None
            };
            let mut opts = create_opts(cli, create);
            if let Some(c) = &console {
                opts.console_socket = Some(c.path().to_path_buf());
            }
            let saved = berth_runtime::create(&opts)?;
            let master = match console.as_ref().map(|c| c.receive()).transpose() {
                Ok(m) => m,
                Err(e) => {
                    let _ = ops::delete(root, &saved.id, true);
                    return Err(e.into());
                }
            };
            if let Err(e) = ops::start(root, &saved.id) {
                let _ = ops::delete(root, &saved.id, true);
                return Err(e.into());
            }
            let Some(w) = waiter else { return Ok(0) };
            let code = match master {
                Some(m) => tty::proxy(m, saved.pid, &w.set),
                None => w.wait_for(saved.pid),
            };
            ops::delete(root, &saved.id, true).context("deleting the stopped container")?;
            Ok(code)
        }
        Cmd::Exec {
            process,
            tty,
            detach,
            pid_file,
            console_socket,
            env,
            cwd,
            user,
            id,
            args,
            ..
        } => {
            let process = match process {
                Some(p) => {
                    let text =
                        std::fs::read(p).with_context(|| format!("--process {}", p.display()))?;
                    Some(
                        serde_json::from_slice(&text)
                            .with_context(|| format!("--process {}", p.display()))?,
                    )
                }
                None => None,
            };
            let o = ExecOptions {
                process,
                args: args.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                user: user.clone(),
                tty: *tty,
                console_socket: console_socket.clone(),
                pid_file: pid_file.clone(),
            };
            let waiter = if *detach {
                None
            } else {
                Some(Waiter::install()?)
            };
            let wants_tty = o
                .process
                .as_ref()
                .map_or(*tty, |p| p.terminal().unwrap_or(false));
            let console = if wants_tty && !*detach && o.console_socket.is_none() {
                Some(tty::ConsoleSocket::bind(root)?)
            } else {
                None
            };
            let mut o = o;
            if let Some(c) = &console {
                o.console_socket = Some(c.path().to_path_buf());
            }
            let pid = berth_runtime::exec(root, id, &o)?;
            let master = console.as_ref().map(|c| c.receive()).transpose()?;
            Ok(match (waiter, master) {
                (Some(w), Some(m)) => tty::proxy(m, pid, &w.set),
                (Some(w), None) => w.wait_for(pid),
                (None, _) => 0,
            })
        }
        Cmd::Spec { rootless, bundle } => {
            berth_runtime::spec::write_default(bundle, *rootless)?;
            Ok(0)
        }
        Cmd::Ps { format, id, .. } => {
            let pids = ops::ps(root, id)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
            } else {
                println!("{:>8}  CMD", "PID");
                for p in pids {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    let cmd: Vec<String> = cmd
                        .split(|b| *b == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect();
                    println!("{p:>8}  {}", cmd.join(" "));
                }
            }
            Ok(0)
        }
        Cmd::Pause { id } => {
            ops::pause(root, id)?;
            Ok(0)
        }
        Cmd::Resume { id } => {
            ops::resume(root, id)?;
            Ok(0)
        }
        Cmd::Update { resources, id } => {
            let text = if resources.as_os_str() == "-" {
                let mut t = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut t)
                    .context("reading resources from stdin")?;
                t
            } else {
                std::fs::read(resources)
                    .with_context(|| format!("--resources {}", resources.display()))?
            };
            let res: oci_spec::runtime::LinuxResources = serde_json::from_slice(&text)
                .context("--resources: not a linux.resources object")?;
            ops::update(root, id, &res)?;
            Ok(0)
        }
        Cmd::Features => {
            println!("{}", serde_json::to_string_pretty(&features())?);
            Ok(0)
        }
    }
}

/// Waits for a container process that is not our direct child: we become a subreaper so it
/// is reparented to us, block the signals we forward, and reap everything that exits.
struct Waiter {
    set: nix::sys::signal::SigSet,
}

const FORWARDED: &[nix::sys::signal::Signal] = {
    use nix::sys::signal::Signal::*;
    &[
        SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT,
    ]
};

impl Waiter {
    fn install() -> Result<Waiter> {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
        // SAFETY: prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            bail!(
                "prctl(PR_SET_CHILD_SUBREAPER): {}",
                std::io::Error::last_os_error()
            );
        }
        let mut set = SigSet::empty();
        set.add(Signal::SIGCHLD);
        for s in FORWARDED {
            set.add(*s);
        }
        // The children reset their mask before exec (process::reset_signals).
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).context("sigprocmask")?;
        Ok(Waiter { set })
    }

    /// Forwards signals to `pid` until it exits; returns its exit code (128+N for signal N).
    fn wait_for(self, pid: i32) -> u8 {
        use nix::sys::signal::{Signal, kill};
        use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
        use nix::unistd::Pid;
        loop {
            // Reap first: the process may already have exited before we started waiting.
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => return c as u8,
                    Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => return 128 + s as u8,
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            match self.set.wait() {
                Ok(Signal::SIGCHLD) => {}
                Ok(s) => {
                    let _ = kill(Pid::from_raw(pid), s);
                }
                Err(_) => {}
            }
        }
    }
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
            "dirsync", "remount", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime",
            "relatime", "norelatime", "strictatime", "nostrictatime", "bind", "rbind", "private",
            "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": [match std::env::consts::ARCH { "aarch64" => "SCMP_ARCH_AARCH64", _ => "SCMP_ARCH_X86_64" }]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false }
        },
        "annotations": {}
    })
}
