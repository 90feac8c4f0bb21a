//! `berthd`: parses flags, sets up logging and runs the daemon. Everything else is in the
//! library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The berth daemon: controller and node agent of one machine.
#[derive(Debug, Parser)]
#[command(name = "berthd", version)]
struct Args {
    /// Where berth keeps its state: raft log, images, containers, volumes.
    #[arg(long, env = "BERTH_DATA_ROOT", default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Address to serve the API on: unix:///path, or tcp://host:port with mutual TLS
    /// (--tlscacert/--tlscert/--tlskey, or on a cluster member the cluster's CA).
    #[arg(short = 'H', long = "host", env = "BERTH_HOST", default_value = berth_api::DEFAULT_HOST)]
    host: String,
    /// The CA (PEM) whose certificates clients of a tcp:// API must present.
    #[arg(long, env = "BERTH_TLSCACERT")]
    tlscacert: Option<PathBuf>,
    /// The API's TLS server certificate chain (PEM), for tcp://.
    #[arg(long, env = "BERTH_TLSCERT")]
    tlscert: Option<PathBuf>,
    /// The API's TLS private key (PEM), for tcp://.
    #[arg(long, env = "BERTH_TLSKEY")]
    tlskey: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9323).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(long, env = "BERTH_LOG", default_value = "info")]
    log_level: String,
    /// Where the Docker Engine API listens: unix:///PATH (`docker.sock` beside the `-H`
    /// socket by default), or tcp://IP:PORT with --docker-tlscacert, --docker-tlscert and
    /// --docker-tlskey (clients must present a certificate from that CA); `none` turns it off.
    #[arg(long, env = "BERTH_DOCKER_HOST")]
    docker_host: Option<String>,
    /// The CA (PEM) whose certificates Docker API clients on tcp:// must present.
    #[arg(long, env = "BERTH_DOCKER_TLSCACERT")]
    docker_tlscacert: Option<PathBuf>,
    /// The Docker API's TLS server certificate chain (PEM), for tcp://.
    #[arg(long, env = "BERTH_DOCKER_TLSCERT")]
    docker_tlscert: Option<PathBuf>,
    /// The Docker API's TLS private key (PEM), for tcp://.
    #[arg(long, env = "BERTH_DOCKER_TLSKEY")]
    docker_tlskey: Option<PathBuf>,
    /// The OCI runtime's state root.
    #[arg(long, default_value = "/run/berth/runc")]
    run_root: PathBuf,
    /// Answer reads (ps, ls, node ls) from this node's replica of the cluster state, which a
    /// follower may hold slightly behind, instead of a linearizable read through the leader
    #[arg(long, env = "BERTH_LOCAL_READS")]
    local_reads: bool,
}

/// `BERTH_LIBEXEC_DIR`, else the directory of berthd itself.
fn libexec_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_LIBEXEC_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/berth"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("berthd: --log-level {:?}: {e}", args.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // glibc gives every thread that allocates an arena of its own (up to 8 per core); a
    // daemon with a thread per container would keep dozens of mostly empty ones resident.
    // SAFETY: mallopt only changes allocator settings; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // Two workers are plenty for one node's API and loops, and keep the idle footprint small.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let tls = berth_docker_api::TlsFiles {
        ca: args.docker_tlscacert.clone(),
        cert: args.docker_tlscert.clone(),
        key: args.docker_tlskey.clone(),
    };
    let docker =
        match berth_daemon::docker_listen_for(&args.host, args.docker_host.as_deref(), &tls) {
            Ok(docker) => docker,
            Err(e) => {
                eprintln!("berthd: {e}");
                return ExitCode::from(2);
            }
        };
    let config = berth_daemon::Config {
        docker,
        data_root: args.data_root,
        host: args.host,
        metrics_addr: args.metrics_addr,
        run_root: args.run_root,
        libexec_dir: libexec_dir(),
        local_reads: args.local_reads,
        api_tls: berth_docker_api::TlsFiles {
            ca: args.tlscacert,
            cert: args.tlscert,
            key: args.tlskey,
        },
    };
    let result = runtime.block_on(berth_daemon::run(config));
    // Blocking readers (a followed log) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if result.is_ok() && berth_daemon::RESTART_REQUESTED.load(std::sync::atomic::Ordering::SeqCst) {
        // Joined or left a cluster, or changed role: start again as the same command.
        use std::os::unix::process::CommandExt;
        let mut args = std::env::args_os();
        let _ = args.next();
        let error = std::process::Command::new("/proc/self/exe")
            .args(args)
            .exec();
        eprintln!("berthd: restarting: {error}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e}");
            ExitCode::FAILURE
        }
    }
}
