//! The controller role of berthd: a Raft member over `<data-root>/raft` holding the store,
//! the one path by which anything changes it ([`Controller::propose`]), and the loop that
//! keeps the desired shape real — after every applied change, and when a back-off ends
//! (`orchestrator::next_wakeup`), it runs the orchestrator, then the scheduler, and proposes
//! what they return.
//!
//! It reads only the applied state and never touches containers: that is the dispatcher's
//! and the agent's job.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_controller::orchestrator;
use berth_controller::raft_node::{
    Membership, Message, NoPeers, RaftConfig, RaftError, RaftHandle, Status, Transport,
};
use berth_controller::scheduler;
use berth_controller::store::{self, Applied, ApplyError, Command, State, Timestamp};
use tokio::sync::watch;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("opening the controller state in {dir}: {source}")]
    Open {
        dir: std::path::PathBuf,
        #[source]
        source: RaftError,
    },
    #[error("create directory {dir}: {source}")]
    CreateDir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Raft(#[from] RaftError),
    #[error("{0}")]
    Refused(#[from] ApplyError),
    /// The leader refused a forwarded write for the caller's role.
    #[error("{0}")]
    Forbidden(String),
    /// A write could not reach a leader.
    #[error("{0}")]
    Unreachable(String),
}

/// Carries a write this member cannot commit itself (it is a follower or a learner) to the
/// leader; the cluster layer implements it over mutual TLS.
pub trait Forward: Send + Sync + 'static {
    fn forward<'a>(
        &'a self,
        controller: &'a Controller,
        command: Vec<u8>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<u8>, ControllerError>> + Send + 'a>,
    >;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The controller of this node.
pub struct Controller {
    raft: RaftHandle<State>,
    node_id: String,
    /// Task ids: a counter first (so ids differ in their first characters, which the agent
    /// uses for names), then a random prefix drawn at start (so ids differ across restarts).
    counter: AtomicU64,
    salt: String,
    metrics: Arc<Metrics>,
    forwarder: std::sync::OnceLock<Arc<dyn Forward>>,
    /// `berthd --local-reads`: the read APIs answer from the applied state without a
    /// ReadIndex round (faster, possibly stale on a follower).
    local_reads: std::sync::atomic::AtomicBool,
}

impl Controller {
    /// Opens (or creates) the Raft member in `dir` and waits until it leads its group.
    pub async fn open(
        dir: &Path,
        node_id: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Controller>, ControllerError> {
        std::fs::create_dir_all(dir).map_err(|source| ControllerError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let config = RaftConfig::single(1, dir.to_owned());
        Self::open_with(config, NoPeers, node_id, metrics, true).await
    }

    /// Opens the Raft member of `config` with `transport`; with `wait_for_leadership`, waits
    /// (up to 10 s) until it leads, as a sole voter does at once.
    pub async fn open_with<T: Transport>(
        config: RaftConfig,
        transport: T,
        node_id: &str,
        metrics: Arc<Metrics>,
        wait_for_leadership: bool,
    ) -> Result<Arc<Controller>, ControllerError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| ControllerError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let raft = RaftHandle::start(config, State::default(), transport).map_err(|source| {
            ControllerError::Open {
                dir: dir.clone(),
                source,
            }
        })?;
        let salt = salt();
        let controller = Arc::new(Controller {
            raft,
            node_id: node_id.to_owned(),
            counter: AtomicU64::new(1),
            salt,
            metrics,
            forwarder: std::sync::OnceLock::new(),
            local_reads: std::sync::atomic::AtomicBool::new(false),
        });
        if !wait_for_leadership {
            return Ok(controller);
        }
        let mut watch = controller.raft.watch();
        // A sole voter elects itself at once; wait for that so the first proposal succeeds.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !watch.borrow_and_update().is_leader {
            if tokio::time::timeout_at(deadline, watch.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(controller)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Sends writes this member cannot commit to the leader from now on.
    pub fn set_forwarder(&self, forwarder: Arc<dyn Forward>) {
        let _ = self.forwarder.set(forwarder);
    }

    /// Proposes encoded command bytes on this member only (no forwarding): the leader's side
    /// of a forwarded write.
    pub async fn propose_local(&self, command: Vec<u8>) -> Result<Vec<u8>, RaftError> {
        self.raft.propose(command).await
    }

    /// Hands a Raft message from a peer to this member.
    pub fn step(&self, message: Message) -> Result<(), RaftError> {
        self.raft.step(message)
    }

    pub fn membership(&self) -> Membership {
        self.raft.membership()
    }

    /// How long ago member `raft_id` was last heard from.
    pub fn heard_from(&self, raft_id: u64) -> Option<Duration> {
        self.raft.heard_from(raft_id)
    }

    /// The Raft member, for membership changes.
    pub fn raft(&self) -> &RaftHandle<State> {
        &self.raft
    }

    /// Proposes one command; answers once it is committed and applied here. A member that is
    /// not the leader forwards it when a forwarder is set.
    pub async fn propose(&self, command: Command) -> Result<Applied, ControllerError> {
        let kind = command_kind(&command);
        let bytes = store::encode(&command);
        let reply = match self.forwarder.get() {
            None => self.raft.propose(bytes).await?,
            Some(forwarder) => {
                // A member without a known leader holds proposals until one is elected;
                // bound that so a lost quorum answers instead of hanging the caller.
                let local =
                    tokio::time::timeout(Duration::from_secs(10), self.raft.propose(bytes.clone()))
                        .await;
                match local {
                    Ok(Err(RaftError::NotLeader { .. })) => forwarder.forward(self, bytes).await?,
                    Ok(other) => other?,
                    Err(_) => {
                        return Err(ControllerError::Unreachable(
                            "no Raft leader was elected within 10 s (is a majority of the managers up?)"
                                .into(),
                        ));
                    }
                }
            }
        };
        self.metrics.proposals.inc();
        let applied = store::decode_reply(&reply);
        if let Err(e) = &applied {
            self.metrics.refused.inc();
            tracing::debug!(command = kind, error = %e, "command refused");
        }
        Ok(applied?)
    }

    /// Reads the applied state.
    /// Makes the read APIs answer from the applied state (no ReadIndex).
    pub fn set_local_reads(&self, local: bool) {
        self.local_reads
            .store(local, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the read APIs call before they read: waits (ReadIndex) until this member has
    /// applied every write acknowledged before the call anywhere in the cluster, so a read on
    /// a follower is linearizable. Retries while an election runs, at most ~5 s, then fails
    /// (a minority cut off from the leader cannot serve such reads). Nothing to wait for with
    /// `--local-reads`, on a learner (a worker may not ask the leader; it reads its replica)
    /// and on the leader of a one-member group.
    pub async fn read_barrier(&self) -> Result<(), ControllerError> {
        if self.local_reads.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let membership = self.raft.membership();
        let me = self.raft.status().id;
        if !membership.voters.contains(&me) || membership.voters == [me] {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match self.raft.read_barrier().await {
                Ok(_) => return Ok(()),
                Err(e @ (RaftError::NotLeader { .. } | RaftError::ReadTimeout(_)))
                | Err(e @ RaftError::LeadershipLost) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ControllerError::Unreachable(format!(
                            "a linearizable read needs a leader and a quorum: {e} \
                             (berthd --local-reads answers from this node's replica)"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.raft.read(f)
    }

    pub fn status(&self) -> Status {
        self.raft.status()
    }

    /// Wakes on every applied change.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.raft.watch()
    }

    /// A fresh task id.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{n:06x}{}", self.salt)
    }

    /// Runs the orchestrator and the scheduler until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.watch();
        loop {
            if *shutdown.borrow() {
                return;
            }
            changes.borrow_and_update();
            let mut wait = None;
            if self.status().is_leader {
                match self.converge().await {
                    Ok(()) => {}
                    Err(e) => {
                        // A refused or failed proposal must not spin the loop: try again
                        // on the next change or after a pause.
                        tracing::warn!(error = %e, "controller pass failed");
                        wait = Some(Duration::from_secs(1));
                    }
                }
            }
            let now = now_ms();
            let wakeup = self.read(|s| orchestrator::next_wakeup(s, now));
            let until_wakeup = wakeup.map(|at| Duration::from_millis(at.saturating_sub(now)));
            let sleep = match (wait, until_wakeup) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(Duration::from_secs(60)),
            }
            // A wakeup already due must not turn the loop into a spin.
            .max(Duration::from_millis(10));
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One pass: orchestrator until it has nothing to say, then the scheduler, repeated
    /// until both are quiet (bounded, in case two decisions keep undoing each other).
    async fn converge(&self) -> Result<(), ControllerError> {
        for _ in 0..64 {
            let now = now_ms();
            let commands = self.read(|s| {
                let mut ids = || self.next_id();
                let commands = orchestrator::reconcile(s, now, &mut ids);
                if commands.is_empty() {
                    scheduler::plan(s)
                } else {
                    commands
                }
            });
            if commands.is_empty() {
                return Ok(());
            }
            self.metrics.reconciles.inc();
            for command in commands {
                let kind = command_kind(&command);
                let applied = self.propose(command).await?;
                for rejected in &applied.rejected {
                    tracing::debug!(command = kind, reason = %rejected, "entry skipped");
                }
            }
        }
        tracing::warn!("the orchestrator and scheduler did not settle in 64 rounds");
        Ok(())
    }
}

fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::DeployApp(_) => "deploy_app",
        Command::RemoveApp { .. } => "remove_app",
        Command::ScaleService { .. } => "scale_service",
        Command::RegisterNode(_) => "register_node",
        Command::UpdateNode { .. } => "update_node",
        Command::RemoveNode { .. } => "remove_node",
        Command::NodeStatus { .. } => "node_status",
        Command::CreateTasks(_) => "create_tasks",
        Command::AssignTasks(_) => "assign_tasks",
        Command::SetDesired(_) => "set_desired",
        Command::TaskStatusUpdate(_) => "task_status_update",
        Command::RemoveTasks(_) => "remove_tasks",
        Command::MarkUnplaceable(_) => "mark_unplaceable",
        Command::HoldTasks(_) => "hold_tasks",
        Command::StopService { .. } => "stop_service",
        Command::StartService { .. } => "start_service",
        Command::DaemonRestarted => "daemon_restarted",
        Command::SetUpdateState { .. } => "set_update_state",
        Command::RollbackService { .. } => "rollback_service",
        Command::DeployAppNoStart(_) => "deploy_app_no_start",
        Command::SetClusterSecrets(_) => "set_cluster_secrets",
        Command::Overlay(_) => "overlay",
        Command::SetAppFiles { .. } => "set_app_files",
        Command::RevokeNode { .. } => "revoke_node",
        Command::SetStopTimeout { .. } => "set_stop_timeout",
        Command::SetKeepVolumes { .. } => "set_keep_volumes",
        Command::CreateSecret(_) => "create_secret",
        Command::RemoveSecret { .. } => "remove_secret",
        Command::BeginTakedown { .. } => "begin_takedown",
        Command::EndTakedown { .. } => "end_takedown",
    }
}

fn salt() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 5];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        // Without randomness, the clock still separates one start from the next.
        bytes.copy_from_slice(&now_ms().to_le_bytes()[..5]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
