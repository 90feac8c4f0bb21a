//! `berth-docker-api`: the Docker Engine API server on its own, for development and tests
//! until `berthd` hosts it. Serves one data root on one unix socket (mode 0660, root only).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_node_agent::container::Config;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "berth-docker-api",
    version,
    about = "Serve the Docker Engine API over berth"
)]
struct Args {
    /// The unix socket to listen on.
    #[arg(long, default_value = "/run/berth/docker.sock")]
    socket: PathBuf,
    /// berth's data root (images, containers, volumes, networks).
    #[arg(long, env = "BERTH_DATA_ROOT", default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// The runtime's state root.
    #[arg(long, env = "BERTH_RUN_ROOT", default_value = "/run/berth/runc")]
    run_root: PathBuf,
    /// Where `berth-runc`, `berth-shim` and `berth-init` are (default: next to this binary).
    #[arg(long, env = "BERTH_LIBEXEC_DIR")]
    libexec_dir: Option<PathBuf>,
}

fn libexec(args: &Args) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let dirs: Vec<PathBuf> = match &args.libexec_dir {
        Some(d) => vec![d.clone()],
        None => {
            let exe = std::env::current_exe().context("locating this executable")?;
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
                    "{name} not found in {}; build the workspace or set BERTH_LIBEXEC_DIR",
                    dirs[0].display()
                )
            })
    };
    let init = match std::env::var_os("BERTH_INIT") {
        Some(p) => PathBuf::from(p),
        None => find("berth-init")?,
    };
    Ok((find("berth-runc")?, find("berth-shim")?, init))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (runtime, shim, init) = libexec(&args)?;
    let backend = berth_docker_api::Backend::open(Config {
        data_root: args.data_root.clone(),
        run_root: args.run_root.clone(),
        runtime,
        shim,
        init,
    })
    .await
    .context("opening berth's data root")?;
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(&args.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", args.socket.display())),
    }
    let listener = tokio::net::UnixListener::bind(&args.socket)
        .with_context(|| format!("listening on {}", args.socket.display()))?;
    std::fs::set_permissions(&args.socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", args.socket.display()))?;
    let server = berth_docker_api::serve(listener, Arc::new(backend));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = server => r.context("serving")?,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(&args.socket);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // RUST_LOG=berth_docker_api=debug shows every request
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-docker-api: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("berth-docker-api: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}
