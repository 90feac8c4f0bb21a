//! Reaching a daemon, and starting one when none answers: as root, `berthd` (found next to
//! `berth`, or in `BERTH_LIBEXEC_DIR`) is started in the background with the same data root
//! and socket, in its own process group (so the terminal's Ctrl-C does not reach it), and
//! the command waits for its socket. Otherwise the error says exactly how to start one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_api::Endpoint;
use tonic::transport::Channel;

/// The data root a daemon uses when none is given (`--data-root`, `BERTH_DATA_ROOT`).
const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";

/// How long a freshly started daemon may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to `address`; on failure starts `berthd` when the user is root and the address
/// is the default socket or comes with a data root of its own, then connects again.
pub async fn connect_or_start(
    address: &str,
    tls: &crate::cli::remote::TlsFlags,
    data_root: &Path,
) -> anyhow::Result<Channel> {
    let first = match crate::cli::remote::connect(Some(address), tls).await {
        Ok(channel) => return Ok(channel),
        Err(e) => e,
    };
    let Endpoint::Unix(socket) = Endpoint::parse(address)? else {
        return Err(first);
    };
    // A socket of its own with the default data root would start a second daemon on the
    // machine's state (/var/lib/berth) behind an unusual socket — almost always a daemon
    // that has not created its socket yet, or a typo. Only the default endpoint, or one
    // given together with its own data root, starts a daemon.
    if address != berth_api::DEFAULT_HOST && data_root == Path::new(DEFAULT_DATA_ROOT) {
        bail!(
            "{} (berth starts a daemon by itself only for the default socket, or with --data-root)",
            how_to_start(address, &socket, data_root)
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        bail!("{}", how_to_start(address, &socket, data_root));
    }
    let berthd = find_berthd()?;
    let log = data_root.join("berthd.log");
    std::fs::create_dir_all(data_root)
        .with_context(|| format!("creating the data root {}", data_root.display()))?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(&berthd)
            .arg("--data-root")
            .arg(data_root)
            .arg("--host")
            .arg(address)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", berthd.display()))?
    };
    eprintln!(
        "berth: no daemon answered at {address}; started {} (data root {}, log {})",
        berthd.display(),
        data_root.display(),
        log.display()
    );
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if socket.exists() {
            if let Ok(channel) = crate::cli::remote::connect(Some(address), tls).await {
                // the daemon lives on by itself; nobody waits for it here
                drop(child);
                return Ok(channel);
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "berthd exited ({status}) before answering at {address}; see {}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "berthd did not answer at {address} within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one-line advice when this user may not start a daemon.
pub fn how_to_start(address: &str, socket: &Path, data_root: &Path) -> String {
    format!(
        "no berth daemon answers at {address}; start one as root: `sudo berthd --data-root {} --host unix://{}` (or run this command with sudo, which starts it)",
        data_root.display(),
        socket.display()
    )
}

/// `berthd` in `BERTH_LIBEXEC_DIR`, else next to this executable (or one directory up, for
/// test binaries in `deps/`).
fn find_berthd() -> anyhow::Result<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var_os("BERTH_LIBEXEC_DIR") {
        Some(d) => vec![PathBuf::from(d)],
        None => {
            let exe = std::env::current_exe().context("locating the berth executable")?;
            let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
            let up = dir.parent().map(PathBuf::from).unwrap_or_default();
            vec![dir, up]
        }
    };
    dirs.iter()
        .map(|d| d.join("berthd"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no berth daemon answers and berthd is not next to berth (in {}); build the workspace (`cargo build --workspace`) or set BERTH_LIBEXEC_DIR",
                dirs[0].display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advice_names_the_command_and_both_paths() {
        let text = how_to_start(
            "unix:///run/berth/berth.sock",
            Path::new("/run/berth/berth.sock"),
            Path::new("/var/lib/berth"),
        );
        assert!(
            text.contains(
                "sudo berthd --data-root /var/lib/berth --host unix:///run/berth/berth.sock"
            ),
            "{text}"
        );
    }
}
