//! The loop of `berth-dns`, the per-data-root DNS process: listens on every network's gateway
//! as the state file says, follows the file's names, reloads listeners on SIGHUP (and, as a
//! fallback, when it notices a new generation on its own), and exits when no network is left
//! or on SIGTERM. Files in the state dir: `dns.json` (read), `dns.pid`, `dns.applied` (the
//! generation whose listeners are up), `dns.lock` (held for life; see
//! [`control`](super::control)). Process set-up (fork, lock, log) belongs to the binary.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::registry::Registry;
use super::server::DnsServer;
use super::state::{DnsState, STATE_FILE, StateSource};

pub const PID_FILE: &str = "dns.pid";
pub const APPLIED_FILE: &str = "dns.applied";
pub const LOCK_FILE: &str = "dns.lock";
pub const LOG_FILE: &str = "dns.log";

/// How often the server looks for a new generation by itself (a lost or early SIGHUP).
const POLL: Duration = Duration::from_millis(500);

/// Errors of the service loop.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Service {
    dir: PathBuf,
    source: Arc<StateSource>,
    server: DnsServer,
    upstreams: Vec<IpAddr>,
    applied: Option<u64>,
}

impl Service {
    /// Makes the listeners match the state file; returns the state applied.
    async fn reconcile(&mut self) -> Result<DnsState, ServiceError> {
        let path = self.source.path().to_path_buf();
        let state = self.source.reload().map_err(|source| ServiceError::Io {
            op: "read",
            path,
            source,
        })?;
        if state.host_upstreams != self.upstreams {
            for id in self.server.listening().keys() {
                self.server.stop(id);
            }
            self.upstreams = state.host_upstreams.clone();
            self.server.set_host_upstreams(state.host_upstreams.clone());
        }
        let current = self.server.listening();
        for id in current.keys() {
            if !state.networks.contains_key(id) {
                self.server.stop(id);
            }
        }
        for (id, net) in &state.networks {
            let want: Vec<SocketAddr> = net
                .listen
                .iter()
                .map(|ip| SocketAddr::new(*ip, state.port))
                .collect();
            if current.get(id) == Some(&want) {
                continue;
            }
            self.server.stop(id);
            for addr in &want {
                // one network failing to bind must not take the others' names away
                if let Err(e) = self.server.listen(id, *addr, net.forward).await {
                    eprintln!("berth-dns: {e}");
                }
            }
        }
        if self.applied != Some(state.generation) {
            let path = self.dir.join(APPLIED_FILE);
            write_small(&path, &state.generation.to_string())?;
            self.applied = Some(state.generation);
        }
        Ok(state)
    }
}

/// Writes a small file atomically (temp file and rename; no fsync: it describes this boot).
fn write_small(path: &Path, text: &str) -> Result<(), ServiceError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ServiceError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        })
}

/// Serves until SIGTERM/SIGINT or until no network is left. `ready` is called once the
/// first state's listeners are up (or have failed, each reported on stderr), and only after
/// the signal handlers are in place and `dns.pid` is written, so a SIGHUP never kills it.
/// Must run inside a tokio runtime.
pub async fn serve(state_dir: &Path, ready: impl FnOnce()) -> Result<(), ServiceError> {
    use tokio::signal::unix::{SignalKind, signal};
    let sig = |kind| {
        signal(kind).map_err(|source| ServiceError::Io {
            op: "install signal handler",
            path: state_dir.to_path_buf(),
            source,
        })
    };
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    write_small(&state_dir.join(PID_FILE), &std::process::id().to_string())?;
    let source = Arc::new(StateSource::new(
        state_dir.join(STATE_FILE),
        Registry::new(),
    ));
    let mut svc = Service {
        dir: state_dir.to_path_buf(),
        server: DnsServer::following(source.clone(), Vec::new()),
        source,
        upstreams: Vec::new(),
        applied: None,
    };
    let result = async {
        let mut state = svc.reconcile().await?;
        ready();
        let mut tick = tokio::time::interval(POLL);
        while !state.networks.is_empty() {
            tokio::select! {
                _ = hup.recv() => state = svc.reconcile().await?,
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {
                    let now = DnsState::load(svc.source.path()).ok();
                    if now.is_some_and(|s| Some(s.generation) != svc.applied) {
                        state = svc.reconcile().await?;
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_file(state_dir.join(PID_FILE));
    result
}
