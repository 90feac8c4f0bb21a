//! The one task that owns the Raft `RawNode`: it turns proposals into committed, applied
//! commands of a [`StateMachine`], persists through [`DiskStorage`], and hands messages for
//! peers to a [`Transport`]. One member by default; written so that more can join.
//!
//! Loop order on every turn (the order raft-rs requires):
//! 1. take input (a proposal, a peer message) or time out; tick when the tick interval passed;
//! 2. if the node has a `Ready`: send its immediate messages; install a received snapshot
//!    (storage, then state machine); apply committed entries; persist new entries and the hard
//!    state with one fsync; send the messages that had to wait for persistence;
//! 3. `advance`, persist the new commit index, send and apply what the light ready carries,
//!    `advance_apply`;
//! 4. compact the log into a snapshot when enough entries were applied since the last one.
//!
//! The thread is a plain OS thread: fsync blocks, and raft-rs is synchronous. Callers reach it
//! through [`RaftHandle`], whose `propose` is async and resolves when the command is applied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protobuf::Message as _;
pub use raft::eraftpb::Message;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType};
use raft::{Config, RawNode, StateRole, Storage as _};
use tokio::sync::oneshot;

use crate::durable::{DiskStorage, StorageFault};

/// The replicated state: applies committed commands in log order, and can be saved and
/// restored whole (for snapshots).
pub trait StateMachine: Send + Sync + 'static {
    /// Applies one committed command and returns the reply for its proposer. Must be
    /// deterministic: every member applies the same commands in the same order.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;
    /// The whole state, serialized.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the whole state with a serialized one.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
}

/// Delivers Raft messages to peers. A single-member group never sends any.
pub trait Transport: Send + 'static {
    fn send(&self, messages: Vec<Message>);
}

/// The transport of a single-member group.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&self, messages: Vec<Message>) {
        if !messages.is_empty() {
            tracing::warn!(
                count = messages.len(),
                "raft produced messages for peers in a single-member group"
            );
        }
    }
}

#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This member's id (non-zero).
    pub id: u64,
    /// Directory of the durable log and snapshot.
    pub dir: PathBuf,
    /// The voters of a brand-new group; ignored once the storage holds a configuration.
    pub initial_voters: Vec<u64>,
    /// The learners of a brand-new group (a member joining an existing group starts from
    /// the configuration it was told about and catches up from the leader's log).
    pub initial_learners: Vec<u64>,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Compact after this many applied entries since the last snapshot.
    pub compact_every: u64,
    /// Entries kept behind a snapshot so slightly lagging followers need no snapshot.
    pub keep_after_compaction: u64,
}

impl RaftConfig {
    pub fn single(id: u64, dir: PathBuf) -> Self {
        RaftConfig {
            id,
            dir,
            initial_voters: vec![id],
            initial_learners: Vec::new(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            compact_every: 10_000,
            keep_after_compaction: 1_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft storage: {0}")]
    Storage(#[from] StorageFault),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("restoring the state machine from the snapshot at {index}: {message}")]
    Restore { index: u64, message: String },
    #[error("this member is not the leader (leader: {leader})")]
    NotLeader { leader: u64 },
    #[error("leadership changed before the command committed; its outcome is unknown")]
    LeadershipLost,
    #[error("the raft loop has stopped")]
    Stopped,
    #[error("another membership change is still in progress; try again")]
    ConfChangeBusy,
    #[error("no leader confirmed this read within {0:?} (no quorum?)")]
    ReadTimeout(Duration),
}

/// A file in the Raft directory written when a member was made the only voter of its group
/// (`--force-new-cluster`): the last log index at that moment. Membership changes up to it
/// belong to the group that was lost and are not applied again when the log is replayed.
pub const FORCED_CONF_FILE: &str = "force-conf-through";

/// Re-forms the group stored in `dir` (stopped) around member `id` alone, after the others
/// were lost with the quorum (`--force-new-cluster`): the stored configuration becomes `id` as
/// the only voter (learners stay), and [`FORCED_CONF_FILE`] keeps the log's membership
/// changes so far from being applied again. The log and snapshot are kept: the next start
/// elects `id` with everything it had. Returns the new configuration.
pub fn force_sole_voter(dir: &Path, id: u64) -> Result<Membership, RaftError> {
    let (mut storage, _) = DiskStorage::open(dir)?;
    let mut conf = storage.conf_state().clone();
    conf.voters = vec![id];
    conf.learners.retain(|l| *l != id);
    conf.voters_outgoing.clear();
    conf.learners_next.clear();
    conf.auto_leave = false;
    storage.set_conf_state(&conf)?;
    let through = dir.join(FORCED_CONF_FILE);
    std::fs::write(&through, storage.last_log_index().to_string()).map_err(|source| {
        RaftError::Storage(StorageFault::Io {
            path: through,
            op: "write",
            source,
        })
    })?;
    Ok(Membership {
        voters: conf.voters,
        learners: conf.learners,
    })
}

/// How long a ReadIndex request may wait for the leader's confirmation.
pub const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(1);

enum Input {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RaftError>>,
    },
    Step(Box<Message>),
    ConfChange {
        change: ConfChange,
        reply: oneshot::Sender<Result<Vec<u8>, RaftError>>,
    },
    TransferLeader(u64),
    /// A linearizable read barrier: answered with the commit index the leader confirmed,
    /// once this member has applied that far.
    ReadIndex(oneshot::Sender<Result<u64, RaftError>>),
    Stop,
}

/// The caller's side of a running Raft member.
pub struct RaftHandle<S> {
    input: mpsc::Sender<Input>,
    state: Arc<RwLock<S>>,
    status: Arc<RwLock<Status>>,
    watch: tokio::sync::watch::Receiver<Status>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<(), RaftError>>>,
}

/// What the loop publishes besides [`Status`]: the membership and when each peer was last
/// heard from (the leader's liveness signal for every member, voter or learner).
#[derive(Default)]
struct Shared {
    conf: RwLock<ConfState>,
    heard: Mutex<HashMap<u64, Instant>>,
}

/// The group's membership as this member applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// A cheap view of the member for reads and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub id: u64,
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub is_leader: bool,
}

impl<S: StateMachine> RaftHandle<S> {
    /// Opens the storage, restores the state machine from its snapshot and starts the loop.
    pub fn start<T: Transport>(
        config: RaftConfig,
        mut machine: S,
        transport: T,
    ) -> Result<Self, RaftError> {
        let (mut storage, report) = DiskStorage::open(&config.dir)?;
        if report.wal.torn_tail_bytes > 0 {
            tracing::warn!(
                bytes = report.wal.torn_tail_bytes,
                dir = %config.dir.display(),
                "dropped a torn, unacknowledged write at the end of the raft log"
            );
        }
        let mut applied = 0;
        if let Some(snapshot) = storage.load_snapshot()? {
            let index = snapshot.get_metadata().index;
            machine
                .restore(snapshot.get_data())
                .map_err(|message| RaftError::Restore { index, message })?;
            applied = index;
        }
        let fresh = storage.conf_state().voters.is_empty() && storage.last_index()? == 0;
        if fresh {
            let conf = raft::eraftpb::ConfState {
                voters: config.initial_voters.clone(),
                learners: config.initial_learners.clone(),
                ..Default::default()
            };
            storage.set_conf_state(&conf)?;
        }
        let shared = Arc::new(Shared {
            conf: RwLock::new(storage.conf_state().clone()),
            heard: Mutex::new(HashMap::new()),
        });
        let raft_config = Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        raft_config.validate()?;
        let logger = slog::Logger::root(
            crate::raft_log::TracingDrain,
            slog::o!("raft_id" => config.id),
        );
        let keep_conf_through = std::fs::read_to_string(config.dir.join(FORCED_CONF_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let mut node = RawNode::new(&raft_config, storage, &logger)?;
        let sole_voter = node.raft.prs().conf().voters().ids().iter().eq([config.id]);
        if sole_voter {
            // Nobody else can win: skip the election timeout.
            node.campaign()?;
        }
        let state = Arc::new(RwLock::new(machine));
        let status = Arc::new(RwLock::new(Status {
            id: config.id,
            ..Status::default()
        }));
        let (input, inbox) = mpsc::channel();
        let (watch_tx, watch) = tokio::sync::watch::channel(Status {
            id: config.id,
            ..Status::default()
        });
        let mut member = Member {
            shared: shared.clone(),
            watch: watch_tx,
            node,
            config,
            state: state.clone(),
            status: status.clone(),
            transport,
            pending: HashMap::new(),
            waiting: Vec::new(),
            next_proposal: 1,
            applied,
            keep_conf_through,
            reads: HashMap::new(),
            confirmed_reads: Vec::new(),
            conf_changed: false,
        };
        let thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || member.run(inbox))
            .map_err(|e| {
                RaftError::Storage(StorageFault::Io {
                    path: PathBuf::from("raft thread"),
                    op: "spawn",
                    source: e,
                })
            })?;
        Ok(RaftHandle {
            input,
            state,
            status,
            watch,
            shared,
            thread: Some(thread),
        })
    }

    /// Proposes a membership change (leader only); resolves once it is applied here.
    pub async fn propose_conf_change(&self, change: ConfChange) -> Result<(), RaftError> {
        let (reply, answer) = oneshot::channel();
        self.input
            .send(Input::ConfChange { change, reply })
            .map_err(|_| RaftError::Stopped)?;
        answer.await.map_err(|_| RaftError::Stopped)?.map(|_| ())
    }

    /// Asks the leader to hand leadership to voter `id` (before it leaves the group itself).
    pub fn transfer_leader(&self, id: u64) -> Result<(), RaftError> {
        self.input
            .send(Input::TransferLeader(id))
            .map_err(|_| RaftError::Stopped)
    }

    /// Makes `id` a voter (adding it, or promoting a learner).
    pub async fn add_voter(&self, id: u64) -> Result<(), RaftError> {
        self.propose_conf_change(change(ConfChangeType::AddNode, id))
            .await
    }

    /// Makes `id` a learner (adding it, or demoting a voter).
    pub async fn add_learner(&self, id: u64) -> Result<(), RaftError> {
        self.propose_conf_change(change(ConfChangeType::AddLearnerNode, id))
            .await
    }

    /// Removes `id` from the group.
    pub async fn remove_member(&self, id: u64) -> Result<(), RaftError> {
        self.propose_conf_change(change(ConfChangeType::RemoveNode, id))
            .await
    }

    /// The voters and learners as this member applied them.
    pub fn membership(&self) -> Membership {
        let conf = self.shared.conf.read().unwrap_or_else(|e| e.into_inner());
        Membership {
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
        }
    }

    /// How long ago a message from member `id` arrived here, if one ever did.
    pub fn heard_from(&self, id: u64) -> Option<Duration> {
        let heard = self.shared.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.get(&id).map(Instant::elapsed)
    }

    /// Appends a command to the log; resolves with the state machine's reply once it is
    /// committed and applied on this member.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Vec<u8>, RaftError> {
        let (reply, answer) = oneshot::channel();
        self.input
            .send(Input::Propose { data, reply })
            .map_err(|_| RaftError::Stopped)?;
        answer.await.map_err(|_| RaftError::Stopped)?
    }

    /// Hands a message from a peer to this member.
    pub fn step(&self, message: Message) -> Result<(), RaftError> {
        self.input
            .send(Input::Step(Box::new(message)))
            .map_err(|_| RaftError::Stopped)
    }

    /// A linearizable read barrier (Raft's ReadIndex): resolves once this member has applied
    /// everything committed before the call, as confirmed by the leader with a quorum. A
    /// [`RaftHandle::read`] after it sees every write acknowledged before the barrier began,
    /// wherever it was made. Fails after [`READ_INDEX_TIMEOUT`] without a leader and quorum.
    pub async fn read_barrier(&self) -> Result<u64, RaftError> {
        let (reply, answer) = oneshot::channel();
        self.input
            .send(Input::ReadIndex(reply))
            .map_err(|_| RaftError::Stopped)?;
        answer.await.map_err(|_| RaftError::Stopped)?
    }

    /// Reads the applied state.
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn status(&self) -> Status {
        *self.status.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The status as it changes: a receiver is woken whenever an entry was applied, the
    /// term or the leader changed, so a controller loop can react to every change of the
    /// state without polling.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Status> {
        self.watch.clone()
    }

    /// Stops the loop; everything acknowledged is already durable.
    pub fn stop(mut self) -> Result<(), RaftError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), RaftError> {
        let _ = self.input.send(Input::Stop);
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or(Err(RaftError::Stopped)),
            None => Ok(()),
        }
    }
}

impl<S> Drop for RaftHandle<S> {
    fn drop(&mut self) {
        let _ = self.input.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Reply = oneshot::Sender<Result<Vec<u8>, RaftError>>;

struct Member<S, T> {
    shared: Arc<Shared>,
    node: RawNode<DiskStorage>,
    config: RaftConfig,
    state: Arc<RwLock<S>>,
    status: Arc<RwLock<Status>>,
    watch: tokio::sync::watch::Sender<Status>,
    transport: T,
    /// Proposals in the log, keyed by the id carried in their entry context.
    pending: HashMap<u64, Reply>,
    /// Proposals waiting for a leader to exist.
    waiting: Vec<(Vec<u8>, Reply)>,
    next_proposal: u64,
    applied: u64,
    /// See [`FORCED_CONF_FILE`]; 0 when the group was never re-formed.
    keep_conf_through: u64,
    /// ReadIndex requests sent, keyed by the id in their context, with when they expire.
    reads: HashMap<u64, (ReadReply, Instant)>,
    /// Reads the leader confirmed at an index this member has not applied yet.
    confirmed_reads: Vec<(u64, ReadReply)>,
    /// The configuration changed since the stored snapshot was taken. A member added after
    /// the log was compacted can only start from a snapshot, and raft refuses one whose
    /// configuration does not name it: the next compaction runs at once.
    conf_changed: bool,
}

type ReadReply = oneshot::Sender<Result<u64, RaftError>>;

impl<S: StateMachine, T: Transport> Member<S, T> {
    fn run(&mut self, inbox: mpsc::Receiver<Input>) -> Result<(), RaftError> {
        let mut last_tick = Instant::now();
        loop {
            let timeout = self.config.tick.saturating_sub(last_tick.elapsed());
            match inbox.recv_timeout(timeout) {
                Ok(Input::Propose { data, reply }) => self.propose(data, reply),
                Ok(Input::Step(message)) => {
                    if message.from != raft::INVALID_ID {
                        self.shared
                            .heard
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(message.from, Instant::now());
                    }
                    if let Err(e) = self.node.step(*message) {
                        tracing::debug!(error = %e, "dropped a raft message");
                    }
                }
                Ok(Input::ConfChange { change, reply }) => self.propose_conf_change(change, reply),
                Ok(Input::TransferLeader(id)) => {
                    if self.node.raft.state == StateRole::Leader {
                        self.node.transfer_leader(id);
                    }
                }
                Ok(Input::ReadIndex(reply)) => self.read_index(reply),
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if last_tick.elapsed() >= self.config.tick {
                self.node.tick();
                last_tick = Instant::now();
            }
            if let Err(e) = self.on_ready() {
                tracing::error!(error = %e, "raft loop stopped");
                self.fail_all(|| RaftError::Stopped);
                return Err(e);
            }
        }
    }

    fn propose(&mut self, data: Vec<u8>, reply: Reply) {
        let leader = self.node.raft.leader_id;
        if leader == raft::INVALID_ID {
            self.waiting.push((data, reply));
            return;
        }
        if self.node.raft.state != StateRole::Leader {
            let _ = reply.send(Err(RaftError::NotLeader { leader }));
            return;
        }
        let id = self.next_proposal;
        self.next_proposal += 1;
        match self.node.propose(context(self.config.id, id), data) {
            Ok(()) => {
                self.pending.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn read_index(&mut self, reply: ReadReply) {
        let leader = self.node.raft.leader_id;
        if leader == raft::INVALID_ID {
            // raft-rs would drop it: say so at once, the caller retries.
            let _ = reply.send(Err(RaftError::NotLeader { leader }));
            return;
        }
        let id = self.next_proposal;
        self.next_proposal += 1;
        // A request lost with a leader change is answered by its deadline.
        self.node.read_index(context(self.config.id, id));
        self.reads
            .insert(id, (reply, Instant::now() + READ_INDEX_TIMEOUT));
    }

    /// Confirmed reads whose index is applied are answered; expired ones fail.
    fn settle_reads(&mut self) {
        let applied = self.applied;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed_reads = waiting;
        for (index, reply) in done {
            let _ = reply.send(Ok(index));
        }
        if self.reads.is_empty() {
            return;
        }
        let now = Instant::now();
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((reply, _)) = self.reads.remove(&id) {
                let _ = reply.send(Err(RaftError::ReadTimeout(READ_INDEX_TIMEOUT)));
            }
        }
    }

    fn propose_conf_change(&mut self, change: ConfChange, reply: Reply) {
        if self.node.raft.state != StateRole::Leader {
            let leader = self.node.raft.leader_id;
            let _ = reply.send(Err(RaftError::NotLeader { leader }));
            return;
        }
        if self.node.raft.has_pending_conf() {
            let _ = reply.send(Err(RaftError::ConfChangeBusy));
            return;
        }
        let id = self.next_proposal;
        self.next_proposal += 1;
        match self
            .node
            .propose_conf_change(context(self.config.id, id), change)
        {
            Ok(()) => {
                self.pending.insert(id, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn reply(&mut self, context: &[u8], answer: Result<Vec<u8>, RaftError>) {
        if let Some((node, id)) = parse_context(context) {
            if node == self.config.id {
                if let Some(waiter) = self.pending.remove(&id) {
                    // A proposer that reads the status after its reply must see its own
                    // entry applied.
                    self.publish_status();
                    let _ = waiter.send(answer);
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), RaftError> {
        if !self.node.has_ready() {
            self.settle_reads();
            return Ok(());
        }
        let mut ready = self.node.ready();
        for read in ready.take_read_states() {
            let Some((node, id)) = parse_context(&read.request_ctx) else {
                continue;
            };
            if node != self.config.id {
                continue;
            }
            if let Some((reply, _)) = self.reads.remove(&id) {
                self.confirmed_reads.push((read.index, reply));
            }
        }
        if let Some(soft) = ready.ss() {
            if soft.raft_state != StateRole::Leader && !self.pending.is_empty() {
                self.fail_all(|| RaftError::LeadershipLost);
            }
        }
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let index = snapshot.get_metadata().index;
            self.node.mut_store().apply_snapshot(&snapshot)?;
            *self.shared.conf.write().unwrap_or_else(|e| e.into_inner()) =
                snapshot.get_metadata().get_conf_state().clone();
            self.write_state()
                .restore(snapshot.get_data())
                .map_err(|message| RaftError::Restore { index, message })?;
            self.applied = index;
        }
        self.apply(ready.take_committed_entries())?;
        let hard_state = ready.hs().cloned();
        self.node
            .mut_store()
            .persist(ready.entries(), hard_state.as_ref())?;
        self.transport.send(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.node.advance_apply();
        self.maybe_compact()?;
        self.publish_status();
        self.settle_reads();
        if self.node.raft.leader_id != raft::INVALID_ID && !self.waiting.is_empty() {
            for (data, reply) in std::mem::take(&mut self.waiting) {
                self.propose(data, reply);
            }
        }
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), RaftError> {
        for entry in entries {
            self.applied = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if entry.data.is_empty() {
                        // A new leader's no-op, or a membership change raft-rs turned into
                        // one because another was still pending.
                        self.reply(&entry.context, Err(RaftError::ConfChangeBusy));
                        continue;
                    }
                    let reply = self.write_state().apply(entry.index, &entry.data);
                    self.reply(&entry.context, Ok(reply));
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2
                    if entry.index <= self.keep_conf_through =>
                {
                    // A change of the group that was lost: the configuration stays the one
                    // the member was re-formed with.
                    self.reply(&entry.context, Ok(Vec::new()));
                }
                EntryType::EntryConfChange => {
                    let change =
                        ConfChange::parse_from_bytes(&entry.data).map_err(raft::Error::from)?;
                    let conf = self.node.apply_conf_change(&change)?;
                    self.node.mut_store().set_conf_state(&conf)?;
                    self.conf_changed = true;
                    *self.shared.conf.write().unwrap_or_else(|e| e.into_inner()) = conf;
                    self.reply(&entry.context, Ok(Vec::new()));
                }
                EntryType::EntryConfChangeV2 => {
                    let change =
                        ConfChangeV2::parse_from_bytes(&entry.data).map_err(raft::Error::from)?;
                    let conf = self.node.apply_conf_change(&change)?;
                    self.node.mut_store().set_conf_state(&conf)?;
                    self.conf_changed = true;
                    *self.shared.conf.write().unwrap_or_else(|e| e.into_inner()) = conf;
                    self.reply(&entry.context, Ok(Vec::new()));
                }
            }
        }
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), RaftError> {
        let snapshot_index = self.node.store().snapshot_index();
        let since = self.applied.saturating_sub(snapshot_index);
        let stale_conf = self.conf_changed && snapshot_index > 0 && since > 0;
        if since < self.config.compact_every && !stale_conf {
            return Ok(());
        }
        self.conf_changed = false;
        let data = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot();
        let applied = self.applied;
        let keep = self.config.keep_after_compaction;
        self.node.mut_store().compact(applied, data, keep)?;
        tracing::debug!(applied, "compacted the raft log into a snapshot");
        Ok(())
    }

    fn publish_status(&self) {
        let raft = &self.node.raft;
        let current = Status {
            id: self.config.id,
            leader: raft.leader_id,
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: self.applied,
            is_leader: raft.state == StateRole::Leader,
        };
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = current;
        self.watch.send_if_modified(|seen| {
            let changed = *seen != current;
            *seen = current;
            changed
        });
    }

    fn fail_all(&mut self, error: impl Fn() -> RaftError) {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in self.waiting.drain(..) {
            let _ = reply.send(Err(error()));
        }
        for (_, (reply, _)) in self.reads.drain() {
            let _ = reply.send(Err(error()));
        }
        for (_, reply) in self.confirmed_reads.drain(..) {
            let _ = reply.send(Err(error()));
        }
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, S> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn change(kind: ConfChangeType, id: u64) -> ConfChange {
    let mut change = ConfChange::default();
    change.set_change_type(kind);
    change.node_id = id;
    change
}

/// A Raft message as it travels between members.
pub fn encode_message(message: &Message) -> Vec<u8> {
    message.write_to_bytes().unwrap_or_default()
}

/// A Raft message received from a peer.
pub fn decode_message(bytes: &[u8]) -> Result<Message, RaftError> {
    Message::parse_from_bytes(bytes).map_err(|e| RaftError::Raft(raft::Error::from(e)))
}

/// Whether a message only answers the leader (what a learner ever sends): the one kind a
/// member without a vote may deliver.
pub fn is_response(message: &Message) -> bool {
    use raft::eraftpb::MessageType::*;
    matches!(
        message.get_msg_type(),
        MsgAppendResponse | MsgHeartbeatResponse | MsgUnreachable | MsgSnapStatus
    )
}

/// Entry context: the proposing member's id and its proposal id, so only that member replies.
fn context(node: u64, id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&node.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out
}

fn parse_context(bytes: &[u8]) -> Option<(u64, u64)> {
    let node = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
    let id = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    Some((node, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key-value map whose commands are `key=value`; replies with the previous value.
    #[derive(Default)]
    struct Kv {
        map: std::collections::BTreeMap<String, String>,
        applied: Vec<u64>,
    }

    impl StateMachine for Kv {
        fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
            self.applied.push(index);
            let text = String::from_utf8_lossy(command);
            let (k, v) = text.split_once('=').unwrap_or((&text, ""));
            self.map
                .insert(k.to_owned(), v.to_owned())
                .unwrap_or_default()
                .into_bytes()
        }
        fn snapshot(&self) -> Vec<u8> {
            self.map
                .iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect::<String>()
                .into_bytes()
        }
        fn restore(&mut self, data: &[u8]) -> Result<(), String> {
            self.map.clear();
            for line in String::from_utf8_lossy(data).lines() {
                let (k, v) = line.split_once('=').ok_or("bad snapshot line")?;
                self.map.insert(k.into(), v.into());
            }
            Ok(())
        }
    }

    fn config(dir: &std::path::Path) -> RaftConfig {
        RaftConfig {
            tick: Duration::from_millis(10),
            compact_every: 50,
            keep_after_compaction: 10,
            ..RaftConfig::single(1, dir.to_owned())
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_single_member_commits_and_replies_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let raft = RaftHandle::start(config(dir.path()), Kv::default(), NoPeers).unwrap();
        let rt = runtime();
        assert_eq!(rt.block_on(raft.propose(b"a=1".to_vec())).unwrap(), b"");
        assert_eq!(rt.block_on(raft.propose(b"a=2".to_vec())).unwrap(), b"1");
        assert_eq!(raft.read(|kv| kv.map["a"].clone()), "2");
        let status = raft.status();
        assert!(status.is_leader);
        assert_eq!(status.leader, 1);
        assert!(status.applied >= 3, "{status:?}"); // the leader's no-op plus two commands
    }

    #[test]
    fn watchers_see_every_applied_change() {
        let dir = tempfile::tempdir().unwrap();
        let raft = RaftHandle::start(config(dir.path()), Kv::default(), NoPeers).unwrap();
        let rt = runtime();
        let mut watch = raft.watch();
        rt.block_on(raft.propose(b"a=1".to_vec())).unwrap();
        let before = watch.borrow_and_update().applied;
        assert!(before >= 2, "{before}");
        rt.block_on(raft.propose(b"b=1".to_vec())).unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), watch.changed())
                .await
                .expect("a change is announced")
                .unwrap();
        });
        assert!(watch.borrow().applied > before);
    }

    #[test]
    fn state_survives_restart_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        {
            let raft = RaftHandle::start(config(dir.path()), Kv::default(), NoPeers).unwrap();
            for i in 0..200 {
                rt.block_on(raft.propose(format!("k{}={i}", i % 7).into_bytes()))
                    .unwrap();
            }
            raft.stop().unwrap();
        }
        assert!(
            dir.path().join("snapshot").exists(),
            "200 entries with compact_every=50 must snapshot"
        );
        let raft = RaftHandle::start(config(dir.path()), Kv::default(), NoPeers).unwrap();
        let expected: std::collections::BTreeMap<String, String> = (193..200)
            .map(|i| (format!("k{}", i % 7), i.to_string()))
            .collect();
        // The state is the snapshot plus the replayed tail, before any new proposal.
        let deadline = Instant::now() + Duration::from_secs(5);
        while raft.read(|kv| kv.map.clone()) != expected {
            assert!(
                Instant::now() < deadline,
                "state not restored: {:?}",
                raft.read(|kv| kv.map.clone())
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Replay after the snapshot never re-applies an entry the snapshot covers.
        let replayed = raft.read(|kv| kv.applied.clone());
        let first = dir.path().join("snapshot");
        assert!(first.exists());
        assert!(replayed.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            rt.block_on(raft.propose(b"k0=new".to_vec())).unwrap(),
            b"196"
        );
    }

    /// Messages between members of a test group, delivered through their handles.
    #[derive(Clone, Default)]
    struct Mesh {
        peers: Arc<RwLock<HashMap<u64, mpsc::Sender<Input>>>>,
        down: Arc<RwLock<std::collections::HashSet<u64>>>,
    }

    impl Transport for Mesh {
        fn send(&self, messages: Vec<Message>) {
            let peers = self.peers.read().unwrap();
            let down = self.down.read().unwrap();
            for message in messages {
                if down.contains(&message.to) || down.contains(&message.from) {
                    continue;
                }
                if let Some(peer) = peers.get(&message.to) {
                    let _ = peer.send(Input::Step(Box::new(message)));
                }
            }
        }
    }

    #[test]
    fn three_members_elect_replicate_and_survive_the_leader() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mesh = Mesh::default();
        let members: Vec<RaftHandle<Kv>> = (1..=3u64)
            .map(|id| on_mesh(&mesh, meshed(id, &dirs, vec![1, 2, 3])))
            .collect();
        let rt = runtime();
        let leader = wait_for_leader(&members, &[]);
        rt.block_on(members[leader as usize - 1].propose(b"x=1".to_vec()))
            .unwrap();
        // A follower refuses writes and names the leader.
        let follower = members.iter().find(|m| m.status().id != leader).unwrap();
        match rt.block_on(follower.propose(b"x=2".to_vec())) {
            Err(RaftError::NotLeader { leader: named }) => assert_eq!(named, leader),
            other => panic!("expected NotLeader, got {other:?}"),
        }
        // Cut the leader off: the other two elect a new one that still has x=1.
        mesh.down.write().unwrap().insert(leader);
        let next = wait_for_leader(&members, &[leader]);
        assert_ne!(next, leader);
        let new_leader = &members[next as usize - 1];
        assert_eq!(
            rt.block_on(new_leader.propose(b"x=3".to_vec())).unwrap(),
            b"1"
        );
        // Heal: the old leader catches up.
        mesh.down.write().unwrap().clear();
        let old = &members[leader as usize - 1];
        let deadline = Instant::now() + Duration::from_secs(10);
        while old.read(|kv| kv.map.get("x").cloned()) != Some("3".into()) {
            assert!(Instant::now() < deadline, "old leader did not catch up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn read_index_sees_acknowledged_writes_and_a_cut_off_member_refuses_to_read() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mesh = Mesh::default();
        let members: Vec<RaftHandle<Kv>> = (1..=3u64)
            .map(|id| on_mesh(&mesh, meshed(id, &dirs, vec![1, 2, 3])))
            .collect();
        let rt = runtime();
        let leader = wait_for_leader(&members, &[]);
        let leading = &members[leader as usize - 1];
        for i in 0..20 {
            rt.block_on(leading.propose(format!("k{i}={i}").into_bytes()))
                .unwrap();
            let committed = leading.status().commit;
            // Right after the write is acknowledged, every member's barrier covers it.
            for member in &members {
                let index = rt.block_on(member.read_barrier()).unwrap();
                assert!(index >= committed, "read index {index} < {committed}");
                let seen = member.read(|kv| kv.map.get(&format!("k{i}")).cloned());
                assert_eq!(seen, Some(i.to_string()), "member {}", member.status().id);
            }
        }
        // A follower cut off from the others cannot confirm a read: it fails instead of
        // answering from a state that may be stale.
        let follower = members.iter().find(|m| m.status().id != leader).unwrap();
        mesh.down.write().unwrap().insert(follower.status().id);
        match rt.block_on(follower.read_barrier()) {
            Err(RaftError::ReadTimeout(_)) | Err(RaftError::NotLeader { .. }) => {}
            other => panic!("a cut-off member read: {other:?}"),
        }
        mesh.down.write().unwrap().clear();
        let deadline = Instant::now() + Duration::from_secs(10);
        while rt.block_on(follower.read_barrier()).is_err() {
            assert!(Instant::now() < deadline, "healed member cannot read again");
        }
    }

    #[test]
    fn a_survivor_forced_to_be_the_sole_voter_leads_with_its_state() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mesh = Mesh::default();
        let start = |id: u64, mesh: &Mesh| {
            let config = RaftConfig {
                id,
                initial_voters: vec![1, 2, 3],
                tick: Duration::from_millis(10),
                ..RaftConfig::single(id, dirs[id as usize - 1].path().to_owned())
            };
            let handle = RaftHandle::start(config, Kv::default(), mesh.clone()).unwrap();
            mesh.peers.write().unwrap().insert(id, handle.input.clone());
            handle
        };
        let members: Vec<RaftHandle<Kv>> = (1..=3u64).map(|id| start(id, &mesh)).collect();
        let rt = runtime();
        let leader = wait_for_leader(&members, &[]);
        rt.block_on(members[leader as usize - 1].propose(b"kept=yes".to_vec()))
            .unwrap();
        // Every member has it; then all stop, and only member 3 comes back.
        let deadline = Instant::now() + Duration::from_secs(10);
        while members[2].read(|kv| kv.map.get("kept").cloned()).is_none() {
            assert!(Instant::now() < deadline, "member 3 did not replicate");
            std::thread::sleep(Duration::from_millis(10));
        }
        for member in members {
            member.stop().unwrap();
        }
        let alone = Mesh::default();
        // Without the force it cannot elect itself: 2 of 3 voters are gone.
        let stuck = start(3, &alone);
        std::thread::sleep(Duration::from_millis(500));
        assert!(!stuck.status().is_leader);
        stuck.stop().unwrap();
        let conf = force_sole_voter(dirs[2].path(), 3).unwrap();
        assert_eq!(conf.voters, vec![3]);
        let survivor = start(3, &alone);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !survivor.status().is_leader {
            assert!(Instant::now() < deadline, "the survivor did not lead");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(survivor.membership().voters, vec![3]);
        assert_eq!(
            survivor.read(|kv| kv.map.get("kept").cloned()),
            Some("yes".into())
        );
        assert_eq!(
            rt.block_on(survivor.propose(b"kept=still".to_vec()))
                .unwrap(),
            b"yes"
        );
        // Replaying the old membership changes after another restart keeps it alone.
        survivor.stop().unwrap();
        let again = start(3, &alone);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !again.status().is_leader {
            assert!(Instant::now() < deadline, "no leader after restart");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(again.membership().voters, vec![3]);
    }

    #[test]
    fn a_learner_replicates_without_a_vote_and_is_promoted_and_removed() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mesh = Mesh::default();
        let start = |id: u64, voters: Vec<u64>, learners: Vec<u64>| {
            let config = RaftConfig {
                initial_learners: learners,
                ..meshed(id, &dirs, voters)
            };
            on_mesh(&mesh, config)
        };
        let members = vec![start(1, vec![1, 2], vec![]), start(2, vec![1, 2], vec![])];
        let rt = runtime();
        let leader = &members[wait_for_leader(&members, &[]) as usize - 1];
        // Member 3 starts from the configuration it is told, then is added as a learner.
        let learner = start(3, vec![1, 2], vec![]);
        rt.block_on(leader.add_learner(3)).unwrap();
        rt.block_on(leader.propose(b"x=1".to_vec())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while learner.read(|kv| kv.map.get("x").cloned()) != Some("1".into()) {
            assert!(Instant::now() < deadline, "the learner did not catch up");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(leader.membership().learners, vec![3]);
        assert!(
            leader
                .heard_from(3)
                .is_some_and(|d| d < Duration::from_secs(5))
        );
        // A learner's proposals are refused with the leader named (the daemon forwards).
        match rt.block_on(learner.propose(b"y=1".to_vec())) {
            Err(RaftError::NotLeader { leader: named }) => assert_eq!(named, leader.status().id),
            other => panic!("expected NotLeader, got {other:?}"),
        }
        rt.block_on(leader.add_voter(3)).unwrap();
        let mut voters = leader.membership().voters;
        voters.sort();
        assert_eq!(voters, vec![1, 2, 3]);
        assert!(leader.membership().learners.is_empty());
        rt.block_on(leader.remove_member(3)).unwrap();
        let mut voters = leader.membership().voters;
        voters.sort();
        assert_eq!(voters, vec![1, 2]);
    }

    #[test]
    fn a_member_added_after_compaction_catches_up_by_snapshot() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mesh = Mesh::default();
        let start = |id: u64, voters: Vec<u64>| {
            let config = RaftConfig {
                compact_every: 20,
                keep_after_compaction: 5,
                ..meshed(id, &dirs, voters)
            };
            on_mesh(&mesh, config)
        };
        let members = vec![start(1, vec![1, 2]), start(2, vec![1, 2])];
        let rt = runtime();
        let leader = &members[wait_for_leader(&members, &[]) as usize - 1];
        // far more entries than the leader keeps after compacting: the first ones are gone
        // from its log, so a newcomer can only start from a snapshot
        for i in 0..100 {
            rt.block_on(leader.propose(format!("k{i}={i}").into_bytes()))
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let newcomer = start(3, vec![1, 2]);
        rt.block_on(leader.add_voter(3)).unwrap();
        while newcomer.read(|kv| kv.map.get("k99").cloned()) != Some("99".into()) {
            assert!(
                Instant::now() < deadline,
                "the new member did not catch up: {:?}, {} keys; leader {:?}",
                newcomer.status(),
                newcomer.read(|kv| kv.map.len()),
                leader.status()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // everything is there, and the early entries came in the snapshot, not one by one
        assert_eq!(newcomer.read(|kv| kv.map.len()), 100);
        assert_eq!(
            newcomer.read(|kv| kv.map.get("k0").cloned()),
            Some("0".into())
        );
        assert!(
            !newcomer.read(|kv| kv.applied.contains(&3)),
            "the newcomer replayed the compacted entries one by one"
        );
        let mut voters = leader.membership().voters;
        voters.sort();
        assert_eq!(voters, vec![1, 2, 3]);
    }

    /// The configuration of member `id` of a test group: its own directory of `dirs`, the
    /// given voters, fast ticks.
    fn meshed(id: u64, dirs: &[tempfile::TempDir], voters: Vec<u64>) -> RaftConfig {
        RaftConfig {
            id,
            initial_voters: voters,
            tick: Duration::from_millis(10),
            ..RaftConfig::single(id, dirs[id as usize - 1].path().to_owned())
        }
    }

    /// Starts a member on `mesh` and makes it reachable by the others.
    fn on_mesh(mesh: &Mesh, config: RaftConfig) -> RaftHandle<Kv> {
        let id = config.id;
        let handle = RaftHandle::start(config, Kv::default(), mesh.clone()).unwrap();
        mesh.peers.write().unwrap().insert(id, handle.input.clone());
        handle
    }

    fn wait_for_leader(members: &[RaftHandle<Kv>], excluded: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leaders: Vec<u64> = members
                .iter()
                .map(|m| m.status())
                .filter(|s| s.is_leader && !excluded.contains(&s.id))
                .map(|s| s.id)
                .collect();
            if let [one] = leaders[..] {
                return one;
            }
            assert!(Instant::now() < deadline, "no single leader elected");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
